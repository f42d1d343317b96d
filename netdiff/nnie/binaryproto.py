"""A tiny protobuf wire decoder for Caffe's ``BlobProto`` (the mapper's ``.binaryproto`` mean file).

Fields read (caffe.proto): ``num=1 channels=2 height=3 width=4`` (legacy varints), ``data=5``
(float, packed or not), ``shape=7`` (BlobShape: ``dim=1`` int64, packed or not),
``double_data=8`` (double, packed or not). Everything else is skipped.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from netdiff.errors import InputError

_MAX_BYTES = 512 * 1024 * 1024


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise InputError(f"{where}: truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise InputError(f"{where}: malformed protobuf varint")


def _fields(buf: bytes, where: str):
    """Yield (field number, wire type, value) where value is an int or a bytes slice."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise InputError(f"{where}: invalid protobuf field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise InputError(f"{where}: unsupported protobuf wire type {wire} (not a BlobProto?)")
        if pos > len(buf):
            raise InputError(f"{where}: truncated protobuf field {number}")
        yield number, wire, value


def decode_blob_proto(data: bytes, where: str = "<binaryproto>") -> np.ndarray:
    """Decode a serialized BlobProto into a float32 array of its declared shape.

    Raises:
        InputError: The bytes are not a BlobProto, or the data count disagrees with the shape.
    """
    legacy = {1: None, 2: None, 3: None, 4: None}
    dims: list[int] = []
    chunks: list[np.ndarray] = []
    for number, wire, value in _fields(data, where):
        if number in legacy and wire == 0:
            legacy[number] = int(value)
        elif number == 7 and wire == 2:
            for sub, sub_wire, sub_value in _fields(value, where):
                if sub == 1 and sub_wire == 0:
                    dims.append(int(sub_value))
                elif sub == 1 and sub_wire == 2:
                    pos = 0
                    while pos < len(sub_value):
                        d, pos = _varint(sub_value, pos, where)
                        dims.append(int(d))
        elif number == 5:
            if wire == 2:
                if len(value) % 4:
                    raise InputError(f"{where}: packed float data of {len(value)} bytes is not a multiple of 4")
                chunks.append(np.frombuffer(value, dtype="<f4"))
            elif wire == 5:
                chunks.append(np.array(struct.unpack("<f", value), dtype=np.float32))
        elif number == 8:
            if wire == 2:
                if len(value) % 8:
                    raise InputError(f"{where}: packed double data of {len(value)} bytes is not a multiple of 8")
                chunks.append(np.frombuffer(value, dtype="<f8").astype(np.float32))
            elif wire == 1:
                chunks.append(np.array(struct.unpack("<d", value), dtype=np.float32))
    if not dims:
        dims = [v for v in (legacy[1], legacy[2], legacy[3], legacy[4]) if v is not None]
    values = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not dims:
        raise InputError(f"{where}: BlobProto has no shape (neither shape{{dim}} nor num/channels/height/width)")
    if math.prod(dims) != values.size:
        raise InputError(f"{where}: BlobProto shape {dims} needs {math.prod(dims)} values, the file holds {values.size}")
    return values.reshape(dims)


def read_blob_proto(path: str | Path) -> np.ndarray:
    """Read a ``.binaryproto`` file (see :func:`decode_blob_proto`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise InputError(f"{path}: {size} bytes is too large for a mean file")
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read mean file ({e.strerror})") from e
    return decode_blob_proto(data, str(path))


def encode_blob_proto(array: np.ndarray) -> bytes:
    """Serialize ``array`` as a BlobProto with ``shape`` and packed float ``data`` (for tests and tools)."""
    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    a = np.ascontiguousarray(array, dtype="<f4")
    dims = b"".join(varint(int(d)) for d in a.shape)
    shape = b"\x0a" + varint(len(dims)) + dims
    payload = a.tobytes()
    return b"\x3a" + varint(len(shape)) + shape + b"\x2a" + varint(len(payload)) + payload
