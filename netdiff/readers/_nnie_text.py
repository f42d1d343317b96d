"""Shared parsing for NNIE text dumps: hex Q20.12 files, float text files, shape-in-name stems."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._input_files import read_capped
from netdiff.errors import DumpFormatError
from netdiff.types import Tensor

Q12 = 4096.0
#: Every NNIE dump names tensors by Caffe top blob, and device names are cut at 31 characters.
DUMP_META = {"tensor_names": "blob", "name_limit": 31}
_MAX_TEXT_BYTES = 2 * 1024**3
#: Shortest possible text per value ("0\n").
_MIN_BYTES_PER_VALUE = 2


def strip_report(name: str) -> str:
    """Drop the ``_report`` suffix(es) a prototxt adds to request a report point."""
    while name.endswith("_report"):
        name = name[: -len("_report")]
    return name or "_report"


def parse_dims(text: str, path: Path | None = None) -> tuple[int, ...]:
    """``"64_56_56"`` -> ``(64, 56, 56)`` (empty text -> ``()``).

    Raises:
        DumpFormatError: A dim is zero (when ``path`` is given, the message names it).
    """
    dims = tuple(int(d) for d in text.split("_") if d)
    if path is not None and any(d <= 0 for d in dims):
        raise DumpFormatError(f"{path}: its name declares the shape {list(dims)}, which has a zero dimension")
    return dims


def _check_size(path: Path, count: int | None) -> int:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DumpFormatError(f"{path}: cannot read ({e.strerror})") from e
    if size > _MAX_TEXT_BYTES:
        raise DumpFormatError(f"{path}: {size} bytes is too large for a text dump")
    if count is not None and size < count * _MIN_BYTES_PER_VALUE - 1:
        raise DumpFormatError(f"{path}: {size} bytes cannot hold the {count} values its name declares "
                              "(one value per line expected)")
    return size


def _tokens(path: Path) -> list[str]:
    try:
        text = read_capped(path, "text dump", 2**34, DumpFormatError).decode("ascii", "strict")
    except UnicodeDecodeError as e:
        raise DumpFormatError(f"{path}: not a text dump (non-ASCII byte at offset {e.start})") from e
    except OSError as e:
        raise DumpFormatError(f"{path}: cannot read ({e.strerror})") from e
    return text.split()


def read_hex_q12(path: Path, count: int | None = None, q12: bool = True) -> np.ndarray:
    """Read one signed 32-bit two's-complement hex value per line; divide by 4096 when ``q12``.

    Raises:
        DumpFormatError: A token is not 1..8 hex digits, or the count differs from ``count``.
    """
    _check_size(path, count)
    tokens = _tokens(path)
    values = np.empty(len(tokens), dtype=np.int64)
    for i, tok in enumerate(tokens):
        t = tok[2:] if tok[:2] in ("0x", "0X") else tok
        try:
            if not 0 < len(t) <= 8:
                raise ValueError
            values[i] = int(t, 16)
        except ValueError:
            raise DumpFormatError(f"{path}: value #{i + 1} {tok[:20]!r} is not a 32-bit hex word "
                                  "(expected one %08x value per line)") from None
    _check_count(path, values.size, count)
    ints = values.astype(np.uint32).view(np.int32)
    out = ints.astype(np.float64) / Q12 if q12 else ints.astype(np.float64)
    return out.astype(np.float32)


def read_float_text(path: Path, count: int | None = None) -> np.ndarray:
    """Read one float per line (``np.savetxt`` style).

    Raises:
        DumpFormatError: A token is not a number, or the count differs from ``count``.
    """
    _check_size(path, count)
    tokens = _tokens(path)
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(i for i, t in enumerate(tokens) if not _is_float(t))
        raise DumpFormatError(f"{path}: value #{bad + 1} {tokens[bad][:20]!r} is not a number "
                              "(expected one float per line)") from None
    _check_count(path, values.size, count)
    return values.astype(np.float32)


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _check_count(path: Path, got: int, count: int | None) -> None:
    if got == 0:
        raise DumpFormatError(f"{path}: holds no values")
    if count is not None and got % count:
        raise DumpFormatError(f"{path}: holds {got} values, but its name declares a shape of {count} "
                              "(a multiple was expected)")


def with_batch(dims: tuple[int, ...], total: int) -> tuple[int, ...]:
    """Shape ``(N,) + dims`` where N = total / prod(dims) (names omit the batch)."""
    per = math.prod(dims) if dims else 1
    return ((total // per,) + dims) if dims else (total,)


def lazy_tensor(name: str, path: Path, dims: tuple[int, ...], read: Callable[[], np.ndarray],
                **info: Any) -> Tensor:
    """A lazily loaded tensor whose shape is ``(N,) + dims`` (N checked on load).

    N is estimated from the file size without parsing: it is 1 for mapper and simulator dumps;
    RuyiStudio Caffe dumps may hold a batch (N is then re-derived from the file on load).
    """
    batch = info.pop("batch", 1)
    shape = (batch,) + dims if dims else dims

    def load() -> np.ndarray:
        data = read()
        if not dims:
            return data
        if data.size != math.prod(shape):
            raise DumpFormatError(f"{path}: holds {data.size} values, expected {math.prod(shape)} for shape {list(shape)}")
        return data.reshape(shape)

    layout = "NCHW" if len(shape) == 4 else None
    return Tensor(name=name, shape=shape, dtype="float32", loader=load, layout=layout, source=str(path), **info)


def count_values(path: Path) -> int:
    """Number of whitespace-separated values (scanned in 1 MB blocks, no parsing)."""
    total = 0
    pending = False
    token = re.compile(rb"\S+")
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            found = token.findall(block)
            total += len(found)
            if pending and found and not block[:1].isspace():
                total -= 1  # the token continues across the block boundary
            pending = not block[-1:].isspace()
    return total


def find_files(path: Path, pattern: re.Pattern[str], subdirs: tuple[str, ...] = ()) -> list[Path]:
    """Files directly in ``path`` (or in one of ``subdirs`` of it) whose name matches ``pattern``."""
    roots = [path] + [path / s for s in subdirs if (path / s).is_dir()]
    found = []
    for root in roots:
        try:
            entries = sorted(root.iterdir())
        except OSError:
            continue
        found.extend(p for p in entries if pattern.match(p.name) and p.is_file())
        if found:
            return found
    return found


def any_match(path: Path, pattern: re.Pattern[str], subdirs: tuple[str, ...] = ()) -> bool:
    """Cheap sniff: ``path`` is a matching file, or a directory holding one (or in ``subdirs``)."""
    if path.is_file():
        return bool(pattern.match(path.name))
    if not path.is_dir():
        return False
    for root in [path] + [path / s for s in subdirs]:
        try:
            with os.scandir(root) as it:
                for entry in it:
                    if pattern.match(entry.name):
                        return True
        except OSError:
            continue
    return False
