"""Ascend "nano" dump files (Atlas nano devices): a TLV header instead of the DumpData protobuf.

Layout, little-endian (msaccucmp's ``dump_parse/nano_dump_data.py`` describes the same)::

    uint64 head_len | head (head_len bytes) | input[0..] data | output[0..] data

and ``8 + head_len + sum(sizes) == file size``. The head is::

    uint32 magic 0x5A5A5A5A | uint32 version |
    TLV inputs  (uint32 tag 4, uint32 length): uint32 count, then per input
        int32 data_type, int32 format, int32 address_type, uint64 address, uint64 offset,
        uint64 size, uint32 tlv_list_len, TLNV shape (tag 0), TLNV original shape (tag 1)
    TLV outputs (uint32 tag 5, uint32 length): uint32 count, then per output
        int32 data_type, int32 format, int32 address_type, int32 original_index,
        int32 original_data_type, int32 original_format, uint64 address, uint64 offset,
        uint64 size, uint32 tlv_list_len, TLNV shape (0), TLNV original shape (1),
        TLNV origin name (2, UTF-8 bytes)

A TLNV is ``uint32 tag, uint32 byte length, values`` (uint64 dims); one whose tag is not the one
expected next is absent (nothing consumed), as in msaccucmp. Data types are GE's ``DataType``
codes (DT_FLOAT=0, DT_FLOAT16=1, ...), mapped here to the dump protobuf's; formats share the
protobuf's codes. Device addresses are ignored.
"""

from __future__ import annotations

import struct
from pathlib import Path

from netdiff.ascend.dumpfile import DumpFile, TensorRecord

MAGIC = 0x5A5A5A5A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_INPUTS, _OUTPUTS = 4, 5
_SHAPE, _ORIGINAL_SHAPE, _ORIGIN_NAME = 0, 1, 2
#: GE DataType code -> dump protobuf OutputDataType code (netdiff.ascend.formats.DTYPES).
GE_TO_DUMP_DTYPE = {0: 1, 1: 2, 2: 3, 3: 7, 4: 4, 6: 5, 7: 6, 8: 9, 9: 8, 10: 10, 11: 12, 12: 11, 16: 16, 17: 17,
                    23: 23, 27: 27, 28: 0, 30: 29}
#: Code given to a GE data type netdiff does not decode (its tensor is listed as skipped).
UNSUPPORTED = -1


class NanoFormatError(ValueError):
    """The TLV head is malformed."""


class _Cursor:
    """Bounds-checked little-endian reads over the head."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise NanoFormatError(f"the TLV head ends at byte {len(self.data)}, inside a field at byte {self.pos}")
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def peek_tag(self) -> int | None:
        return struct.unpack_from("<I", self.data, self.pos)[0] if self.pos + 4 <= len(self.data) else None

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise NanoFormatError(f"a value of {count} bytes at byte {self.pos} runs past the TLV head "
                                  f"({len(self.data)} bytes)")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk


def is_nano(head: bytes) -> bool:
    """True when a dump's head (after the uint64 length) starts with the nano magic."""
    return head[:4] == MAGIC_BYTES


def parse_nano(path: Path, size: int, head_len: int, head: bytes) -> DumpFile:
    """Decode a nano dump's TLV head into a :class:`DumpFile` (tensor data stays in the file).

    Raises:
        NanoFormatError: Malformed head, or sizes that disagree with the file size.
    """
    cursor = _Cursor(head)
    if cursor.read("<I") != MAGIC:
        raise NanoFormatError("the TLV head does not start with the magic 0x5A5A5A5A")
    version = cursor.read("<I")
    inputs = _section(cursor, _INPUTS, "input")
    outputs = _section(cursor, _OUTPUTS, "output")
    declared = 8 + head_len + sum(v["size"] for v in inputs + outputs)
    if declared != size:
        what = "truncated nano dump" if declared > size else "nano dump with trailing data"
        raise NanoFormatError(f"{what}: the file has {size} bytes but its head declares {declared} "
                              f"(8 + head {head_len} + tensor sizes)")
    offset = 8 + head_len
    records: dict[str, list[TensorRecord]] = {"input": [], "output": []}
    for values in inputs + outputs:
        records[values["direction"]].append(TensorRecord(**values, offset=offset))
        offset += values["size"]
    return DumpFile(path=path, variant="nano", version=str(version), dump_time=0, op_name="",
                    inputs=tuple(records["input"]), outputs=tuple(records["output"]))


def _section(cursor: _Cursor, tag: int, direction: str) -> list[dict]:
    """The records of one TLV section (absent when the next tag is another one)."""
    if cursor.peek_tag() != tag:
        return []
    cursor.read("<I")
    length = cursor.read("<I")
    start = cursor.pos
    count = cursor.read("<I")
    if count * 40 > len(cursor.data) - cursor.pos:  # each record has at least 40 bytes of fixed fields
        raise NanoFormatError(f"{count} {direction}s cannot fit in the rest of the TLV head")
    records = [_record(cursor, direction, index) for index in range(count)]
    if cursor.pos < start + length <= len(cursor.data):  # room left for fields this reader does not know
        cursor.pos = start + length
    return records


def _record(cursor: _Cursor, direction: str, index: int) -> dict:
    values: dict = {"direction": direction, "index": index}
    ge_type = cursor.read("<i")
    values["data_type"] = GE_TO_DUMP_DTYPE.get(ge_type, UNSUPPORTED)
    values["format"] = cursor.read("<i")
    cursor.read("<i")  # address type
    if direction == "output":
        original_index = cursor.read("<i")
        cursor.read("<i")  # original data type
        cursor.read("<i")  # original format
    cursor.read("<Q")  # device address
    cursor.read("<Q")  # device offset
    values["size"] = cursor.read("<Q")
    cursor.read("<I")  # tlv_list_len (msaccucmp does not use it either)
    shape = _tlnv(cursor, _SHAPE)
    original = _tlnv(cursor, _ORIGINAL_SHAPE)
    values["shape"] = _dims(shape) if shape is not None else ()
    values["original_shape"] = _dims(original) if original is not None else ()
    if direction == "output":
        name = _tlnv(cursor, _ORIGIN_NAME)
        if name:
            text = name.split(b"\x00", 1)[0].decode("utf-8", errors="replace")
            if text:
                values["original_op"] = (text, max(original_index, 0))
    return values


def _tlnv(cursor: _Cursor, tag: int) -> bytes | None:
    if cursor.peek_tag() != tag:
        return None
    cursor.read("<I")
    return cursor.take(cursor.read("<I"))


def _dims(payload: bytes) -> tuple[int, ...]:
    count = len(payload) // 8
    return struct.unpack_from(f"<{count}Q", payload) if count else ()
