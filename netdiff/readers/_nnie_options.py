"""Option parsing shared by the NNIE readers (CLI options arrive as strings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netdiff.errors import DumpFormatError

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


def as_bool(value: Any, option: str, where: Path) -> bool:
    """Accept bools and their usual string spellings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DumpFormatError(f"{where}: option {option} must be true or false, got {value!r}")


def as_int(value: Any, option: str, where: Path, low: int = 1) -> int:
    """Accept ints and integer strings >= ``low``."""
    try:
        number = int(str(value).strip(), 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise DumpFormatError(f"{where}: option {option} must be an integer, got {value!r}") from None
    if number < low:
        raise DumpFormatError(f"{where}: option {option} must be >= {low}, got {number}")
    return number


def as_shape(value: Any, option: str, where: Path) -> tuple[int, ...]:
    """Accept "C,H,W" / "N,C,H,W" strings (``x`` and spaces also separate) or int sequences."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
    else:
        try:
            parts = list(value)
        except TypeError:
            parts = [value]
    try:
        dims = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise DumpFormatError(f"{where}: option {option} must look like C,H,W, got {value!r}") from None
    if not 1 <= len(dims) <= 4 or any(d <= 0 for d in dims):
        raise DumpFormatError(f"{where}: option {option} must be 1 to 4 positive sizes like C,H,W, got {value!r}")
    return dims


def cfg_header(value: Any) -> dict[str, Any]:
    """Read a mapper cfg given as a reader option and return its report header."""
    from netdiff.nnie.cfg import read_cfg

    return read_cfg(value).header()
