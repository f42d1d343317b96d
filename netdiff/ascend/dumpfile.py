"""Ascend (ACL / GE) dump files: the binary layout and the ``DumpData`` protobuf header.

Binary layout (msaccucmp ``-v 2``, the default)::

    uint64 LE header_len | DumpData (header_len bytes, data fields empty) |
    raw bytes of input[0..], output[0..], buffer[0..], space[0..] (no padding)

and ``8 + header_len + sum(sizes) == file size``. The older "protobuf dump" (``-v 1``) is one
``DumpData`` message with the tensor bytes inline; Atlas nano devices write a TLV head instead
(:mod:`netdiff.ascend.nanodump`). Both protobuf variants are decoded here by a small protobuf wire
reader written from the ``toolkit.dumpdata`` schema (field numbers below), so no CANN install
and no generated code are needed. Tensor bytes are never read here: records carry the absolute
byte range, and :func:`netdiff.ascend.formats.load_record` maps it on demand.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from netdiff._protowire import LEN, VARINT, WireError, iter_fields, packed_varints, string_pair, text
from netdiff.errors import DumpFormatError

#: Header lengths above this are implausible for a real dump (headers hold a few shapes).
MAX_HEADER = 64 * 1024 * 1024

# DumpData field numbers (toolkit.dumpdata, resource/dump_data.proto).
_DD_VERSION, _DD_TIME, _DD_OUTPUT, _DD_INPUT, _DD_BUFFER, _DD_OP_NAME, _DD_ATTR, _DD_SPACE = 1, 2, 3, 4, 5, 6, 7, 8
# Per message: field number -> record attribute. OpOutput and OpInput number data/size differently.
_OUTPUT_FIELDS = {1: "data_type", 2: "format", 3: "shape", 4: "original_op", 5: "data", 6: "size",
                  7: "original_shape", 8: "sub_format", 9: "device_address", 11: "device_offset"}
_INPUT_FIELDS = {1: "data_type", 2: "format", 3: "shape", 4: "data", 5: "size", 6: "original_shape",
                 7: "sub_format", 8: "device_address", 9: "device_offset"}
#: Device memory facts in the header that say nothing about the tensor's values.
_DEVICE_ONLY = {"device_address", "device_offset"}
_BUFFER_FIELDS = {1: "data_type", 2: "data", 3: "size"}  # buffer_type / space type stored as data_type
_TAGS_START = {0x0A, 0x10, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42}  # first byte of a DumpData message


def _dims(buf, begin: int, end: int) -> tuple[int, ...]:
    """Decode a ``Shape`` message (repeated uint64 dim = 1, packed or not)."""
    dims: list[int] = []
    for number, wire, value in iter_fields(buf, begin, end):
        if number != 1:
            continue
        if wire == VARINT:
            dims.append(value)
        elif wire == LEN:
            dims.extend(packed_varints(buf, value))
        else:
            raise WireError("Shape.dim has a non-integer wire type")
    return tuple(dims)


@dataclass(frozen=True)
class TensorRecord:
    """One tensor described by a dump header.

    Attributes:
        direction: "input", "output", "buffer" or "space".
        index: Position within its direction.
        data_type: ``OutputDataType`` code (buffer/space: their type enum).
        format: ``OutputFormat`` code as stored (may pack C0/sub-format in upper bytes).
        shape: Device shape.
        original_shape: Framework shape, empty when the device did not record it.
        sub_format: Group count for group-conv FRACTAL_Z, else 0.
        size: Byte count of the tensor data.
        offset: Absolute byte offset of the data in the file.
        original_op: ``(name, output_index)`` from OpOutput.original_op, when present.
    """

    direction: str
    index: int
    data_type: int = 0
    format: int = 2
    shape: tuple[int, ...] = ()
    original_shape: tuple[int, ...] = ()
    sub_format: int = 0
    size: int = 0
    offset: int = 0
    original_op: tuple[str, int] | None = None


@dataclass(frozen=True)
class DumpFile:
    """The decoded header of one dump file; tensor data stays in the file."""

    path: Path
    variant: str  # "binary", "protobuf" or "nano"
    version: str
    dump_time: int
    op_name: str
    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]
    buffers: tuple[TensorRecord, ...] = ()
    spaces: tuple[TensorRecord, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)


def _record(buf, direction: str, index: int, begin: int, end: int, fields: dict[int, str]) -> tuple[dict, tuple | None]:
    values: dict = {"direction": direction, "index": index}
    data_range = None
    for number, wire, value in iter_fields(buf, begin, end):
        name = fields.get(number)
        if name is None or name in _DEVICE_ONLY:
            continue
        if name in ("shape", "original_shape"):
            if wire != LEN:
                raise WireError(f"{direction}[{index}].{name} is not a message")
            values[name] = _dims(buf, *value)
        elif name == "data":
            if wire != LEN:
                raise WireError(f"{direction}[{index}].data is not bytes")
            data_range = value
        elif name == "original_op":
            if wire != LEN:
                raise WireError(f"{direction}[{index}].original_op is not a message")
            op_name, op_index = "", 0
            for n2, w2, v2 in iter_fields(buf, *value):
                if n2 == 1 and w2 == LEN:
                    op_name = text(buf, v2)
                elif n2 == 2 and w2 == VARINT:
                    op_index = v2
            values["original_op"] = (op_name, op_index)
        elif wire == VARINT:
            values[name] = value if name != "sub_format" else _int32(value)
        else:
            raise WireError(f"{direction}[{index}].{name} has wire type {wire}, expected varint")
    return values, data_range


def _int32(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_dumpdata(buf, start: int, end: int) -> tuple[dict, dict[str, list[tuple[dict, tuple | None]]]]:
    head = {"version": "", "dump_time": 0, "op_name": "", "attrs": {}}
    groups: dict[str, list] = {"input": [], "output": [], "buffer": [], "space": []}
    specs = {_DD_OUTPUT: ("output", _OUTPUT_FIELDS), _DD_INPUT: ("input", _INPUT_FIELDS),
             _DD_BUFFER: ("buffer", _BUFFER_FIELDS), _DD_SPACE: ("space", _BUFFER_FIELDS)}
    for number, wire, value in iter_fields(buf, start, end):
        if number in specs:
            if wire != LEN:
                raise WireError(f"DumpData field {number} is not a message")
            direction, fields = specs[number]
            groups[direction].append(_record(buf, direction, len(groups[direction]), *value, fields))
        elif number == _DD_VERSION and wire == LEN:
            head["version"] = text(buf, value)
        elif number == _DD_OP_NAME and wire == LEN:
            head["op_name"] = text(buf, value)
        elif number == _DD_TIME and wire == VARINT:
            head["dump_time"] = value
        elif number == _DD_ATTR and wire == LEN:
            key, val = string_pair(buf, value)
            head["attrs"][key] = val
        elif number in (_DD_VERSION, _DD_OP_NAME, _DD_TIME, _DD_ATTR):
            raise WireError(f"DumpData field {number} has wire type {wire}")
    return head, groups


def read_header(path: str | Path) -> DumpFile:
    """Decode the header of one dump file (binary layout first, with the nano TLV head
    (:mod:`netdiff.ascend.nanodump`) recognised by its magic, then the inline protobuf one).

    Raises:
        DumpFormatError: The file is too short, truncated, has an oversized header, or its
            header is not a valid ``DumpData`` message.
    """
    from netdiff.ascend import nanodump

    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise DumpFormatError(f"{path}: {size} bytes is too short for an Ascend dump (expected an 8-byte "
                              "header length followed by a DumpData header)")
    with open(path, "rb") as handle:
        header_len = struct.unpack("<Q", handle.read(8))[0]
        binary_error = None
        if header_len > size - 8:
            binary_error = (f"header length {header_len} exceeds the file size {size} (truncated file, or "
                            "not an Ascend dump)")
        elif header_len > MAX_HEADER:
            binary_error = f"header length {header_len} is implausibly large (limit {MAX_HEADER})"
        else:
            header = handle.read(header_len)
            if nanodump.is_nano(header):
                try:
                    return nanodump.parse_nano(path, size, header_len, header)
                except nanodump.NanoFormatError as e:
                    raise DumpFormatError(f"{path}: {e}") from e
            try:
                head, groups = _decode_dumpdata(header, 0, len(header))
            except WireError as e:
                binary_error = f"DumpData header is not valid protobuf ({e})"
            else:
                try:
                    return _binary(path, size, header_len, head, groups)
                except WireError as e:
                    binary_error = str(e)
    return _inline_or_fail(path, size, binary_error)


def _binary(path: Path, size: int, header_len: int, head: dict, groups: dict) -> DumpFile:
    declared = 8 + header_len + sum(int(v.get("size", 0)) for items in groups.values() for v, _ in items)
    if declared != size:
        what = "truncated Ascend dump" if declared > size else "Ascend dump with trailing data"
        raise WireError(f"{what}: the file has {size} bytes but its header declares {declared} "
                         f"(8 + header {header_len} + tensor sizes)")
    offset = 8 + header_len
    records: dict[str, list[TensorRecord]] = {}
    for direction in ("input", "output", "buffer", "space"):
        out = records.setdefault(direction, [])
        for values, _ in groups[direction]:
            out.append(TensorRecord(**values, offset=offset))
            offset += int(values.get("size", 0))
    return DumpFile(path=path, variant="binary", version=head["version"], dump_time=head["dump_time"],
                    op_name=head["op_name"], inputs=tuple(records["input"]), outputs=tuple(records["output"]),
                    buffers=tuple(records["buffer"]), spaces=tuple(records["space"]), attrs=head["attrs"])


def _inline_or_fail(path: Path, size: int, binary_error: str | None) -> DumpFile:
    head, groups = None, {}
    with open(path, "rb") as handle:
        first = handle.read(1)
        if first and first[0] in _TAGS_START:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                try:
                    head, groups = _decode_dumpdata(buf, 0, size)
                except WireError:
                    head = None
    if head is None or head["version"] == "2.0" or not (groups["output"] or groups["input"] or head["op_name"]):
        raise DumpFormatError(f"{path}: {binary_error}")
    records: dict[str, list[TensorRecord]] = {}
    for direction, items in groups.items():
        for values, data_range in items:
            begin, stop = data_range if data_range else (0, 0)
            values = dict(values, size=stop - begin)
            records.setdefault(direction, []).append(TensorRecord(**values, offset=begin))
    return DumpFile(path=path, variant="protobuf", version=head["version"], dump_time=head["dump_time"],
                    op_name=head["op_name"], inputs=tuple(records.get("input", ())),
                    outputs=tuple(records.get("output", ())), buffers=tuple(records.get("buffer", ())),
                    spaces=tuple(records.get("space", ())), attrs=head["attrs"])


def plausible_dump(path: Path) -> bool:
    """Cheap check that ``path`` starts like an Ascend dump (binary or nano header, or inline DumpData)."""
    from netdiff.ascend import nanodump

    try:
        size = path.stat().st_size
        if size < 8:
            return False
        with open(path, "rb") as handle:
            start = handle.read(min(size, 4096))
            header_len = struct.unpack_from("<Q", start)[0]
            if 0 < header_len <= min(size - 8, 1 << 20):  # sniffing reads at most 1 MB
                if nanodump.is_nano(start[8:12]):
                    return True
                header = start[8:8 + header_len] if header_len <= len(start) - 8 else \
                    start[8:] + handle.read(header_len - (len(start) - 8))
                try:
                    for _ in iter_fields(header, 0, len(header)):
                        pass
                    return True
                except WireError:
                    pass
            if start[0] not in _TAGS_START:
                return False
            if size <= 1 << 20:  # small enough: the whole file must be one valid message
                data = start + handle.read()
                try:
                    head, groups = _decode_dumpdata(data, 0, len(data))
                except WireError:
                    return False
                return bool(groups["output"] or groups["input"] or head["op_name"])
            if start[0] in (0x1A, 0x22):  # an output/input message first: may be longer than 4 KB
                return True
            return next(iter_fields(start, 0, len(start)), None) is not None  # a short scalar field
    except (OSError, WireError):
        return False
