"""Run an ONNX file without copying its weights: a small skeleton plus weights mapped from the file.

A ResNet-18 file is 45 MB of weights around 40 KB of graph. Reading it into Python, appending the
extra graph outputs and handing the bytes to onnxruntime copied the weights three or four times
(Python's read, the concatenation, pybind's copy into a string, onnxruntime's tensors), which cost
more than running the model once. Here the file is memory-mapped and only its structure is copied:
every initializer of at least :data:`MIN_MAPPED_BYTES` stored as ``raw_data`` becomes an external-
data reference in the skeleton, and onnxruntime receives it as an OrtValue viewing the mapped file
(``SessionOptions.add_external_initializers``, which uses the buffer without copying). The weights
are then read once, by the page cache, as the first run touches them. Initializers already kept in
external data files are mapped from those files the same way (their location must stay inside the
model's folder). Files that cannot be mapped are left to the ordinary path (:func:`open_skeleton`
returns None).
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._lazy import lazy_import
from netdiff._protowire import LEN, VARINT, encode_len, encode_varint, read_field, string_pair, text
from netdiff._input_files import open_regular
from netdiff.errors import InputError, ModelError

onnx = lazy_import("onnx")
ort = lazy_import("onnxruntime")

#: Smaller raw initializers stay inline in the skeleton (copying them costs nothing).
MIN_MAPPED_BYTES = 1024
#: The external-data location written into the skeleton; onnxruntime never reads it, because every
#: such initializer is replaced by an OrtValue before the session loads data.
LOCATION = "netdiff-mapped-weights"

# Field numbers: ModelProto.graph, GraphProto.initializer, TensorProto.{data_type, name, raw_data,
# external_data, data_location}, StringStringEntryProto.{key, value}.
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 2, 8, 9, 13, 14
_EXTERNAL = 1
#: TensorProto data types mapped from the file (plain numpy types; others stay inline):
#: FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, BOOL, FLOAT16, DOUBLE, UINT32, UINT64.
MAPPED_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13})


class _NotMappable(Exception):
    """An initializer in external data has a type numpy cannot view: use the ordinary path."""


@dataclass(frozen=True)
class MappedWeight:
    """Where an initializer's bytes are: a span of a mapped file (``length`` None: from its dims)."""

    file: mmap.mmap = field(repr=False)
    offset: int
    length: int | None


@dataclass
class Skeleton:
    """A model's structure with its large weights mapped from the file(s).

    Attributes:
        data: The serialized skeleton (structure, small initializers inline).
        model: ``data`` parsed (a ModelProto without the large weights' values).
        weights: Initializer name -> where its bytes are.
    """

    data: bytes
    model: Any
    weights: dict[str, MappedWeight]
    _in_use: list[Any] = field(default_factory=list, repr=False)

    def session(self, extra: bytes, options: Any) -> Any:
        """An InferenceSession of the skeleton with ``extra`` serialized fields appended (e.g. more
        graph outputs), its large initializers viewing the mapped file(s); keep this skeleton as long
        as the session (it holds the maps).

        Raises:
            ModelError: An initializer's raw data does not match its type and dims.
        """
        from onnx import helper

        names, values, arrays = [], [], []
        used = _consumed_names(self.model.graph) | {o.name for o in self.model.graph.output}
        for init in self.model.graph.initializer:
            weight = self.weights.get(init.name)
            if weight is None or init.name not in used:  # onnxruntime drops unused initializers
                continue
            if init.data_type not in MAPPED_TYPES:  # the skeleton maps only these; a file that lies fails here
                raise ModelError(f"initializer {init.name!r}: data type {init.data_type} cannot be mapped")
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
            dims = tuple(init.dims)
            expected = dtype.itemsize * math.prod(dims)
            nbytes = expected if weight.length is None else weight.length
            if nbytes != expected or weight.offset + nbytes > len(weight.file):
                raise ModelError(f"initializer {init.name!r}: {nbytes} bytes at offset {weight.offset} do not fit "
                                 f"its type {dtype.name} and dims {list(dims)} in a file of {len(weight.file)} bytes")
            array = np.frombuffer(weight.file, dtype=dtype, count=nbytes // dtype.itemsize,
                                  offset=weight.offset).reshape(dims)
            arrays.append(array)
            names.append(init.name)
            values.append(ort.OrtValue.ortvalue_from_numpy(array))
        if names:
            options.add_external_initializers(names, values)
        session = ort.InferenceSession(self.data + extra, options, providers=["CPUExecutionProvider"])
        self._in_use.append((arrays, values))  # the weights (and so the maps) live as long as this skeleton
        return session


def _consumed_names(graph: Any) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            if attribute.HasField("g"):
                names |= _consumed_names(attribute.g)
            for sub in attribute.graphs:
                names |= _consumed_names(sub)
    return names


