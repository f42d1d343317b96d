"""Safe ``.npz`` access: member headers read without inflating, inflation budgeted first.

A deflated member may declare gigabytes in a few kilobytes of compressed data (a zip bomb).
Before a member is inflated, its declared size (from the zip directory, bounding what its
``.npy`` header may claim) is checked against a budget: at most :data:`MAX_INFLATE` bytes, or
10x its compressed size when that is more (real float data barely compresses, so a large real
tensor stays readable). Stored (uncompressed) members are bounded by the file itself.
``NETDIFF_MAX_INFLATE`` (bytes) changes the base budget.
"""

from __future__ import annotations

import os
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from netdiff._io import NPY_ERRORS, check_npy_shape, read_npy_header, read_npy_stream
from netdiff.errors import DumpFormatError

#: Default inflation budget of one deflated member (bytes).
MAX_INFLATE = 1 << 30
#: A member compressed at most this much is allowed beyond the budget.
MAX_RATIO = 10
#: What zipfile and zlib raise for a damaged archive.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, EOFError, *NPY_ERRORS)


def inflate_budget(info: zipfile.ZipInfo) -> int | None:
    """Bytes ``info`` may inflate to (None: stored, bounded by the file)."""
    if info.compress_type == zipfile.ZIP_STORED:
        return None
    value = os.environ.get("NETDIFF_MAX_INFLATE", "")
    base = int(value) if value.isdigit() else MAX_INFLATE
    return max(base, MAX_RATIO * info.compress_size)


def check_budget(info: zipfile.ZipInfo, where: str, archive_size: int | None = None) -> None:
    """Refuse a member whose declared inflated size is above its budget (before inflating it), or
    whose stored bytes cannot be in the archive.

    Raises:
        DumpFormatError: The member would inflate beyond the budget, or its sizes lie.
    """
    if archive_size is not None and info.header_offset + info.compress_size > archive_size:
        raise DumpFormatError(f"{where}: declares {info.compress_size:,} stored bytes, beyond the end of the "
                              f"{archive_size:,}-byte archive")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size < info.file_size:
        raise DumpFormatError(f"{where}: declares {info.file_size:,} bytes but stores {info.compress_size:,}")
    budget = inflate_budget(info)
    if budget is not None and info.file_size > budget:
        raise DumpFormatError(
            f"{where}: would inflate {info.file_size:,} bytes from {info.compress_size:,} "
            f"({info.file_size // max(info.compress_size, 1):,}x compression; the limit for a highly compressed "
            f"member is {budget:,} bytes, set NETDIFF_MAX_INFLATE to raise it)")


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member of an archive: its name (without ``.npy``), zip entry and header."""

    name: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...] | None
    dtype: np.dtype | None
    error: str | None = None


def members(archive: zipfile.ZipFile, where: str) -> Iterator[Member]:
    """Each ``.npy`` member with its header (read from the first bytes only) or why it is unreadable."""
    size = archive_size(archive)
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        label = f"{where}: member {name!r}"
        try:
            check_budget(info, label, size)
            with archive.open(info) as handle:
                shape, dtype = _header(handle, label, info.file_size)
        except DumpFormatError as e:
            yield Member(name, info, None, None, str(e))
            continue
        yield Member(name, info, shape, dtype)


def archive_size(archive: zipfile.ZipFile) -> int | None:
    """Bytes of the archive's file or buffer (None when unknown)."""
    fp = archive.fp
    try:
        return os.fstat(fp.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        pass
    try:
        return len(fp.getbuffer())
    except (AttributeError, ValueError, TypeError):
        return None


def _header(handle: IO[bytes], where: str, size: int) -> tuple[tuple[int, ...], np.dtype]:
    try:
        shape, _, dtype = read_npy_header(handle)
        offset = handle.tell()
    except ZIP_ERRORS as e:
        raise DumpFormatError(f"{where} is not a .npy array ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    # the member's uncompressed size bounds what its header may declare (checked before allocating)
    return check_npy_shape(where, shape, dtype, offset, size)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """Inflate one member (budget checked first), never unpickling."""
    check_budget(info, where, archive_size(archive))
    try:
        with archive.open(info) as handle:
            return read_npy_stream(handle, where, info.file_size)
    except ZIP_ERRORS as e:
        raise DumpFormatError(f"{where} is corrupt or truncated ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e


class Archive:
    """One archive shared by the loaders of all its members: opened once, on the first load.

    Reopening the zip for each member re-reads its whole central directory, which made loading
    every member of a 20,000-member archive quadratic. zipfile reads members of one open archive
    from several threads safely.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._lock = threading.Lock()

    def load(self, member: str) -> np.ndarray:
        """Read the member ``member`` (its zip file name), budget checked first."""
        where = f"{self.path}: member {member[:-4]!r}"
        try:
            archive = self._open()
            return read_member(archive, archive.getinfo(member), where)
        except DumpFormatError:
            raise
        except (KeyError, *ZIP_ERRORS) as e:
            raise DumpFormatError(f"{where} is corrupt or truncated ({e})") from e

    def _open(self) -> zipfile.ZipFile:
        from netdiff._input_files import open_regular

        with self._lock:
            if self._zip is None:
                raw = open_regular(self.path, ".npz archive", DumpFormatError)
                try:
                    self._zip = zipfile.ZipFile(raw)
                except BaseException:
                    raw.close()
                    raise
                self._raw = raw
            return self._zip

    def __del__(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._raw.close()


def load_member(path: str | os.PathLike[str], member: str) -> np.ndarray:
    """Open ``path`` and read the member ``member`` (its zip file name)."""
    from netdiff._input_files import open_regular

    where = f"{path}: member {member[:-4] if member.endswith('.npy') else member!r}"
    try:
        with open_regular(path, ".npz archive", DumpFormatError) as raw, zipfile.ZipFile(raw) as archive:
            return read_member(archive, archive.getinfo(member), f"{path}: member {member[:-4]!r}")
    except DumpFormatError:
        raise
    except (KeyError, *ZIP_ERRORS) as e:
        raise DumpFormatError(f"{where} is corrupt or truncated ({e})") from e


def load_all(path: str | os.PathLike[str], error: type[Exception] = DumpFormatError) -> dict[str, np.ndarray]:
    """Every member of an archive by name, each budgeted before it is inflated.

    Raises:
        error: Not a readable archive, or a member cannot be read.
    """
    from netdiff._input_files import open_regular

    try:
        with open_regular(path, ".npz archive", error) as raw, zipfile.ZipFile(raw) as archive:
            out = {}
            for m in members(archive, str(path)):
                if m.error:
                    raise error(m.error)
                out[m.name] = read_member(archive, m.info, f"{path}: member {m.name!r}")
            return out
    except DumpFormatError as e:
        if error is DumpFormatError:
            raise
        raise error(str(e)) from e
    except ZIP_ERRORS as e:
        raise error(f"{path}: not a readable .npz archive ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e


__all__ = ["MAX_INFLATE", "Archive", "Member", "check_budget", "inflate_budget", "load_all", "load_member", "members",
           "read_member"]
