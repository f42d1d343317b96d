"""Decode Caffe's ``BlobProto`` (the mapper's ``.binaryproto`` mean file) with :mod:`netdiff._protowire`.

Fields read (caffe.proto): ``num=1 channels=2 height=3 width=4`` (legacy varints), ``data=5``
(float, packed or not), ``shape=7`` (BlobShape: ``dim=1`` int64, packed or not),
``double_data=8`` (double, packed or not). Everything else is skipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from netdiff._protowire import FIXED32, FIXED64, LEN, VARINT, WireError, iter_fields, packed_varints
from netdiff._input_files import read_capped
from netdiff.errors import InputError

_MAX_BYTES = 512 * 1024 * 1024


def decode_blob_proto(data: bytes, where: str = "<binaryproto>") -> np.ndarray:
    """Decode a serialized BlobProto into a float32 array of its declared shape.

    Raises:
        InputError: The bytes are not a BlobProto, or the data count disagrees with the shape.
    """
    legacy = {1: None, 2: None, 3: None, 4: None}
    dims: list[int] = []
    chunks: list[np.ndarray] = []
    try:
        for number, wire, value in iter_fields(data, 0, len(data)):
            if number in legacy and wire == VARINT:
                legacy[number] = value
            elif number == 7 and wire == LEN:
                for sub, sub_wire, sub_value in iter_fields(data, *value):
                    if sub == 1 and sub_wire == VARINT:
                        dims.append(sub_value)
                    elif sub == 1 and sub_wire == LEN:
                        dims.extend(packed_varints(data, sub_value))
            elif (number, wire) in ((5, LEN), (5, FIXED32), (8, LEN), (8, FIXED64)):  # packed or one element
                kind, size = ("float", 4) if number == 5 else ("double", 8)
                begin, stop = value
                if (stop - begin) % size:
                    raise InputError(f"{where}: packed {kind} data of {stop - begin} bytes is not a multiple of {size}")
                chunks.append(np.frombuffer(data, dtype=f"<f{size}", count=(stop - begin) // size, offset=begin))
    except WireError as e:
        raise InputError(f"{where}: not a valid BlobProto ({e})") from None
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
        data = read_capped(path, "mean file", _MAX_BYTES, InputError)
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
