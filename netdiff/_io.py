"""Safe file output: atomic writes, file names derived from untrusted tensor names."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from netdiff.errors import DumpFormatError, OutputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 80


def safe_file_stem(name: str, taken: set[str] | None = None) -> str:
    """Return a file stem for ``name`` that cannot escape a directory and is unique in ``taken``.

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` and leading dots are dropped; a name that
    had to change, or that collides (case-insensitively) with one in ``taken``, gets a hash suffix.
    The real name is kept in the manifest.
    """
    stem = _UNSAFE.sub("_", name).lstrip(".")[:MAX_STEM] or "tensor"
    taken = set() if taken is None else taken
    if stem != name or stem.lower() in taken:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()
        stem = f"{stem[:MAX_STEM - 9]}-{digest[:8]}"
        counter = 1
        while stem.lower() in taken:
            stem = f"{stem[:MAX_STEM - 12]}-{digest[:8]}-{counter}"
            counter += 1
    taken.add(stem.lower())
    return stem


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` as .npy atomically (never pickled)."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def load_npy(path: str | os.PathLike[str], mmap: bool = True) -> np.ndarray:
    """Load a .npy file read-only, memory-mapped when possible, never unpickling.

    Raises:
        DumpFormatError: The file is not a valid .npy array or its data is truncated.
    """
    path = Path(path)
    try:
        if mmap:
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as e:
                if "pickle" in str(e).lower() or "object" in str(e).lower():
                    raise DumpFormatError(f"{path}: holds Python objects (pickled); only numeric arrays are read") from e
                if "mmap length is greater than file size" in str(e) or "cannot mmap an empty file" in str(e):
                    raise DumpFormatError(f"{path}: truncated .npy file (data shorter than its header says)") from e
                # some valid files (e.g. zero-size arrays) cannot be memory-mapped
        return np.load(path, allow_pickle=False)
    except DumpFormatError:
        raise
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in reason.lower():
            reason = "holds Python objects (pickled); only numeric arrays are read"
        raise DumpFormatError(f"{path}: not a readable .npy array ({reason})") from e


def prepare_output_dir(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Create ``path`` (or accept it when empty, or non-empty with ``force``)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{path}: exists and is not a directory")
        if any(path.iterdir()) and not force:
            raise OutputError(f"{path}: directory is not empty (use --force to write into it)")
    else:
        try:
            path.mkdir(parents=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot create directory ({e.strerror})") from e
    return path


def write_atomic_with(path: str | os.PathLike[str], writer: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``writer(handle)`` on a temporary file and rename it over ``path`` when it returns."""
    with atomic_open(path, "wb" if binary else "w") as handle:
        writer(handle)


def npy_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype]:
    """Read only the header of a .npy file: (shape, dtype).

    Raises:
        DumpFormatError: Not a .npy file, an object dtype, or data shorter than the header says.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=100_000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=100_000)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DumpFormatError(f"{path}: not a readable .npy file ({reason})") from e
    if dtype.hasobject:
        raise DumpFormatError(f"{path}: holds Python objects (pickled); only numeric arrays are read")
    count = 1
    for d in shape:
        count *= int(d)
    needed = offset + count * dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise DumpFormatError(f"{path}: truncated .npy file ({size} bytes, header says {needed})")
    return tuple(int(d) for d in shape), dtype
