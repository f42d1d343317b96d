"""Reading untrusted input files: regular files only, size caps, bounded JSON, typed field checks.

Every side file netdiff reads (manifests, mapping files, om JSON fusion maps, saved reports, ...)
goes through :func:`load_json`; every binary input is opened with :func:`open_regular`. A FIFO,
a device (``/dev/zero``) or a socket is refused before it is read, so nothing hangs or reads
forever. The field checkers (:func:`need_str`, :func:`need_int`, ...) raise one line naming the
file, the field and what was expected.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import IO, Any

from netdiff.errors import InputError

#: Largest JSON side file read (bytes); override with NETDIFF_MAX_SIDE_FILE.
MAX_SIDE_FILE = 512 * 2**20
#: Deepest nesting accepted in a JSON side file.
MAX_JSON_DEPTH = 100
#: Longest integer literal accepted in JSON (digits): dims, ids and counts fit in 19.
MAX_INT_DIGITS = 30

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def side_file_limit() -> int:
    """The size cap of JSON side files (NETDIFF_MAX_SIDE_FILE bytes, default 512 MiB)."""
    value = os.environ.get("NETDIFF_MAX_SIDE_FILE", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_SIDE_FILE


def kind_of(mode: int) -> str:
    """What a stat mode is, in words ("a FIFO (named pipe)", ...)."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def _stat(path: str | os.PathLike[str], what: str, error: type[Exception], missing: str | None = None
          ) -> os.stat_result:
    """``os.stat`` (following links) with one-line errors naming ``what``."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise error(missing or f"{path}: cannot read the {what} (not found)") from None
    except (OSError, ValueError) as e:
        raise error(f"{path}: cannot open the {what} ({_why(e)})") from None


def check_regular(path: str | os.PathLike[str], what: str = "file",
                  error: type[Exception] = InputError) -> os.stat_result:
    """Stat ``path`` (following links) and require a regular file.

    Raises:
        error: Missing, or a directory, FIFO, device or socket.
    """
    st = _stat(path, what, error)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {what} is {kind_of(st.st_mode)} (expected a regular file)")
    return st


def check_directory(path: str | os.PathLike[str], what: str = "directory",
                    error: type[Exception] = InputError) -> None:
    """Require ``path`` to be a directory."""
    st = _stat(path, what, error)
    if not stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: {what} is {kind_of(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'} "
                    "(expected a directory)")


def check_file_or_directory(path: str | os.PathLike[str], what: str = "input",
                            error: type[Exception] = InputError) -> None:
    """Require ``path`` to be a regular file or a directory (never a FIFO or a device)."""
    st = _stat(path, what, error, missing=f"{path}: no such file or directory")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise error(f"{path}: {what} is {kind_of(st.st_mode)} (expected a regular file or a directory)")


def open_regular(path: str | os.PathLike[str], what: str = "file",
                 error: type[Exception] = InputError) -> IO[bytes]:
    """Open a regular file for binary reading; a FIFO or device is refused without blocking.

    The file is opened non-blocking and checked on its descriptor, so a FIFO swapped in after a
    check cannot hang the open either.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: cannot read the {what} (not found)") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a directory (expected a regular file)") from None
    except (OSError, ValueError) as e:
        raise error(f"{path}: cannot open the {what} ({_why(e)})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {what} is {kind_of(mode)} (expected a regular file)")
    return os.fdopen(fd, "rb")


def read_capped(path: str | os.PathLike[str], what: str = "file", limit: int | None = None,
                error: type[Exception] = InputError) -> bytes:
    """All bytes of a regular file no larger than ``limit`` (default :func:`side_file_limit`)."""
    limit = side_file_limit() if limit is None else limit
    with open_regular(path, what, error) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise error(f"{path}: {what} is {size:,} bytes (the limit is {limit:,}; "
                        "set NETDIFF_MAX_SIDE_FILE to raise it)")
        try:
            data = handle.read(size + 1)  # sized by the file: read(limit) would allocate the whole limit
            while len(data) <= limit:  # a file still growing: read on in small steps up to the limit
                more = handle.read(2**20)
                if not more:
                    break
                data += more
        except OSError as e:
            raise error(f"{path}: cannot read the {what} ({_why(e)})") from None
    if len(data) > limit:
        raise error(f"{path}: {what} grew beyond {limit:,} bytes while being read")
    return data