def open_skeleton(path: str | Path) -> Skeleton | None:
    """Map ``path`` and build its skeleton; None when the file cannot be mapped.

    Raises:
        ModelError: An external-data location leaves the model's folder or its file is missing.
        netdiff._protowire.WireError: The file is not valid protobuf (DecodeError from the skeleton's parse).
    """
    path = Path(path)
    mapped = _map_file(path)
    if mapped is None:  # empty files, special files: the ordinary path reports them
        return None
    files = _ExternalFiles(path.parent)
    weights: dict[str, MappedWeight] = {}
    try:
        data = _rewrite(mapped, 0, len(mapped),
                        {_MODEL_GRAPH: lambda b, e: _graph(mapped, b, e, weights, files)})
    except _NotMappable:
        return None
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return Skeleton(data, model, weights)


def _map_file(path: Path) -> mmap.mmap | None:
    """The file mapped copy-on-write (an onnxruntime write could never reach the file), or None."""
    try:
        with open_regular(path, "external data file") as handle:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError, InputError):
        return None


class _ExternalFiles:
    """External-data files of one model, each mapped once; locations must stay inside ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.maps: dict[str, mmap.mmap] = {}

    def get(self, location: str) -> mmap.mmap:
        if location not in self.maps:
            target = (self.folder / location).resolve()
            if Path(location).is_absolute() or self.folder.resolve() not in (target, *target.parents):
                raise ModelError(f"external data location {location!r} is outside the model's folder {self.folder}")
            mapped = _map_file(target) if target.is_file() else None
            if mapped is None:
                raise ModelError(f"{self.folder / location}: external data file missing or empty")
            self.maps[location] = mapped
        return self.maps[location]


def _rewrite(buf: Any, begin: int, end: int, handlers: dict[int, Any]) -> bytes:
    """Copy a message's fields, replacing length-delimited fields that have a handler by its output."""
    out = bytearray()
    pos = begin
    while pos < end:
        start = pos
        number, wire, value, pos = read_field(buf, pos, end)
        handler = handlers.get(number) if wire == LEN else None
        if handler is None:
            out += buf[start:pos]
        else:
            out += encode_len(number, handler(*value))
    return bytes(out)


def _graph(buf: Any, begin: int, end: int, weights: dict[str, MappedWeight], files: _ExternalFiles) -> bytes:
    return _rewrite(buf, begin, end, {_GRAPH_INITIALIZER: lambda b, e: _initializer(buf, b, e, weights, files)})


def _initializer(buf: Any, begin: int, end: int, weights: dict[str, MappedWeight], files: _ExternalFiles) -> bytes:
    """The initializer without its raw data and with an external-data reference, when it is large;
    an initializer already in external data is kept as it is and mapped from its file."""
    kept = bytearray()
    raw = name = None
    data_type = location = 0
    external: dict[str, str] = {}
    pos = begin
    while pos < end:
        start = pos
        number, wire, value, pos = read_field(buf, pos, end)
        if number == _TENSOR_RAW_DATA and wire == LEN:
            raw = value
            continue
        if number == _TENSOR_NAME and wire == LEN:
            name = text(buf, value)
        elif number == _TENSOR_DATA_TYPE and wire == VARINT:
            data_type = value
        elif number == _TENSOR_DATA_LOCATION and wire == VARINT:
            location = value
        elif number == _TENSOR_EXTERNAL_DATA and wire == LEN:
            key, value_text = string_pair(buf, value)
            external[key] = value_text
        kept += buf[start:pos]
    if location == _EXTERNAL:
        if data_type not in MAPPED_TYPES:
            raise _NotMappable()
        if name is not None and name not in weights and "location" in external:
            weights[name] = MappedWeight(files.get(external["location"]), _int(external.get("offset", "0")),
                                         _int(external["length"]) if "length" in external else None)
        return bytes(buf[begin:end])
    if (raw is None or name is None or raw[1] - raw[0] < MIN_MAPPED_BYTES or name in weights
            or data_type not in MAPPED_TYPES):
        return bytes(buf[begin:end])
    weights[name] = MappedWeight(buf, raw[0], raw[1] - raw[0])
    for key, entry in (("location", LOCATION), ("length", str(raw[1] - raw[0]))):
        kept += encode_len(_TENSOR_EXTERNAL_DATA, encode_len(1, key.encode()) + encode_len(2, entry.encode()))
    kept += encode_varint(_TENSOR_DATA_LOCATION << 3 | VARINT) + encode_varint(_EXTERNAL)
    return bytes(kept)


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ModelError(f"external data offset/length {text!r} is not a number") from None
    if value < 0:
        raise ModelError(f"external data offset/length {value} is negative")
    return value
