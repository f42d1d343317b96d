"""Safe file output: atomic writes, file names derived from untrusted tensor names."""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import re
import stat
import sys
import tempfile
import threading
import tokenize
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from netdiff._lazy import lazy_import
from netdiff.errors import DumpFormatError, OutputError

np = lazy_import("numpy")  # not at import: `netdiff --help` (which reads STDOUT_OUTPUT) stays light

_HEADER_LOCK = threading.Lock()
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 80
_READ_STEP = 1 << 24
#: Arrays of at least this many bytes are memory-mapped; smaller ones are read.
_MMAP_MIN = 1 << 20
#: Everything numpy's .npy header parsing and loading raise for a malformed file.
NPY_ERRORS = (ValueError, OSError, EOFError, SyntaxError, TypeError, OverflowError, RecursionError,
              MemoryError, tokenize.TokenError)


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


#: Output names that are streams, not files: ``-`` is standard output; /dev/null discards.
STREAMS = ("-", "/dev/stdout", "/dev/stderr", "/dev/null")


#: Flags whose output was accepted for standard output in this command (the terminal view then
#: goes to stderr, so the two never interleave).
STDOUT_OUTPUT: set[str] = set()


def is_stdout(path: str | os.PathLike[str] | None) -> bool:
    """Whether an output path means standard output (``-`` or /dev/stdout)."""
    return path is not None and str(path) in ("-", "/dev/stdout")


@contextmanager
def _stream(name: str, mode: str, encoding: str | None) -> Iterator[IO]:
    if name == "/dev/null":
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
        with open(os.devnull, mode, **kwargs) as handle:
            yield handle
        return
    stream = sys.stderr if name == "/dev/stderr" else sys.stdout
    stream.flush()
    yield stream.buffer if "b" in mode else stream
    stream.flush()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.
    A name of :data:`STREAMS` is written directly (``-``: standard output)."""
    if str(path) in STREAMS:
        with _stream(str(path), mode, encoding) as handle:
            yield handle
        return
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
    small = _load_small(path, mmap)
    if small is not None:
        return small
    path = Path(path)
    with _open_npy(path) as handle:
        shape, dtype, fortran, offset = _npy_layout(path, handle)
        order = "F" if fortran else "C"
        nbytes = math.prod(shape) * dtype.itemsize
        try:
            if mmap and nbytes >= _MMAP_MIN:
                return np.memmap(handle, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
            data = handle.read(nbytes)  # small: one read beats setting up a memory map
            if len(data) < nbytes:
                raise DumpFormatError(f"{path}: truncated .npy file (data ends after {len(data)} of {nbytes} bytes)")
            return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)
        except NPY_ERRORS as e:
            raise DumpFormatError(f"{path}: not a readable .npy array ({_reason(e)})") from e


def read_npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Parse a .npy header from an open binary stream: (shape, fortran order, dtype).

    numpy parses the header with ``ast.literal_eval``, which CPython 3.11 cannot run in two
    threads at once ("AST constructor recursion depth mismatch"); compares load tensors from
    several threads, so every header parse goes through one lock.
    """
    start = handle.tell()
    fast = _fast_header(handle)
    if fast is not None:
        return fast
    handle.seek(start)
    with _HEADER_LOCK:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(handle, max_header_size=100_000)
        if version in ((2, 0), (3, 0)):
            return np.lib.format.read_array_header_2_0(handle, max_header_size=100_000)
    raise ValueError(f"unsupported .npy version {version}")


_FAST_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[a-zA-Z][0-9]*)', 'fortran_order': (True|False), 'shape': \(((?:[0-9]+, )*[0-9]+,|(?:[0-9]+, )+[0-9]+|)\), \} *\n?$")


@functools.lru_cache(maxsize=256)
def _simple_dtype(descr: str) -> np.dtype:
    return np.dtype(descr)


def _fast_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """The header numpy itself writes (a plain dtype), parsed without ``ast``; None for anything else.

    numpy's parser compiles the header with ``literal_eval`` (~50 us, under a lock); a dump of
    100,000 tensors reads each header at least twice.
    """
    prefix = handle.read(10)
    if len(prefix) < 10 or prefix[:6] != b"\x93NUMPY" or prefix[6] != 1:
        return None
    length = prefix[8] | (prefix[9] << 8)
    raw = handle.read(length)
    if len(raw) != length or (10 + length) % 16:  # numpy pads headers to 16 (or 64) bytes
        return None
    match = _FAST_HEADER.match(raw.decode("latin-1"))
    if match is None or len(match[3]) > 200:
        return None
    try:
        dtype = _simple_dtype(match[1])
    except (TypeError, ValueError):
        return None
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        return None
    shape = tuple(int(d) for d in match[3].replace(" ", "").split(",") if d)
    return shape, match[2] == "True", dtype


