"""Ascend dump file names, the dump directory tree and ``mapping.csv``.

File names (offline model dumps, CANN "Data Format Requirements")::

    {op_type}.{op_name}.{task_id}.{stream_id}.{timestamp}
    {op_type}.{op_name}.({stream_id}.){task_id}.{timestamp}.{task_type}.{context_id}.{thread_id}.{device_id}

where op_type/op_name have ``.``, ``/``, ``\\`` and spaces replaced by ``_`` and the timestamp is
16 digits (microseconds). The op name is accepted with any other characters (the documented
set is ``[A-Za-z0-9_-]``, but fused names may carry more). A name that would reach 255
characters is stored under a numeric name and ``mapping.csv`` (``numeric_name,original_name`` per line) in the same directory gives the real one.
Model dumps live in ``{dump_path}/{time}/{device_id}/{model_name}/{model_id}/{data_index}/``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from netdiff.errors import DumpFormatError

_NAME = re.compile(r"^(?P<type>[A-Za-z0-9_-]+)\.(?P<op>[^./\\ ]+)\.(?P<nums>[0-9]+(?:\.[0-9]+){1,6})$")
_ESCAPE = re.compile(r"[./\\ ]")
#: Files never read as dumps (overflow status blocks, stats CSVs, toolkit outputs).
_SKIP_TYPES = {"Opdebug"}
MAX_SCAN = 200_000


def escape_name(name: str) -> str:
    """The file-name form of an op name: ``.``, ``/``, ``\\`` and spaces become ``_``."""
    return _ESCAPE.sub("_", name)


@dataclass(frozen=True)
class DumpName:
    """What a dump file's name and location say.

    Attributes:
        path: The file.
        op_type: Op type from the name.
        op_name: Escaped op name from the name.
        timestamp: Microsecond timestamp (the longest number in the name).
        numbers: Every number of the name, in order.
        model: Model directory name, when the file sits in the model dump layout.
        model_id: Model id directory, when known.
        data_index: Data (iteration) index directory, when known.
    """

    path: Path
    op_type: str
    op_name: str
    timestamp: int
    numbers: tuple[int, ...]
    model: str | None = None
    model_id: str | None = None
    data_index: int | None = None


def parse_name(file_name: str) -> tuple[str, str, int, tuple[int, ...]] | None:
    """Split a dump file name into (op_type, escaped op_name, timestamp, numbers), or None."""
    m = _NAME.match(file_name)
    if not m or m["type"] in _SKIP_TYPES:
        return None
    raw = m["nums"].split(".")
    numbers = tuple(int(x) for x in raw)
    longest = max(range(len(raw)), key=lambda i: (len(raw[i]), i))
    return m["type"], m["op"], numbers[longest], numbers


def _mapping(directory: Path, cache: dict[Path, dict[str, str]]) -> dict[str, str]:
    if directory not in cache:
        table: dict[str, str] = {}
        file = directory / "mapping.csv"
        if file.is_file():
            try:
                with open(file, newline="", encoding="utf-8", errors="replace") as handle:
                    for row in csv.reader(handle):
                        if len(row) >= 2 and row[0].strip():
                            table[row[0].strip()] = row[1].strip()
            except OSError as e:
                raise DumpFormatError(f"{file}: cannot read ({e.strerror})") from e
        cache[directory] = table
    return cache[directory]


def describe(path: Path, root: Path, cache: dict[Path, dict[str, str]] | None = None) -> DumpName | None:
    """Return what ``path``'s name (or its ``mapping.csv`` entry) says, or None when it is no dump."""
    cache = {} if cache is None else cache
    name = path.name
    if name.isdigit():
        name = _mapping(path.parent, cache).get(name, "")
        name = Path(name).name if name else ""
    parsed = parse_name(name) if name else None
    if parsed is None:
        return None
    model = model_id = None
    data_index = None
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        parts = ()
    # {time}/{device}/{model}/{model_id}/{index}: the last five directories, when they look like it.
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit() and len(parts[-2]) < 14:
        model, model_id, data_index = parts[-3], parts[-2], int(parts[-1])
    return DumpName(path, parsed[0], parsed[1], parsed[2], parsed[3], model, model_id, data_index)


def scan(root: Path) -> list[DumpName]:
    """Every dump file under ``root`` (a file or a directory, searched recursively), sorted by path."""
    if root.is_file():
        found = describe(root, root.parent)
        return [found] if found else []
    result = []
    cache: dict[Path, dict[str, str]] = {}
    for count, path in enumerate(sorted(root.rglob("*"))):
        if count > MAX_SCAN:
            raise DumpFormatError(f"{root}: more than {MAX_SCAN} entries; point at one dump directory "
                                  "({time}/{device}/{model}/{model_id}/{index})")
        if path.is_file():
            found = describe(path, root, cache)
            if found:
                result.append(found)
    return result


def first_dump_file(root: Path, limit: int = 2000) -> Path | None:
    """The first file under ``root`` whose name looks like a dump (cheap, for sniffing)."""
    if root.is_file():
        return root if describe(root, root.parent) else None
    cache: dict[Path, dict[str, str]] = {}
    for count, path in enumerate(root.rglob("*")):
        if count >= limit:
            return None
        if path.is_file() and describe(path, root, cache):
            return path
    return None
