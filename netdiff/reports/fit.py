"""Tables that fit the terminal: low-value columns go first, then names are shortened, never broken.

After a prefix most names share has been moved to the table's title, names lose whole units (path
segments, or ``_``/``.`` tokens of a long segment), those most names hold first; names that would then
read alike keep what tells them apart or wrap onto a second line (see netdiff.reports.names).
Columns without a drop priority (status, the metrics a verdict rests on) are always shown whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from netdiff.reports.names import shorten, shorten_column

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
    plain: bool = False  # prose (a "… n not shown" row): cut at the end, not part of the names


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
        return "∞" if value > 0 else "−∞"  # as the gain column and the notebook view
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
    if name_col is not None and total(shown) > width:
        others = total([c for c in shown if c is not name_col]) + 2
        name_width = max(MIN_NAME_WIDTH, width - others)
        prefix = common_prefix([c.name for c in name_col.cells if isinstance(c, NameCell) and not c.plain])
    table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False, box=None,
                  title=_title(title, prefix), title_justify="left", title_style="")
    for col in shown:
        w = name_width if col is name_col and name_width is not None else widths([col])[id(col)]
        table.add_column(col.header, justify=col.justify, style=col.style, no_wrap=True, min_width=w,
                         max_width=w, overflow="ellipsis")
    names = _name_cells(name_col.cells, name_width, prefix) if name_col is not None else []
    rows = len(columns[0].cells) if columns else 0
    for i in range(rows):
        table.add_row(*[names[i] if c is name_col else c.cells[i] for c in shown])
    return table


def _name_cells(cells: list, width: int | None, prefix: str) -> list:
    """The name column rendered: prefix dropped, aliases cut to fit, names shortened column-wide."""
    index, names, rooms, aliases = [], [], [], {}
    for i, cell in enumerate(cells):
        if not isinstance(cell, NameCell) or cell.plain:
            continue
        name, alias = cell.name, cell.alias
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        room = 10**9
        if width is not None:
            room = width - cell_len(cell.mark)
            if alias and cell_len(name) + cell_len(ARROW + alias) > room:
                alias_room = min(cell_len(alias), room // 3)
                alias = (shorten(alias, alias_room) or "") if alias_room >= 8 else ""
            room -= cell_len(ARROW + alias) if alias else 0
        index.append(i)
        names.append(name)
        rooms.append(room)
        aliases[i] = alias
    lines = dict(zip(index, shorten_column(names, rooms)))
    out = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, NameCell):
            out.append(cell)
            continue
        if cell.plain:
            text = Text(_clip(cell.mark + cell.name, width), style=cell.style)
        else:
            pad = "\n" + " " * cell_len(cell.mark)
            text = Text(cell.mark + pad.join(lines[i]), style=cell.style)
            if aliases[i]:
                text.append(ARROW + aliases[i], style="dim")
        if cell.note:  # why a tensor is unreadable: wrapped, never cut (the reason is the point)
            text.append("\n" + _wrap(cell.note, width), style="dim")
        out.append(text)
    return out


def _wrap(text: str, width: int | None) -> str:
    if width is None or cell_len(text) <= width:
        return text
    import textwrap

    return "\n".join(textwrap.wrap(text, max(width, 8), break_on_hyphens=False)) or text


def _clip(text: str, width: int | None) -> str:
    if width is None or cell_len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


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
