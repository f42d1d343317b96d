"""Reader for netdiff's own dump directory (manifest.json + .npy files)."""

from __future__ import annotations

import functools
import math
import json
from pathlib import Path
from typing import Any

from netdiff._io import load_npy, npy_header
from netdiff.errors import DumpFormatError
from netdiff.manifest import FORMAT, MANIFEST, VERSION
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor


@register_reader("netdiff")
class NetdiffDirReader(Reader):
    """A directory with a netdiff ``manifest.json``."""

    priority = 20

    def sniff(self, path: Path) -> bool:
        return path.is_dir() and (path / MANIFEST).is_file()

    def _read(self, path: Path, **options: Any) -> Dump:
        manifest = _load_manifest(path / MANIFEST)
        tensors: dict[str, Tensor] = {}
        root = path.resolve()
        for i, entry in enumerate(manifest["tensors"]):
            tensor = _tensor(root, entry, i)
            if tensor.name in tensors:
                raise DumpFormatError(f"{path / MANIFEST}: tensor {tensor.name!r} is listed twice")
            tensors[tensor.name] = tensor
        require_readable(tensors)
        ordered = sorted(tensors.values(), key=lambda t: (t.order is None, t.order if t.order is not None else 0))
        meta = manifest.get("meta") if isinstance(manifest.get("meta"), dict) else {}
        return Dump(tensors={t.name: t for t in ordered}, source=str(manifest.get("source") or path),
                    format=self.name, graph_inputs=_names(manifest, "graph_inputs"),
                    graph_outputs=_names(manifest, "graph_outputs"), meta=meta,
                    target_only=[n for n in _names(manifest, "target_only") if n in tensors])


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DumpFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DumpFormatError(f"{path}: not a netdiff manifest (expected \"format\": \"{FORMAT}\")")
    if data.get("version", VERSION) != VERSION:
        raise DumpFormatError(f"{path}: manifest version {data.get('version')!r} is not supported "
                              f"(this netdiff reads version {VERSION})")
    if not isinstance(data.get("tensors"), list):
        raise DumpFormatError(f"{path}: \"tensors\" must be a list")
    return data


def _names(manifest: dict[str, Any], key: str) -> list[str]:
    value = manifest.get(key) or []
    return [str(v) for v in value] if isinstance(value, list) else []


def _tensor(root: Path, entry: Any, index: int) -> Tensor:
    where = f"{root / MANIFEST}: tensor #{index}"
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("error"), str) \
            and "file" not in entry:
        return Tensor.unreadable(entry["name"], entry["error"], str(root))
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("file"), str):
        raise DumpFormatError(f"{where}: needs string \"name\" and \"file\"")
    file = (root / entry["file"]).resolve()
    if root not in file.parents:
        raise DumpFormatError(f"{where}: file {entry['file']!r} is outside the dump directory")
    if not file.is_file():
        return Tensor.unreadable(entry["name"], f"{where}: file {entry['file']!r} does not exist", str(file))
    try:
        shape, dtype = npy_header(file)
    except DumpFormatError as e:
        return Tensor.unreadable(entry["name"], str(e), str(file))
    declared = entry.get("shape")
    if isinstance(declared, list) and [_int(d) for d in declared] != list(shape):
        raise DumpFormatError(f"{where} ({entry['name']!r}): manifest shape {declared} differs from the file's {list(shape)}")
    order = entry.get("order", index)
    inputs = entry.get("inputs") or []
    origin = entry.get("origin_names") or []
    return Tensor(
        name=entry["name"], shape=shape, dtype=dtype.name,
        loader=functools.partial(load_npy, file),
        layout=_opt_str(entry.get("layout")), op_type=_opt_str(entry.get("op_type")),
        order=order if isinstance(order, int) else index,
        inputs=tuple(str(x) for x in inputs) if isinstance(inputs, list) else (),
        origin_names=tuple(str(x) for x in origin) if isinstance(origin, list) else (),
        source=str(file),
        meta=entry["meta"] if isinstance(entry.get("meta"), dict) else {},
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
