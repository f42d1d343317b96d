"""Reader for ``.npz`` archives: each member is a tensor (``np.savez`` names)."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Any

from netdiff._input_files import open_regular
from netdiff._npz import ZIP_ERRORS, Archive, members
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
        tensors = {}
        shared = Archive(path)
        try:
            with open_regular(path, ".npz archive", DumpFormatError) as raw, zipfile.ZipFile(raw) as archive:
                for m in members(archive, str(path)):
                    source = f"{path}::{m.name}"
                    if m.error:
                        tensors[m.name] = Tensor.unreadable(m.name, m.error, source)
                        continue
                    tensors[m.name] = Tensor(name=m.name, shape=m.shape, dtype=m.dtype.name,
                                             loader=functools.partial(shared.load, m.info.filename),
                                             source=source)
        except ZIP_ERRORS as e:
            raise DumpFormatError(f"{path}: not a readable .npz archive ({e})") from e
        require_readable(tensors)
        return Dump(tensors=tensors, source=str(path), format=self.name)
