"""Test-only protobuf wire encoder shared by the test writers (Ascend dumps, caffemodels).

Written from the protobuf encoding spec, independently of netdiff's decoder in netdiff/_protowire.py.
"""

from __future__ import annotations


def varint(value: int) -> bytes:
    """Unsigned varint; negative values as 64-bit two's complement, as protobuf writes int64."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    """Field key: number and wire type."""
    return varint((number << 3) | wire)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, sub-messages, packed arrays)."""
    return key(number, 2) + varint(len(payload)) + payload
