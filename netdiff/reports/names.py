"""Names shortened for a table column without ambiguity.

A name is cut into units: its ``/`` path segments, and inside a segment longer than
:data:`SHORT_SEGMENT` characters its ``_``/``.`` tokens. Whole units are elided (a run of them reads
``…``), those most names of the column hold first; no unit is ever cut inside. An elision that would
also read as another name of the column is not made; a name that cannot fit so wraps onto more lines.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

from rich.cells import cell_len

#: A path segment this short is shown whole or elided whole, never split into tokens.
SHORT_SEGMENT = 12
ELLIPSIS = "…"


def units(name: str) -> list[tuple[str, str]]:
    """``name`` as (separator, text) units: ``/`` segments, long segments split on ``_`` and ``.``."""
    out: list[tuple[str, str]] = []
    for k, segment in enumerate(name.split("/")):
        sep = "/" if k else ""
        if len(segment) <= SHORT_SEGMENT:
            out.append((sep, segment))
            continue
        pieces = re.split(r"([_.])", segment)
        out.append((sep, pieces[0]))
        out.extend(zip(pieces[1::2], pieces[2::2]))
    return out


def unit_counts(names: Sequence[str]) -> Counter:
    """How many of ``names`` hold each unit text."""
    counts: Counter = Counter()
    for name in names:
        counts.update({text for _, text in units(name) if text})
    return counts


def shorten(name: str, width: int, counts: Mapping[str, int] | None = None,
            accept: Callable[[str], bool] | None = None) -> str | None:
    """``name`` in at most ``width`` cells by eliding whole units, the most common in ``counts`` first
    (ties: leftmost first); an elision ``accept`` refuses is undone. None when it cannot fit so."""
    if cell_len(name) <= width:
        return name
    parts = units(name)
    counts = counts or {}
    kept = [True] * len(parts)
    order = sorted((i for i, (_, text) in enumerate(parts) if text), key=lambda i: (-counts.get(parts[i][1], 1), i))
    for i in order:
        kept[i] = False
        if not any(k and text for k, (_, text) in zip(kept, parts)):
            return None
        shown = _join(parts, kept)
        if accept is not None and not accept(shown):
            kept[i] = True
        elif cell_len(shown) <= width:
            return shown
    return None


def _join(parts: list[tuple[str, str]], kept: list[bool]) -> str:
    out, i, n = [], 0, len(parts)
    while i < n:
        sep, text = parts[i]
        if kept[i]:
            out.append(sep + text)
            i += 1
            continue
        out.append(sep + ELLIPSIS)
        while i < n and (not kept[i] or (not parts[i][1] and i + 1 < n and not kept[i + 1])):
            i += 1
    return "".join(out)


def wrap(name: str, width: int, indent: str = "  ") -> list[str]:
    """``name`` whole, on lines of at most ``width`` cells broken before a separator, continuation
    lines after ``indent`` (broken inside a unit only when the unit alone is wider)."""
    indent = indent if width > 2 * len(indent) else ""
    lines = [""]
    for sep, text in units(name):
        piece = sep + text
        if lines[-1].strip() and cell_len(lines[-1] + piece) > width:
            lines.append(indent)
        lines[-1] += piece
        while cell_len(lines[-1]) > width:
            line = lines.pop()
            lines += [line[:width], indent + line[width:]]
    return lines


def shorten_column(names: Sequence[str], widths: Sequence[int]) -> list[list[str]]:
    """Every name of a column in its width, as lines. A shortened name never also reads as another
    name of the column (as a pattern, ``…`` standing for one or more units); else the name wraps."""
    counts = unit_counts(names)
    holders: dict[str, set[int]] = defaultdict(set)
    for i, name in enumerate(names):
        for token in re.split(r"[/_.]", name):
            holders[token].add(i)

    def unambiguous(i: int, shown: str) -> bool:
        pieces = [p for p in re.split(r"[/_.]|" + ELLIPSIS, shown) if p]
        candidates = set.intersection(*(holders.get(p, set()) for p in pieces)) if pieces else set(range(len(names)))
        pattern = re.compile(".+".join(re.escape(p) for p in shown.split(ELLIPSIS)), re.DOTALL)
        return not any(j != i and names[j] != names[i] and pattern.fullmatch(names[j]) for j in candidates)

    out = []
    for i, (name, width) in enumerate(zip(names, widths)):
        shown = shorten(name, width, counts, accept=lambda s, i=i: unambiguous(i, s))
        out.append([shown] if shown is not None else wrap(name, width))
    return out
