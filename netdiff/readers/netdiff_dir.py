"""Reader for netdiff's own dump directory (manifest.json + .npy files)."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any

from netdiff._input_files import load_json, need_dict, need_int, need_int_list, need_str, need_str_list
from netdiff._io import load_npy, npy_header
from netdiff.errors import DumpFormatError
from netdiff.manifest import FORMAT, MANIFEST, VERSION
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor


#: Longest ``file`` field accepted (characters); real file names are far shorter.
MAX_FILE_FIELD = 4096


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
        meta = dict(manifest.get("meta")) if isinstance(manifest.get("meta"), dict) else {}
        if manifest.get("source"):  # the model the dump came from; the dump's own source is its directory
            meta.setdefault("dumped_from", manifest["source"])
        return Dump(tensors={t.name: t for t in ordered}, source=str(path),
                    format=self.name, graph_inputs=_names(manifest, "graph_inputs"),
                    graph_outputs=_names(manifest, "graph_outputs"), meta=meta,
                    target_only=[n for n in _names(manifest, "target_only") if n in tensors])


def _load_manifest(path: Path) -> dict[str, Any]:
    data = load_json(path, "manifest", DumpFormatError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DumpFormatError(f"{path}: not a netdiff manifest (expected \"format\": \"{FORMAT}\")")
    if data.get("version", VERSION) != VERSION:
        raise DumpFormatError(f"{path}: manifest version {str(data.get('version'))[:40]!r} is not supported "
                              f"(this netdiff reads version {VERSION})")
    if not isinstance(data.get("tensors"), list):
        raise DumpFormatError(f"{path}: \"tensors\" must be a list")
    for key in ("graph_inputs", "graph_outputs", "target_only"):
        if data.get(key) is not None:
            need_str_list(data[key], f"{path}: \"{key}\"", DumpFormatError)
    if data.get("meta") is not None:
        need_dict(data["meta"], f"{path}: \"meta\"", DumpFormatError)
    if data.get("source") is not None:
        need_str(data["source"], f"{path}: \"source\"", DumpFormatError)
    return data


def _names(manifest: dict[str, Any], key: str) -> list[str]:
    value = manifest.get(key) or []
    return [str(v) for v in value] if isinstance(value, list) else []


def _tensor(root: Path, entry: Any, index: int) -> Tensor:
    where = f"{root / MANIFEST}: tensor #{index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise DumpFormatError(f"{where}: needs string \"name\" and \"file\"")
    name = entry["name"]
    if isinstance(entry.get("error"), str) and "file" not in entry:
        return Tensor.unreadable(name, entry["error"], str(root))
    try:
        return _checked_tensor(root, entry, index, f"{where} ({name[:200]!r})")
    except _EntryError as e:  # one malformed entry is one unreadable tensor
        return Tensor.unreadable(name, str(e), str(root))


class _EntryError(DumpFormatError):
    """A manifest entry with a malformed field (the tensor becomes unreadable)."""


def _locate(root: Path, file_name: str) -> tuple[Path, bool, bool]:
    """(path, inside the dump directory, a regular file) for a manifest ``file`` field.

    A plain file name that is not a link is inside by construction (one ``lstat``); anything
    else (sub-directories, links, ``..``) is resolved.
    """
    if "/" not in file_name and os.sep not in file_name and file_name not in (".", ".."):
        path = os.path.join(root, file_name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return Path(path), True, False
        if not stat.S_ISLNK(st.st_mode):
            return Path(path), True, stat.S_ISREG(st.st_mode)
    file = (root / file_name).resolve()
    inside = root in file.parents
    return file, inside, inside and file.is_file()


def _checked_tensor(root: Path, entry: dict[str, Any], index: int, where: str) -> Tensor:
    name = entry["name"]
    file_name = need_str(entry.get("file"), f"{where}: \"file\"", _EntryError, max_len=MAX_FILE_FIELD)
    if "\x00" in file_name or not file_name:
        raise _EntryError(f"{where}: \"file\" must be a non-empty file name without NUL")
    declared = entry.get("shape")
    if declared is not None:
        declared = need_int_list(declared, f"{where}: \"shape\"", _EntryError, lo=0, hi=2**62)
    order = need_int(entry.get("order", index), f"{where}: \"order\"", _EntryError, optional=True)
    inputs = need_str_list(entry.get("inputs") or [], f"{where}: \"inputs\"", _EntryError)
    origin = need_str_list(entry.get("origin_names") or [], f"{where}: \"origin_names\"", _EntryError)
    layout = need_str(entry.get("layout"), f"{where}: \"layout\"", _EntryError, optional=True)
    op_type = need_str(entry.get("op_type"), f"{where}: \"op_type\"", _EntryError, optional=True)
    meta = need_dict(entry.get("meta") or {}, f"{where}: \"meta\"", _EntryError)
    try:
        file, inside, exists = _locate(root, file_name)
    except (OSError, ValueError) as e:
        raise _EntryError(f"{where}: file {file_name[:200]!r} cannot be opened ({e})") from None
    if not inside:
        raise DumpFormatError(f"{where}: file {file_name[:200]!r} is outside the dump directory")
    if not exists:
        return Tensor.unreadable(name, f"{where}: file {file_name[:200]!r} does not exist (or is not a regular "
                                       "file)", str(file))
    try:
        shape, dtype = npy_header(file)
    except DumpFormatError as e:
        return Tensor.unreadable(name, str(e), str(file))
    if declared is not None and list(declared) != list(shape):
        raise DumpFormatError(f"{where}: manifest shape {declared} differs from the file's {list(shape)}")
    return Tensor(
        name=name, shape=shape, dtype=dtype.name,
        loader=functools.partial(load_npy, file),
        layout=layout, op_type=op_type, order=order if order is not None else index,
        inputs=tuple(inputs), origin_names=tuple(origin), source=str(file), meta=meta,
    )