def read_npy_stream(handle: IO[bytes], where: str, size: int | None = None) -> np.ndarray:
    """Read one .npy array from a stream (an npz member, a decoded buffer), never unpickling.

    Args:
        handle: Binary stream positioned at the .npy magic.
        where: File (and member) name for error messages.
        size: Total bytes available in the stream, when known (checked before reading).
    """
    shape, fortran, dtype = read_npy_header(handle)
    if size is not None:
        check_npy_shape(where, shape, dtype, handle.tell(), size)
    elif dtype.hasobject:
        raise DumpFormatError(f"{where}: holds Python objects (pickled); only numeric arrays are read")
    count = math.prod(int(d) for d in shape)
    nbytes = count * dtype.itemsize
    out = np.empty(count, dtype=dtype)
    view = memoryview(out.view(np.uint8).reshape(-1)) if nbytes else memoryview(b"")
    done = 0
    while done < nbytes:  # in steps into the result: a stream's read(n) may hold two copies of n bytes
        chunk = handle.read(min(_READ_STEP, nbytes - done))
        if not chunk:
            raise DumpFormatError(f"{where}: truncated .npy data ({done} of {nbytes} bytes)")
        view[done:done + len(chunk)] = chunk
        done += len(chunk)
    return out.reshape(shape, order="F" if fortran else "C")


def _reason(error: BaseException) -> str:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return "holds Python objects (pickled); only numeric arrays are read" if "pickle" in reason.lower() else reason


def prepare_output_dir(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Create ``path`` (or accept it when empty, or non-empty with ``force``)."""
    check_output_dir(path, "output directory", force=force)
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
    fd = _open_fd(path)
    try:
        fast = _fast_layout(fd, path)
    finally:
        os.close(fd)
    if fast is None:
        path = Path(path)
        with _open_npy(path) as handle:
            shape, dtype, _, _ = _npy_layout(path, handle)
        return shape, dtype
    return fast[0], fast[1]


def _open_fd(path: str | os.PathLike[str]) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as e:
        raise DumpFormatError(f"{path}: cannot open the .npy file ({getattr(e, 'strerror', None) or e})") from None


def _fast_layout(fd: int, path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype, bool, int, bytes] | None:
    """(shape, dtype, fortran, data offset, first bytes) of a regular .npy file with a header as
    numpy writes it, from one read; None for any other header (parsed the slow way)."""
    from netdiff._input_files import kind_of

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise DumpFormatError(f"{path}: .npy file is {kind_of(st.st_mode)} (expected a regular file)")
    head = os.pread(fd, 4096, 0)
    fast = _fast_header(io.BytesIO(head))
    if fast is None:
        return None
    shape, fortran, dtype = fast
    offset = 10 + (head[8] | (head[9] << 8))
    dims, dtype = check_npy_shape(path, shape, dtype, offset, st.st_size)
    return dims, dtype, fortran, offset, head


def _load_small(path: str | os.PathLike[str], mmap: bool) -> np.ndarray | None:
    """A small .npy array read with one open and at most two reads (None: use the general path)."""
    fd = _open_fd(path)
    try:
        fast = _fast_layout(fd, path)
        if fast is None:
            return None
        shape, dtype, fortran, offset, head = fast
        nbytes = math.prod(shape) * dtype.itemsize
        if mmap and nbytes >= _MMAP_MIN:
            return None
        data = head[offset:offset + nbytes] if offset + nbytes <= len(head) else os.pread(fd, nbytes, offset)
    finally:
        os.close(fd)
    if len(data) < nbytes:
        raise DumpFormatError(f"{path}: truncated .npy file (data ends after {len(data)} of {nbytes} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _open_npy(path: Path) -> IO[bytes]:
    from netdiff._input_files import open_regular

    return open_regular(path, ".npy file", DumpFormatError)


def _npy_layout(path: Path, handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran order, data offset) of an open .npy file, checked against its size."""
    try:
        shape, fortran, dtype = read_npy_header(handle)
        offset = handle.tell()
    except NPY_ERRORS as e:
        raise DumpFormatError(f"{path}: not a readable .npy file ({_reason(e)})") from e
    dims, dtype = check_npy_shape(path, shape, dtype, offset, os.fstat(handle.fileno()).st_size)
    return dims, dtype, bool(fortran), offset


def check_numeric_dtype(where: str | os.PathLike[str], dtype: np.dtype) -> None:
    """Refuse record, sub-array, string, date and complex dtypes: only bool, int, uint and float
    arrays can be compared (a complex cast to float would silently drop the imaginary part).

    Raises:
        DumpFormatError: Any other dtype.
    """
    if dtype.names is not None or dtype.subdtype is not None:
        raise DumpFormatError(f"{where}: structured (record) dtype {str(dtype)[:80]}; only plain numeric arrays "
                              "(bool, int, uint, float) are read")
    if dtype.kind not in "biuf":
        raise DumpFormatError(f"{where}: dtype {dtype.str} is not numeric (bool, int, uint or float expected)")


def check_npy_shape(where: str | os.PathLike[str], shape: tuple, dtype: np.dtype, offset: int,
                    size: int) -> tuple[tuple[int, ...], np.dtype]:
    """Validate a parsed .npy header against the bytes available (``size`` including the header).

    Raises:
        DumpFormatError: Object dtype, negative dims, or data shorter than the header says.
    """
    if dtype.hasobject:
        raise DumpFormatError(f"{where}: holds Python objects (pickled); only numeric arrays are read")
    check_numeric_dtype(where, dtype)
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise DumpFormatError(f"{where}: .npy header has a negative dimension in shape {list(dims)}")
    needed = offset + math.prod(dims) * dtype.itemsize
    if size < needed:
        raise DumpFormatError(f"{where}: truncated .npy file ({size} bytes, header says {needed})")
    return dims, dtype


_SPECIAL_ROOTS = ("/proc", "/sys", "/dev")
#: Output flags that take a file only (models, binary data): ``-`` and /dev/stdout are refused.
_NO_STREAM = ("--out",)


def check_output_files(paths: dict[str, str | os.PathLike[str] | None],
                       inputs: tuple[str | os.PathLike[str] | None, ...] = ()) -> None:
    """:func:`check_output_file` for each ``{flag: path}`` given, no two naming the same file, and
    none naming one of the ``inputs`` (inputs are never overwritten)."""
    for flag, path in paths.items():
        check_output_file(path, flag)
    check_distinct_outputs(paths)
    sources = {os.path.realpath(p) for p in inputs if p is not None and str(p)}
    folders = tuple(s + os.sep for s in sources if os.path.isdir(s))
    for flag, path in paths.items():
        if path is None or str(path) in STREAMS:
            continue
        real = os.path.realpath(path)
        if real in sources or (os.path.exists(real) and real.startswith(folders)):
            raise OutputError(f"{flag} {path}: is one of the input files (it would be overwritten)")


def check_output_file(path: str | os.PathLike[str] | None, flag: str = "output", force: bool | None = None) -> None:
    """Refuse an output file path before any work: an empty name, a directory, a special file,
    a place under /proc, /sys or /dev, a missing or unwritable directory; with ``force=False``
    also an existing file. Accepted as streams: /dev/null, and ``-`` (standard output), /dev/stdout,
    /dev/stderr except for ``--out``.

    Raises:
        OutputError: The path cannot receive an atomically written file.
    """
    if path is None:
        return
    if str(path) == "/dev/null":
        return
    if str(path) in STREAMS:
        if flag in _NO_STREAM:
            raise OutputError(f"{flag} {path}: writes a model or binary file, not to a stream (give a file name)")
        if is_stdout(path):
            STDOUT_OUTPUT.add(flag)
        return
    if not str(path) or str(path) in (".", "..") or str(path).endswith(os.sep):
        raise OutputError(f"{flag} {str(path)!r}: expected a file name")
    path = Path(path)
    _check_not_special(path, flag)
    if path.is_symlink() or path.exists():
        try:
            st = path.stat()
        except OSError as e:
            raise OutputError(f"{flag} {path}: cannot be written ({e.strerror or e})") from None
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{flag} {path}: is a directory (expected a file name)")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{flag} {path}: exists and is not a regular file")
        if force is False:
            raise OutputError(f"{flag} {path}: already exists (use --force to overwrite)")
    _check_writable_dir(path.parent if str(path.parent) else Path("."), flag, path)


