"""Run an ONNX file without copying its weights: a small skeleton plus weights mapped from the file.

A ResNet-18 file is 45 MB of weights around 40 KB of graph. Reading it into Python, appending the
extra graph outputs and handing the bytes to onnxruntime copied the weights three or four times
(Python's read, the concatenation, pybind's copy into a string, onnxruntime's tensors), which cost
more than running the model once. Here the file is memory-mapped and only its structure is copied:
every initializer of at least :data:`MIN_MAPPED_BYTES` stored as ``raw_data`` becomes an external-
data reference in the skeleton, and onnxruntime receives it as an OrtValue viewing the mapped file
(``SessionOptions.add_external_initializers``, which uses the buffer without copying). The weights
are then read once, by the page cache, as the first run touches them.

Files whose tensors already live in external data, or that are not plain protobuf, are left to the
ordinary path (:func:`open_skeleton` returns None).
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._lazy import lazy_import
from netdiff._protowire import LEN, VARINT, encode_len, encode_varint, read_field
from netdiff.errors import ModelError

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


class _UsesExternalData(Exception):
    """The file already keeps tensors in external data: leave it to the ordinary path."""


@dataclass
class Skeleton:
    """A model's structure with its large weights mapped from the file.

    Attributes:
        data: The serialized skeleton (structure, small initializers inline).
        model: ``data`` parsed (a ModelProto without the large weights' values).
        weights: Initializer name -> byte span of its raw data in the file.
    """

    data: bytes
    model: Any
    weights: dict[str, tuple[int, int]]
    _map: mmap.mmap = field(repr=False)

    def session(self, extra: bytes, options: Any) -> Any:
        """An InferenceSession of the skeleton with ``extra`` serialized fields appended (e.g. more
        graph outputs), its large initializers viewing the mapped file; the session keeps the map alive.

        Raises:
            ModelError: An initializer's raw data does not match its type and dims.
        """
        from onnx import helper

        names, values, arrays = [], [], []
        for init in self.model.graph.initializer:
            span = self.weights.get(init.name)
            if span is None:
                continue
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
            nbytes, dims = span[1] - span[0], tuple(init.dims)
            if nbytes != dtype.itemsize * math.prod(dims):
                raise ModelError(f"initializer {init.name!r}: {nbytes} bytes of raw data do not fit its type "
                                 f"{dtype.name} and dims {list(dims)}")
            array = np.frombuffer(self._map, dtype=dtype, count=nbytes // dtype.itemsize, offset=span[0]).reshape(dims)
            arrays.append(array)
            names.append(init.name)
            values.append(ort.OrtValue.ortvalue_from_numpy(array))
        if names:
            options.add_external_initializers(names, values)
        session = ort.InferenceSession(self.data + extra, options, providers=["CPUExecutionProvider"])
        session._netdiff_mapped = (self._map, arrays, values)  # the weights must outlive the session
        return session


def open_skeleton(path: str | Path) -> Skeleton | None:
    """Map ``path`` and build its skeleton; None when the file uses external data or cannot be mapped.

    Raises:
        netdiff._protowire.WireError: The file is not valid protobuf (DecodeError from the skeleton's parse).
    """
    try:
        with open(path, "rb") as handle:
            # copy-on-write: should onnxruntime ever write into an initializer, the file stays untouched
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError):  # empty files, special files: the ordinary path reports them
        return None
    weights: dict[str, tuple[int, int]] = {}
    try:
        data = _rewrite(mapped, 0, len(mapped), {_MODEL_GRAPH: lambda b, e: _graph(mapped, b, e, weights)})
    except _UsesExternalData:
        mapped.close()
        return None
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return Skeleton(data, model, weights, mapped)


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


def _graph(buf: Any, begin: int, end: int, weights: dict[str, tuple[int, int]]) -> bytes:
    return _rewrite(buf, begin, end, {_GRAPH_INITIALIZER: lambda b, e: _initializer(buf, b, e, weights)})


def _initializer(buf: Any, begin: int, end: int, weights: dict[str, tuple[int, int]]) -> bytes:
    """The initializer without its raw data and with an external-data reference, when it is large."""
    kept = bytearray()
    raw = name = None
    data_type = 0
    pos = begin
    while pos < end:
        start = pos
        number, wire, value, pos = read_field(buf, pos, end)
        if number in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            raise _UsesExternalData()
        if number == _TENSOR_RAW_DATA and wire == LEN:
            raw = value
            continue
        if number == _TENSOR_NAME and wire == LEN:
            name = bytes(buf[value[0]:value[1]]).decode("utf-8", errors="replace")
        elif number == _TENSOR_DATA_TYPE and wire == VARINT:
            data_type = value
        kept += buf[start:pos]
    if (raw is None or name is None or raw[1] - raw[0] < MIN_MAPPED_BYTES or name in weights
            or data_type not in MAPPED_TYPES):
        return bytes(buf[begin:end])
    weights[name] = raw
    for key, text in (("location", LOCATION), ("length", str(raw[1] - raw[0]))):
        kept += encode_len(_TENSOR_EXTERNAL_DATA, encode_len(1, key.encode()) + encode_len(2, text.encode()))
    kept += encode_varint(_TENSOR_DATA_LOCATION << 3 | VARINT) + encode_varint(_EXTERNAL)
    return bytes(kept)

