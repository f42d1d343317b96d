"""Tables that fit the terminal: low-value columns go first, then names are shortened, never broken.

A name is shortened by whole path segments in the middle (``/backbone/…/conv1/Conv_output_0``) after
a prefix most names share has been moved to the table's title; segments most names hold go first,
the last segment always stays. Only a single segment wider than the column is cut inside (keeping
both ends). Every cell is one line; columns without a drop priority (status, the metrics a verdict
rests on) are always shown whole.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

#: Narrowest the name column gets before columns stop being dropped for it.
MIN_NAME_WIDTH = 24
#: Between a name and the other side's name it was aligned with.
ARROW = "  ← "
#: A common prefix shorter than this stays in the names.
MIN_PREFIX = 8


@dataclass
class NameCell:
    """A shortenable name: ``mark`` + name (+ a dim ``  ← alias``), and an optional dim second line."""

    name: str
    mark: str = ""
    style: str = ""
    alias: str = ""
    note: str = ""


@dataclass
class Column:
    """One column: header, cells and how it may give way to a narrow terminal.

    ``drop``: columns with a number are left out (lowest first) while names do not fit; None: always shown.
    """

    header: str
    cells: list = field(default_factory=list)
    justify: str = "left"
    style: str = ""
    drop: int | None = None
    names: bool = False


def shorten(name: str, width: int, counts: Mapping[str, int] | None = None) -> str:
    """``name`` in at most ``width`` cells: middle segments elided, the most common in the column first
    (``counts``: how many names of the column hold each segment; ties: leftmost first); the last
    segment always stays. Only when it alone is too wide is it cut inside, keeping both ends."""
    if cell_len(name) <= width:
        return name
    if width < 4:
        return name[len(name) - max(width, 0):]
    sep = "/" if "/" in name else "." if "." in name else ""
    lead = sep if sep and name.startswith(sep) else ""
    segments = name[len(lead):].split(sep) if sep else [name]
    keep = [True] * len(segments)
    counts = counts or {}
    for i in sorted(range(len(segments) - 1), key=lambda i: (-counts.get(segments[i], 1), i)):
        keep[i] = False
        shown = _join(lead, sep, segments, keep)
        if cell_len(shown) <= width:
            return shown
    last = segments[-1]
    front = (width - 1) // 3
    return last[:front] + "…" + last[len(last) - (width - 1 - front):]


def _join(lead: str, sep: str, segments: list[str], keep: list[bool]) -> str:
    out: list[str] = []
    for segment, kept in zip(segments, keep):
        if kept:
            out.append(segment)
        elif not out or out[-1] != "…":
            out.append("…")
    return lead + sep.join(out)


def segment_counts(names: Sequence[str]) -> Counter:
    """How many of ``names`` hold each ``/`` (or ``.``) segment."""
    counts: Counter = Counter()
    for name in names:
        sep = "/" if "/" in name else "." if "." in name else ""
        counts.update(set(name.split(sep)) if sep else {name})
    return counts


def common_prefix(names: Sequence[str]) -> str:
    """The longest prefix of whole ``/`` segments that at least half of the names (and 3 or more) share."""
    names = [n for n in names if n]
    best = ""
    for name in names:
        for cut in [i + 1 for i, ch in enumerate(name) if ch == "/"]:
            prefix = name[:cut]
            if len(prefix) <= len(best) or len(prefix) < MIN_PREFIX:
                continue
            holders = [n for n in names if n.startswith(prefix) and len(n) > len(prefix)]
            if len(holders) >= 3 and 2 * len(holders) >= len(names):
                best = prefix
    return best


def fixed_format(values: Sequence[float | None], digits: int, small: float | None = None) -> str:
    """One format for a whole column: ``"f"`` (``digits`` decimals) or ``"e"`` (exponent) when a value
    reaches 1e6 or, with ``small``, a non-zero value is below it. NaN and ±inf print as such in either."""
    finite = [abs(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and abs(v) < 1e300]
    if finite and max(finite) >= 1e6:
        return "e"
    if small is not None and any(0 < v < small for v in finite):
        return "e"
    return "f"


def number(value: float | None, digits: int, style: str = "f") -> str:
    """A number in its column's format (see :func:`fixed_format`)."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if math.isinf(value) or abs(value) >= 1e300:
        return "inf" if value > 0 else "-inf"
    return f"{value:.2e}" if style == "e" else f"{value:.{digits}f}"


def fit_table(columns: list[Column], width: int, title: str | None = None) -> Table:
    """A rich table of ``columns`` within ``width`` cells (see the module docstring)."""
    name_col = next((c for c in columns if c.names), None)
    shown = [c for c in columns if c.drop is None or any(_cell_width(x) for x in c.cells)]  # empty ones go first

    def widths(cols: list[Column]) -> dict[int, int]:
        return {id(c): max([cell_len(c.header)] + [_cell_width(x) for x in c.cells]) for c in cols}

    def total(cols: list[Column]) -> int:
        w = widths(cols)
        return sum(w.values()) + 2 * (len(cols) - 1)

    for col in sorted((c for c in shown if c.drop is not None), key=lambda c: c.drop):
        if total(shown) <= width:
            break
        shown.remove(col)
    prefix = ""
    name_width = None
    counts: Counter = Counter()
    if name_col is not None and total(shown) > width:
        others = total([c for c in shown if c is not name_col]) + 2
        name_width = max(MIN_NAME_WIDTH, width - others)
        prefix = common_prefix([c.name for c in name_col.cells if isinstance(c, NameCell)])
        counts = segment_counts([c.name[len(prefix):] if prefix and c.name.startswith(prefix) else c.name
                                 for c in name_col.cells if isinstance(c, NameCell)])
    table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False, box=None,
                  title=_title(title, prefix), title_justify="left", title_style="")
    for col in shown:
        w = name_width if col is name_col and name_width is not None else widths([col])[id(col)]
        table.add_column(col.header, justify=col.justify, style=col.style, no_wrap=True, min_width=w,
                         max_width=w, overflow="ellipsis")
    rows = len(columns[0].cells) if columns else 0
    for i in range(rows):
        table.add_row(*[_render(c.cells[i], name_width, prefix, counts) if c is name_col else c.cells[i] for c in shown])
    return table


def _title(title: str | None, prefix: str) -> str | None:
    if not prefix:
        return title
    note = f"(names shown without their common prefix {prefix})"
    return f"{title}\n{note}" if title else note


def _cell_width(cell) -> int:
    if isinstance(cell, NameCell):
        width = cell_len(cell.mark + cell.name) + (cell_len(ARROW + cell.alias) if cell.alias else 0)
        return max(width, cell_len(cell.note)) if cell.note else width
    if isinstance(cell, Text):
        return max((cell_len(line) for line in cell.plain.splitlines()), default=0)
    return cell_len(str(cell))


def _render(cell, width: int | None, prefix: str, counts: Mapping[str, int]) -> Text | str:
    if not isinstance(cell, NameCell):
        return cell
    name, alias = cell.name, cell.alias
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    if width is not None:
        room = width - cell_len(cell.mark)
        if alias and cell_len(name) + cell_len(ARROW + alias) > room:
            alias_room = min(cell_len(alias), room // 3)
            alias = shorten(alias, alias_room) if alias_room >= 8 else ""
        name = shorten(name, room - (cell_len(ARROW + alias) if alias else 0), counts)
    text = Text(cell.mark + name, style=cell.style)
    if alias:
        text.append(ARROW + alias, style="dim")
    if cell.note:
        note = cell.note if width is None else shorten(cell.note, width)
        text.append("\n" + note, style="dim")
    return text
