"""The shared protobuf wire decoder: varints, each wire type, groups, and lengths past the end."""

from __future__ import annotations

import struct

import pytest
from pbwrite import key, varint

from netdiff._protowire import (END_GROUP, FIXED32, FIXED64, LEN, START_GROUP, VARINT, WireError, iter_fields,
                                packed_varints, read_field, read_varint)


def fields(data: bytes, **kw) -> list:
    return list(iter_fields(data, 0, len(data), **kw))


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1])
def test_varint_round_trip(value):
    data = b"\xaa" + varint(value) + b"\x55"
    assert read_varint(data, 1, len(data)) == (value, len(data) - 1)


def test_ten_byte_varint_is_the_maximum():
    assert varint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert read_varint(b"\xff" * 9 + b"\x01", 0, 10) == (2**64 - 1, 10)
    with pytest.raises(WireError, match="longer than 10 bytes"):
        read_varint(b"\xff" * 10 + b"\x01", 0, 11)


def test_truncated_varint_respects_the_message_end_not_the_buffer_end():
    with pytest.raises(WireError, match="past the end"):
        read_varint(b"\x80\x80", 0, 2)
    with pytest.raises(WireError, match="past the end"):
        read_varint(b"\x96\x01", 0, 1)  # the continuation byte lies outside the message
    with pytest.raises(WireError, match="past the end"):
        read_varint(b"", 0, 0)


def test_each_wire_type_yields_int_or_absolute_span():
    payload = b"hello"
    body = (key(1, VARINT) + varint(150) + key(2, LEN) + varint(len(payload)) + payload
            + key(3, FIXED32) + struct.pack("<f", 1.5) + key(4, FIXED64) + struct.pack("<d", -2.0))
    data = b"\x00\x00" + body  # a message that starts at offset 2: spans are absolute
    got = list(iter_fields(data, 2, len(data)))
    assert [(n, w) for n, w, _ in got] == [(1, VARINT), (2, LEN), (3, FIXED32), (4, FIXED64)]
    assert got[0][2] == 150
    (b2, s2), (b3, s3), (b4, s4) = (v for _, _, v in got[1:])
    assert data[b2:s2] == payload
    assert struct.unpack("<f", data[b3:s3]) == (1.5,)
    assert struct.unpack("<d", data[b4:s4]) == (-2.0,)
    assert s4 == len(data)


def test_works_on_memoryview_and_large_field_numbers():
    data = key(536870911, VARINT) + varint(7)  # the largest legal field number
    assert list(iter_fields(memoryview(data), 0, len(data))) == [(536870911, VARINT, 7)]


def test_packed_varints():
    body = varint(3) + varint(300) + varint(2**40)
    data = key(1, LEN) + varint(len(body)) + body
    ((_, _, span),) = fields(data)
    assert packed_varints(data, span) == [3, 300, 2**40]
    with pytest.raises(WireError, match="past the end"):
        packed_varints(data, (span[0], span[1] - 1))  # the last varint is cut by the span


@pytest.mark.parametrize("data, message", [
    (key(1, LEN) + varint(10) + b"abc", "field 1 declares 10 bytes but only 3 remain"),
    (key(1, LEN) + varint(2**63) + b"abc", "declares"),  # a huge length is refused, never sliced
    (key(2, FIXED32) + b"\x00\x00\x00", "fixed32 field 2 runs past the end"),
    (key(3, FIXED64) + b"\x00" * 7, "fixed64 field 3 runs past the end"),
    (key(1, VARINT), "varint runs past the end"),
    (b"\x00\x01", "field number 0"),
    (key(1, 6) + b"\x00", "unsupported wire type 6"),
    (key(1, 7) + b"\x00", "unsupported wire type 7"),
])
def test_malformed_fields_raise_wire_error(data, message):
    with pytest.raises(WireError, match=message):
        fields(data)


def test_length_is_checked_against_the_message_end_not_the_buffer():
    data = key(1, LEN) + varint(4) + b"abcd"
    assert fields(data) == [(1, LEN, (2, 6))]
    with pytest.raises(WireError, match="declares 4 bytes but only 3 remain"):
        list(iter_fields(data, 0, 5))


def test_wire_error_is_a_value_error():
    assert issubclass(WireError, ValueError)


GROUP = (key(5, START_GROUP) + key(1, VARINT) + varint(9) + key(6, START_GROUP) + key(2, LEN) + b"\x01x"
         + key(6, END_GROUP) + key(5, END_GROUP))


def test_groups_are_rejected_by_default():
    data = key(1, VARINT) + b"\x01" + GROUP
    with pytest.raises(WireError, match="unsupported wire type 3 \\(field 5\\)"):
        fields(data)
    with pytest.raises(WireError, match="unsupported wire type 4"):
        fields(key(5, END_GROUP))


def test_groups_are_skipped_with_nesting():
    data = key(1, VARINT) + b"\x01" + GROUP + key(2, VARINT) + b"\x02"
    assert fields(data, groups="skip") == [(1, VARINT, 1), (2, VARINT, 2)]
    number, wire, (begin, stop), after = read_field(data, 2, len(data), groups="skip")
    assert (number, wire, after) == (5, START_GROUP, 2 + len(GROUP))
    assert data[begin:stop] == GROUP[1:-1]  # the contents, between the two tags


def test_deeply_nested_groups_do_not_exhaust_the_stack():
    depth = 100_000
    data = key(1, START_GROUP) * depth + key(1, END_GROUP) * depth
    assert fields(data, groups="skip") == []


@pytest.mark.parametrize("data, message", [
    (GROUP[:-1], "group 5 not terminated"),
    (key(5, START_GROUP) + key(6, END_GROUP), "unbalanced group"),
    (key(5, START_GROUP) + key(1, LEN) + varint(50) + key(5, END_GROUP), "declares 50 bytes"),
    (key(5, START_GROUP) + b"\x00" + key(5, END_GROUP), "field number 0"),
    (key(5, START_GROUP) + key(1, 7) + key(5, END_GROUP), "unsupported wire type 7"),
])
def test_malformed_groups_raise_when_skipped(data, message):
    with pytest.raises(WireError, match=message):
        fields(data, groups="skip")


def test_unknown_groups_mode_is_refused():
    with pytest.raises(ValueError, match="groups must be"):
        fields(b"", groups="ignore")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1])
def test_encoders_round_trip(value):
    from netdiff._protowire import encode_len, encode_varint

    assert read_varint(encode_varint(value), 0, 10) == (value, len(encode_varint(value)))
    field = encode_len(7, b"abc")
    assert list(iter_fields(field, 0, len(field))) == [(7, 2, (2, 5))]
