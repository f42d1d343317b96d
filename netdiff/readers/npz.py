"""Reader for ``.npz`` archives: each member is a tensor (``np.savez`` names)."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import DumpFormatError
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
                    with archive.open(info) as handle:
                        shape, dtype = _member_header(handle, path, name)
                    tensors[name] = Tensor(name=name, shape=shape, dtype=dtype.name,
                                           loader=functools.partial(_load_member, path, info.filename),
                                           source=f"{path}::{name}")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise DumpFormatError(f"{path}: not a readable .npz archive ({e})") from e
        return Dump(tensors=tensors, source=str(path), format=self.name)


def _member_header(handle: Any, path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(handle, max_header_size=100_000)
    except (ValueError, SyntaxError, EOFError) as e:
        raise DumpFormatError(f"{path}: member {name!r} is not a .npy array ({e})") from e
    if dtype.hasobject:
        raise DumpFormatError(f"{path}: member {name!r} holds Python objects; only numeric arrays are read")
    return tuple(int(d) for d in shape), dtype


def _load_member(path: Path, member: str) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DumpFormatError(f"{path}: member {member!r} is corrupt or truncated ({e})") from e