def check_output_dir(path: str | os.PathLike[str] | None, flag: str = "--out", force: bool = False) -> None:
    """Refuse an output directory before any work (exists as a file, non-empty without ``force``,
    under /proc, /sys or /dev, or its nearest existing parent is not a writable directory)."""
    if path is None:
        return
    if not str(path):
        raise OutputError(f"{flag} {str(path)!r}: expected a directory name")
    path = Path(path)
    _check_not_special(path, flag)
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{flag} {path}: exists and is not a directory")
        try:
            non_empty = next(os.scandir(path), None) is not None
        except OSError as e:
            raise OutputError(f"{flag} {path}: cannot be listed ({e.strerror or e})") from None
        if non_empty and not force:
            raise OutputError(f"{flag} {path}: directory is not empty (use --force to write into it)")
        _check_writable_dir(path, flag, path)
        return
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    _check_writable_dir(parent, flag, path)


def check_distinct_outputs(paths: dict[str, str | os.PathLike[str] | None]) -> None:
    """Two output flags naming the same file would overwrite each other."""
    seen: dict[str, str] = {}
    for flag, path in paths.items():
        if path is None or str(path) == "/dev/null":
            continue
        key = "/dev/stdout" if is_stdout(path) else str(path) if str(path) in STREAMS else os.path.realpath(path)
        if key in seen:
            raise OutputError(f"{seen[key]} and {flag} name the same file {path}")
        seen[key] = flag


def _check_not_special(path: Path, flag: str) -> None:
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError) as e:
        raise OutputError(f"{flag} {path}: not a usable path ({e})") from None
    if "\x00" in str(path):
        raise OutputError(f"{flag} {str(path)!r}: a path cannot contain NUL")
    for root in _SPECIAL_ROOTS:
        if real == root or real.startswith(root + os.sep):
            raise OutputError(f"{flag} {path}: is under {root} (a kernel or device file system, not for outputs)")


def _check_writable_dir(directory: Path, flag: str, path: Path) -> None:
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise OutputError(f"{flag} {path}: directory {directory} {what}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: directory {directory} is not writable")
