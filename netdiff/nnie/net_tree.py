"""Map NNIE simulator/board layer ids (``seg<S>_layer<N>``) to layer names.

Sources, in order of reliability:

* a JSON file ``{"<N>" or "seg<S>_layer<N>": "name" | {"name": ..., "shape": [...]}}``;
* a text file of ``<N> <name>`` or ``seg<S>_layer<N> <name>`` lines;
* the mapper's ``cnn_net_tree.dot``. Its label format is not publicly documented, so this parser
  is heuristic: for each node statement ``id [label="..."]`` it takes the layer id from a
  ``layer_id``/``id``/``layer`` field of the label (else the digits of the node id) and the name
  from a ``name`` field (else the label's first token); ``seg``/``segment`` fields give the segment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from netdiff._input_files import parse_json, read_capped
from netdiff.errors import DumpFormatError

Key = tuple[int | None, int]
_NODE = re.compile(r'^\s*"?([A-Za-z0-9_.:-]+)"?\s*\[(.*)\]\s*;?\s*$')
_LABEL = re.compile(r'label\s*=\s*"((?:[^"\\]|\\.)*)"|label\s*=\s*([^\s,\]]+)')
_ID = re.compile(r"(?:layer_?id|layer|id)\s*[:=]\s*(\d+)", re.I)
_SEG = re.compile(r"seg(?:ment)?(?:_?id)?\s*[:=]\s*(\d+)", re.I)
_NAME = re.compile(r"name\s*[:=]\s*([^\s|,{}\\\"]+)", re.I)
_SEG_LAYER = re.compile(r"^seg(\d+)_layer(\d+)$")


def read_net_tree(path: str | Path) -> dict[Key, dict[str, Any]]:
    """Return ``{(segment or None, layer id): {"name": ..., "shape": (...)?}}``.

    Raises:
        DumpFormatError: The file is unreadable or yields no mapping.
    """
    path = Path(path)
    try:
        text = read_capped(path, "layer map", 64 * 2**20, DumpFormatError).decode("utf-8", "replace")
    except OSError as e:
        raise DumpFormatError(f"{path}: cannot read layer map ({e.strerror})") from e
    if path.suffix.lower() == ".json":
        mapping = _from_json(text, path)
    elif path.suffix.lower() in (".dot", ".gv"):
        mapping = _from_dot(text)
    else:
        mapping = _from_text(text, path)
    if not mapping:
        raise DumpFormatError(f"{path}: no layer id -> name entries found (expected .json, '<id> <name>' lines or a .dot)")
    return mapping


def lookup(mapping: dict[Key, dict[str, Any]], segment: int, layer: int) -> dict[str, Any] | None:
    """Entry for (segment, layer), falling back to a segment-less entry."""
    return mapping.get((segment, layer)) or mapping.get((None, layer))


def _key(text: str, path: Path) -> Key:
    m = _SEG_LAYER.match(text.strip())
    if m:
        return int(m[1]), int(m[2])
    try:
        return None, int(text)
    except ValueError:
        raise DumpFormatError(f"{path}: layer key {text!r} is neither '<id>' nor 'seg<S>_layer<N>'") from None


def _from_json(text: str, path: Path) -> dict[Key, dict[str, Any]]:
    data = parse_json(text, str(path), DumpFormatError, what="layer map")
    if not isinstance(data, dict):
        raise DumpFormatError(f"{path}: expected a JSON object mapping layer ids to names")
    out: dict[Key, dict[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, str):
            entry: dict[str, Any] = {"name": value}
        elif isinstance(value, dict) and isinstance(value.get("name"), str):
            entry = {"name": value["name"]}
            if isinstance(value.get("shape"), list) and all(isinstance(d, int) and d > 0 for d in value["shape"]):
                entry["shape"] = tuple(value["shape"])
        else:
            raise DumpFormatError(f"{path}: entry {key!r} must be a name or {{\"name\": ..., \"shape\": [...]}}")
        out[_key(str(key), path)] = entry
    return out


def _from_text(text: str, path: Path) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DumpFormatError(f"{path}:{lineno}: expected '<id> <name>', got {line[:60]!r}")
        out[_key(parts[0], path)] = {"name": parts[1]}
    return out


def _from_dot(text: str) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for statement in re.split(r";\s*\n|\n", text):
        m = _NODE.match(statement)
        if not m or "->" in statement:
            continue
        node_id, attrs = m[1], m[2]
        lm = _LABEL.search(attrs)
        label = (lm[1] if lm and lm[1] is not None else lm[2] if lm else "") or ""
        label = label.replace("\\n", "\n").replace("\\l", "\n")
        idm = _ID.search(label)
        digits = re.search(r"(\d+)$", node_id)
        if idm:
            layer = int(idm[1])
        elif digits:
            layer = int(digits[1])
        else:
            continue
        nm = _NAME.search(label)
        name = nm[1] if nm else next((t for t in re.split(r"[\s|{}\n]+", label) if t), "")
        if not name or name.lower() in ("node", "graph", "edge"):
            continue
        sm = _SEG.search(label)
        out[(int(sm[1]) if sm else None, layer)] = {"name": name}
    return out
