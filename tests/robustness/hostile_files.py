"""Builders of hostile input files for the hostile-input families (test_robust_hostile.py)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """The .npy header bytes of an array of ``shape``."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def zeros_deflate(prefix: bytes, zeros: int, chunk: int = 1 << 22) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` + ``zeros`` zero bytes, and its CRC-32, built in time and
    memory proportional to the compressed size (one chunk compressed, then repeated)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = min(chunk, zeros)
    parts = [c.compress(prefix + bytes(first)) + c.flush(zlib.Z_FULL_FLUSH)]
    crc = zlib.crc32(bytes(first), zlib.crc32(prefix))
    left = zeros - first
    if left >= chunk:
        block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
        zero_crc_chunk = bytes(chunk)
        count = left // chunk
        parts.append(block * count)
        for _ in range(count):
            crc = zlib.crc32(zero_crc_chunk, crc)
        left -= count * chunk
    parts.append(c.compress(bytes(left)) + c.flush())
    crc = zlib.crc32(bytes(left), crc)
    return b"".join(parts), crc & 0xFFFFFFFF


def write_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> Path:
    """Write a zip of pre-compressed entries (name, data, crc, uncompressed size, method 0/8).

    Sizes must stay below 4 GiB (no zip64). The declared size may lie: that is the point.
    """
    out = bytearray()
    central = bytearray()
    for name, data, crc, size, method in entries:
        raw = name.encode("utf-8")
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0)
        out += raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                               len(raw), 0, 0, 0, 0, 0, offset) + raw
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                                 len(out), 0)
    path.write_bytes(bytes(out))
    return path


def npz_bomb(path: Path, nbytes: int, name: str = "x") -> Path:
    """A real deflate bomb: one float32 member of ``nbytes`` zeros (a few KB per GB on disk)."""
    head = npy_header((nbytes // 4,))
    data, crc = zeros_deflate(head, nbytes // 4 * 4)
    return write_zip(path, [(f"{name}.npy", data, crc, len(head) + nbytes // 4 * 4, 8)])


def npz_lying(path: Path, declared: int, name: str = "x") -> Path:
    """A member whose zip directory and .npy header declare ``declared`` bytes but hold almost none."""
    head = npy_header((declared // 4,))
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = data.compress(head + bytes(64)) + data.flush()
    return write_zip(path, [(f"{name}.npy", stream, zlib.crc32(head + bytes(64)), len(head) + declared, 8)])
