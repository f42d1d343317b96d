"""Protobuf wire format shared by netdiff's schema-less readers (no generated code), and the two
encoders the ONNX runner needs to append fields to a serialized model.

Payloads are never copied: a varint field yields an int, a length-delimited (LEN), fixed32 or
fixed64 field yields the absolute ``(begin, stop)`` span of its bytes in the buffer, so callers
can map large payloads with ``np.frombuffer(buf, dtype, count, offset=begin)``. Every length is
checked against the end of the enclosing message before it is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import mmap

    Buffer = bytes | bytearray | memoryview | mmap.mmap

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


class WireError(ValueError):
    """The bytes are not valid protobuf wire format (the message says why)."""


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos``: (unsigned value, next position).

    Raises:
        WireError: The varint reaches ``end`` or is longer than 10 bytes.
    """
    if pos < end and buf[pos] < 0x80:  # the common one-byte case
        return buf[pos], pos + 1
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _value(buf: Buffer, pos: int, end: int, number: int, wire: int) -> tuple[object, int]:
    """Decode the value of a non-group field whose key ends at ``pos``: (value, next position)."""
    if wire == VARINT:
        return read_varint(buf, pos, end)
    if wire == LEN:
        length, pos = read_varint(buf, pos, end)
        if length > end - pos:
            raise WireError(f"field {number} declares {length} bytes but only {end - pos} remain")
    elif wire in _FIXED_SIZES:
        length = _FIXED_SIZES[wire]
        if length > end - pos:
            raise WireError(f"fixed{8 * length} field {number} runs past the end of its message")
    else:
        raise WireError(f"unsupported wire type {wire} (field {number})")
    return (pos, pos + length), pos + length


def read_field(buf: Buffer, pos: int, end: int, *,
               groups: Literal["reject", "skip"] = "reject") -> tuple[int, int, object, int]:
    """Decode the field at ``pos`` of a message ending at ``end``.

    Args:
        groups: "reject" raises on a group (wire types 3/4); "skip" returns a START_GROUP field
            whose value is the span of the group's contents (nested groups included).

    Returns:
        ``(number, wire type, value, next position)``, value as in the module docstring.

    Raises:
        WireError: Malformed key or value, field number 0, or a length past ``end``.
    """
    key, pos = read_varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise WireError("field number 0")
    if wire == VARINT:  # inline the most common case
        value, pos = read_varint(buf, pos, end)
        return number, wire, value, pos
    if wire != START_GROUP or groups != "skip":
        value, pos = _value(buf, pos, end, number, wire)
        return number, wire, value, pos
    begin, open_groups = pos, [number]  # iterative: deep nesting cannot exhaust the Python stack
    while open_groups:
        if pos >= end:
            raise WireError(f"group {number} not terminated")
        stop = pos
        key, pos = read_varint(buf, pos, end)
        if key >> 3 == 0:
            raise WireError("field number 0")
        if key & 7 == START_GROUP:
            open_groups.append(key >> 3)
        elif key & 7 == END_GROUP:
            if key >> 3 != open_groups.pop():
                raise WireError("unbalanced group")
        else:
            _, pos = _value(buf, pos, end, key >> 3, key & 7)
    return number, wire, (begin, stop), pos


def iter_fields(buf: Buffer, start: int, end: int, *,
                groups: Literal["reject", "skip"] = "reject") -> Iterator[tuple[int, int, object]]:
    """Yield ``(number, wire type, value)`` for each field of the message in ``buf[start:end]``.

    With ``groups="skip"`` groups are passed over and not yielded; see :func:`read_field`.
    """
    if groups not in ("reject", "skip"):
        raise ValueError(f"groups must be 'reject' or 'skip', not {groups!r}")
    pos = start
    while pos < end:
        number, wire, value, pos = read_field(buf, pos, end, groups=groups)
        if wire != START_GROUP:
            yield number, wire, value


def packed_varints(buf: Buffer, span: tuple[int, int]) -> list[int]:
    """Decode a packed repeated varint field (small: shapes, not tensor data)."""
    pos, stop = span
    values = []
    while pos < stop:
        value, pos = read_varint(buf, pos, stop)
        values.append(value)
    return values


def text(buf: Buffer, span: tuple[int, int]) -> str:
    """A length-delimited field's bytes as UTF-8 text (invalid bytes replaced)."""
    return bytes(buf[span[0]:span[1]]).decode("utf-8", errors="replace")


def string_pair(buf: Buffer, span: tuple[int, int]) -> tuple[str, str]:
    """Decode a ``{1: key, 2: value}`` message of two strings (ONNX StringStringEntryProto, Ascend OpAttr)."""
    key = value = ""
    for number, wire, field_span in iter_fields(buf, *span):
        if wire == LEN and number == 1:
            key = text(buf, field_span)
        elif wire == LEN and number == 2:
            value = text(buf, field_span)
    return key, value


def encode_varint(value: int) -> bytes:
    """Encode an unsigned varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_len(number: int, payload: bytes) -> bytes:
    """Encode a length-delimited field (key, length, payload)."""
    return encode_varint((number << 3) | LEN) + encode_varint(len(payload)) + payload