class _Limit(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Limit(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} accepted)")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Limit(f"the number {text[:40]} is out of range")
    return value


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (iterative; stops counting past ``limit``)."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_json(text: str | bytes, where: str, error: type[Exception] = InputError,
               max_depth: int = MAX_JSON_DEPTH, constants: bool = False, what: str = "JSON document") -> Any:
    """Parse JSON with limits: nesting depth, integer digits, finite numbers.

    Args:
        constants: Accept ``NaN`` / ``Infinity`` literals (off: they are refused).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{where}: not UTF-8 text (byte {e.start})") from None
    text = text.lstrip("\ufeff")

    def constant(name: str) -> float:
        if not constants:
            raise _Limit(f"{name} is not a JSON number")
        return float(name)

    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float if not constants else float,
                          parse_constant=constant)
    except _Limit as e:
        raise error(f"{where}: {e}") from None
    except RecursionError:  # the C decoder stops at the interpreter's recursion limit
        raise error(f"{where}: JSON nested too deeply (at most {max_depth} levels accepted)") from None
    except ValueError as e:  # JSONDecodeError
        raise error(f"{where}: not valid JSON ({str(e).splitlines()[0][:200]}); expected a {what}") from None
    if json_depth(data, max_depth) > max_depth:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels")
    return data


def load_json(path: str | os.PathLike[str], what: str = "JSON file", error: type[Exception] = InputError,
              limit: int | None = None, max_depth: int = MAX_JSON_DEPTH, constants: bool = False) -> Any:
    """Read and parse a JSON side file: a regular file under the size cap, parsed with limits."""
    return parse_json(read_capped(path, what, limit, error), str(path), error, max_depth, constants, what)


# ---------------------------------------------------------------------------- field checks


def need_dict(value: Any, where: str, error: type[Exception] = InputError) -> dict[str, Any]:
    """``value`` must be a JSON object."""
    if not isinstance(value, dict):
        raise error(f"{where}: expected an object, got {_kind(value)}")
    return value


def need_list(value: Any, where: str, error: type[Exception] = InputError) -> list[Any]:
    """``value`` must be a JSON array."""
    if not isinstance(value, list):
        raise error(f"{where}: expected a list, got {_kind(value)}")
    return value


def need_str(value: Any, where: str, error: type[Exception] = InputError, optional: bool = False,
             max_len: int | None = None) -> str | None:
    """``value`` must be a string (or null when ``optional``), without NUL, at most ``max_len`` long."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise error(f"{where}: expected a string, got {_kind(value)}")
    if max_len is not None and len(value) > max_len:
        raise error(f"{where}: a string of {len(value):,} characters (at most {max_len:,} accepted)")
    return value


def need_int(value: Any, where: str, error: type[Exception] = InputError, optional: bool = False,
             lo: int | None = None, hi: int | None = None) -> int | None:
    """``value`` must be an integer (a float with an integral value is accepted) in [lo, hi]."""
    if value is None and optional:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}: expected an integer, got {_kind(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
        raise error(f"{where}: {value} is out of range (expected {bounds})")
    return value


def need_number(value: Any, where: str, error: type[Exception] = InputError, optional: bool = False,
                finite: bool = False) -> float | None:
    """``value`` must be a number (int or float; not a bool)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number, got {_kind(value)}")
    if finite and not math.isfinite(float(value)):
        raise error(f"{where}: expected a finite number, got {value}")
    return float(value)


def need_str_list(value: Any, where: str, error: type[Exception] = InputError) -> list[str]:
    """``value`` must be a list of strings."""
    for i, item in enumerate(need_list(value, where, error)):
        need_str(item, f"{where}[{i}]", error)
    return value


def need_int_list(value: Any, where: str, error: type[Exception] = InputError, lo: int | None = None,
                  hi: int | None = None) -> list[int]:
    """``value`` must be a list of integers in [lo, hi]."""
    return [need_int(item, f"{where}[{i}]", error, lo=lo, hi=hi)
            for i, item in enumerate(need_list(value, where, error))]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {str(value)[:40]}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" if len(value) <= 40 else f"a string ({len(value):,} characters)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _why(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:200] or type(error).__name__
