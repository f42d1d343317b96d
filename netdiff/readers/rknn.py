"""Reader for RKNN-Toolkit2 ``rknn.accuracy_analysis()`` snapshot directories.

Layout (toolkit example ``examples/functions/accuracy_analysis``, user guide ch. 7)::

    snapshot/
      error_analysis.txt      [OpType] layer_name   entire cos | euc   single cos | euc ...
      map_name_to_file.txt    layer_name  file_name   (one layer per line, in analysis order)
      golden/npy/*.npy        float "golden" run of the original model
      simulator/npy/*.npy     quantized / fp16 simulator
      runtime/npy/*.npy       the connected board (only with accuracy_analysis(target=...))

The ``side`` option picks one of the three trees. Layer names come from ``map_name_to_file.txt``
(file stems otherwise; the toolkit escapes names into file names, and those align through
netdiff's normalised-name rule). Toolkit-internal tensors (``*_int8``/``*_uint8``/``*_int16``
quantize copies, ``*-rs*`` reshape inserts, ``exDataConvert`` ops) go to ``Dump.target_only``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from netdiff._io import load_npy, npy_header
from netdiff._input_files import read_capped
from netdiff.errors import DumpFormatError
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

SIDES = ("golden", "simulator", "runtime")
MAP_FILE = "map_name_to_file.txt"
ERROR_FILE = "error_analysis.txt"
_OP = re.compile(r"^\[(?P<op>[^\]]*)\]\s*(?P<rest>.*)$")
_NUMERIC_TAIL = re.compile(r"(?:\s+(?:[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)|\|))+\s*$", re.IGNORECASE)
_INTERNAL = re.compile(r"(?:_u?int(?:8|16)$)|(?:-rs(?:_\w+)?$)|exdataconvert", re.IGNORECASE)


@register_reader("rknn")
class RknnSnapshotReader(Reader):
    """An RKNN accuracy-analysis snapshot directory (or one of its golden/simulator/runtime folders)."""

    priority = 10
    options = {"side": "Which tree to read: golden, simulator (default) or runtime."}

    def sniff(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        if path.name in SIDES and _is_snapshot(path.parent):
            return True
        return _is_snapshot(path)

    def _read(self, path: Path, side: str | None = None, **options: Any) -> Dump:
        root = path
        if path.name in SIDES and _is_snapshot(path.parent) and not _is_snapshot(path):
            if side is not None and side != path.name:
                raise DumpFormatError(f"{path}: is the {path.name!r} folder but option side={side!r} was given")
            root, side = path.parent, path.name
        side = side or "simulator"
        present = [s for s in SIDES if (root / s).is_dir()]
        if side not in SIDES:
            raise DumpFormatError(f"{root}: side must be one of {', '.join(SIDES)}, not {side!r}")
        if side not in present:
            raise DumpFormatError(f"{root}: snapshot has no {side!r} folder (present: {', '.join(present) or 'none'})")
        folder = root / side
        ops, analysis_order = _read_error_analysis(root / ERROR_FILE)
        entries = _read_map(root / MAP_FILE) if (root / MAP_FILE).is_file() else _entries_from_files(folder)
        if not entries:
            raise DumpFormatError(f"{root}: no layers listed in {MAP_FILE} and no .npy files in {folder}")
        rank = {name: i for i, name in enumerate(analysis_order)}
        if not (root / MAP_FILE).is_file():
            entries.sort(key=lambda e: (rank.get(e[0], len(rank)), _natural(e[0])))
        tensors: dict[str, Tensor] = {}
        internal: list[str] = []
        missing: list[str] = []
        for name, file_name, op_type in entries:
            file = _resolve(folder, file_name)
            if file is None:
                missing.append(name)
                continue
            if name in tensors:
                raise DumpFormatError(f"{root / MAP_FILE}: layer {name!r} is listed twice")
            op = op_type or ops.get(name)
            try:
                shape, dtype = npy_header(file)
            except DumpFormatError as e:  # one broken file: an unreadable tensor, the rest of the dump is read
                tensors[name] = Tensor.unreadable(name, str(e), str(file))
                if _is_internal(name, op):
                    internal.append(name)
                continue
            tensors[name] = Tensor(name=name, shape=shape, dtype=dtype.name, op_type=op, order=len(tensors),
                                   source=str(file), loader=functools.partial(load_npy, file),
                                   meta={"file": file.relative_to(root).as_posix()})
            if _is_internal(name, op):
                internal.append(name)
        require_readable(tensors)
        meta: dict[str, Any] = {"rknn_side": side, "rknn_sides": present}
        if missing:
            meta["layers_without_file"] = len(missing)
        return Dump(tensors=tensors, source=str(root), format=self.name, meta=meta, target_only=internal)


def _is_snapshot(path: Path) -> bool:
    if not any((path / s).is_dir() for s in SIDES):
        return False
    return (path / MAP_FILE).is_file() or (path / ERROR_FILE).is_file()


def _is_internal(name: str, op_type: str | None) -> bool:
    return bool(_INTERNAL.search(name)) or (op_type or "").lower() == "exdataconvert"


def _split_op(text: str) -> tuple[str | None, str]:
    match = _OP.match(text)
    return (match["op"].strip() or None, match["rest"]) if match else (None, text)


def _read_lines(file: Path) -> list[str]:
    try:
        return read_capped(file, "RKNN text file", error=DumpFormatError).decode("utf-8", "replace").splitlines()
    except OSError as e:
        raise DumpFormatError(f"{file}: cannot read ({e.strerror})") from e


def _skip(line: str) -> bool:
    text = line.strip()
    return (not text or text.startswith("#") or text.lower().startswith("layer_name")
            or set(text) <= set("-=*| "))


def _read_map(file: Path) -> list[tuple[str, str, str | None]]:
    """``map_name_to_file.txt``: (layer name, file name, op type) per line; the last field is the file."""
    entries = []
    for line_no, line in enumerate(_read_lines(file), 1):
        if _skip(line):
            continue
        op, text = _split_op(line.strip())
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            raise DumpFormatError(f"{file}:{line_no}: expected 'layer_name file_name', got {line.strip()!r}")
        entries.append((parts[0].strip(), parts[1].strip(), op))
    return entries


def _read_error_analysis(file: Path) -> tuple[dict[str, str], list[str]]:
    """Op type per layer and the analysis order from ``error_analysis.txt`` (empty when absent)."""
    if not file.is_file():
        return {}, []
    ops: dict[str, str] = {}
    order: list[str] = []
    for line in _read_lines(file):
        if _skip(line) or not line.lstrip().startswith("["):
            continue
        op, rest = _split_op(line.strip())
        tail = _NUMERIC_TAIL.search(rest)
        name = (rest[:tail.start()] if tail else rest).strip()
        if name:
            order.append(name)
            if op:
                ops[name] = op
    return ops, order


def _entries_from_files(folder: Path) -> list[tuple[str, str, str | None]]:
    npy = folder / "npy" if (folder / "npy").is_dir() else folder
    return [(f.stem, f.name, None) for f in sorted(npy.glob("*.npy")) if f.is_file()]


def _resolve(folder: Path, file_name: str) -> Path | None:
    names = [file_name] if file_name.endswith(".npy") else [file_name + ".npy", file_name]
    for base in (folder / "npy", folder):
        for name in names:
            candidate = base / name
            if candidate.is_file() and candidate.suffix == ".npy" and base.resolve() in candidate.resolve().parents:
                return candidate
    return None


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
