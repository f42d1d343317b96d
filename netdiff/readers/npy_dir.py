"""Reader for a plain directory of ``.npy`` files: the file stem is the tensor name."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from netdiff._io import load_npy, npy_header
from netdiff.errors import DumpFormatError
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor


@register_reader("npy-dir")
class NpyDirReader(Reader):
    """A directory of ``NAME.npy`` files (searched recursively, sorted by path)."""

    priority = 0

    def sniff(self, path: Path) -> bool:
        return path.is_dir() and next(path.rglob("*.npy"), None) is not None

    def _read(self, path: Path, **options: Any) -> Dump:
        tensors: dict[str, Tensor] = {}
        for file in sorted(path.rglob("*.npy")):
            if not file.is_file():
                continue
            name = file.relative_to(path).with_suffix("").as_posix()
            try:
                shape, dtype = npy_header(file)
            except DumpFormatError as e:
                tensors[name] = Tensor.unreadable(name, str(e), str(file))
                continue
            tensors[name] = Tensor(name=name, shape=shape, dtype=dtype.name,
                                   loader=functools.partial(load_npy, file), source=str(file))
        require_readable(tensors)
        return Dump(tensors=tensors, source=str(path), format=self.name)
