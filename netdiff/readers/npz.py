"""Reader for ``.npz`` archives: each member is a tensor (``np.savez`` names)."""

from __future__ import annotations

import functools
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._io import NPY_ERRORS, check_npy_shape, read_npy_header, read_npy_stream
from netdiff.errors import DumpFormatError
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor


@register_reader("npz")
class NpzReader(Reader):
    """A ``.npz`` archive (compressed or not); members are loaded on demand."""

    priority = 10

    def sniff(self, path: Path) -> bool:
        if not path.is_file():
            return False
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04" and path.suffix.lower() == ".npz"

    def _read(self, path: Path, **options: Any) -> Dump:
        try:
            with zipfile.ZipFile(path) as archive:
                members = [i for i in archive.infolist() if i.filename.endswith(".npy")]
                tensors = {}
                for info in members:
                    name = info.filename[:-4]
                    try:
                        with archive.open(info) as handle:
                            shape, dtype = _member_header(handle, path, name, info.file_size)
                    except DumpFormatError as e:
                        tensors[name] = Tensor.unreadable(name, str(e), f"{path}::{name}")
                        continue
                    tensors[name] = Tensor(name=name, shape=shape, dtype=dtype.name,
                                           loader=functools.partial(_load_member, path, info.filename),
                                           source=f"{path}::{name}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, *NPY_ERRORS) as e:
            raise DumpFormatError(f"{path}: not a readable .npz archive ({e})") from e
        require_readable(tensors)
        return Dump(tensors=tensors, source=str(path), format=self.name)


def _member_header(handle: Any, path: Path, name: str, size: int) -> tuple[tuple[int, ...], np.dtype]:
    try:
        shape, _, dtype = read_npy_header(handle)
        offset = handle.tell()
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, *NPY_ERRORS) as e:
        raise DumpFormatError(f"{path}: member {name!r} is not a .npy array ({e})") from e
    # the member's uncompressed size bounds what its header may declare (checked before allocating)
    return check_npy_shape(f"{path}: member {name!r}", shape, dtype, offset, size)


def _load_member(path: Path, member: str) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            return read_npy_stream(handle, f"{path}: member {member!r}", archive.getinfo(member).file_size)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, *NPY_ERRORS) as e:
        raise DumpFormatError(f"{path}: member {member!r} is corrupt or truncated ({e})") from e
