"""netdiff's own dump directory: ``manifest.json`` plus one ``.npy`` file per tensor.

The manifest is a stable format other tools may write (docs/dump-format.md)::

    {"format": "netdiff-dump", "version": 1,
     "tensors": [{"name": ..., "file": ..., "shape": [...], "dtype": ..., "order": 0,
                  "op_type": ..., "layout": ..., "inputs": [...]}],
     "graph_inputs": [...], "graph_outputs": [...], "target_only": [...], "source": ..., "meta": {...}}

Only ``name`` and ``file`` are required per tensor; ``order`` gives the topological order. A
tensor that could not be read from its source is listed as ``{"name": ..., "error": reason}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from netdiff._io import prepare_output_dir, safe_file_stem, save_npy_atomic, write_text_atomic
from netdiff.errors import NetdiffError
from netdiff.types import Dump, Tensor

MANIFEST = "manifest.json"
FORMAT = "netdiff-dump"
VERSION = 1


def tensor_entry(tensor: Tensor, file: str) -> dict[str, Any]:
    """Manifest entry of one tensor."""
    entry: dict[str, Any] = {"name": tensor.name, "file": file, "shape": list(tensor.shape), "dtype": tensor.dtype}
    for key in ("order", "op_type", "layout"):
        value = getattr(tensor, key)
        if value is not None:
            entry[key] = value
    if tensor.inputs:
        entry["inputs"] = list(tensor.inputs)
    if tensor.origin_names:
        entry["origin_names"] = list(tensor.origin_names)
    meta = _plain(dict(tensor.meta)) if tensor.meta else {}
    if meta:
        entry["meta"] = meta
    return entry


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a meta dict (scalars, strings, lists and dicts of them)."""
    out = {}
    for key, value in meta.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out


def write_dump(dump: Dump | Iterable[Tensor], out_dir: str | os.PathLike[str], force: bool = False,
               source: str = "", graph_inputs: Iterable[str] = (), graph_outputs: Iterable[str] = (),
               meta: dict[str, Any] | None = None,
               on_tensor: Callable[[Tensor], None] | None = None) -> Path:
    """Write tensors as a netdiff dump directory, one tensor at a time (streams).

    Args:
        dump: A Dump, or any iterable of tensors (e.g. a runner's generator).
        out_dir: Output directory; must be empty or absent unless ``force``.
        force: Allow writing into a non-empty directory.
        source, graph_inputs, graph_outputs, meta: Recorded in the manifest
            (taken from ``dump`` when it is a Dump).
        on_tensor: Called after each tensor is written (progress).

    Returns:
        The output directory.
    """
    out = prepare_output_dir(out_dir, force=force)
    if isinstance(dump, Dump):
        source = source or dump.source
        graph_inputs = graph_inputs or dump.graph_inputs
        graph_outputs = graph_outputs or dump.graph_outputs
        meta = meta if meta is not None else dump.meta
        target_only = list(dump.target_only)
    else:
        target_only = []
    taken: set[str] = {"manifest"}
    entries = []
    for tensor in dump:
        try:
            value = tensor.load()
        except NetdiffError as e:  # an unreadable source tensor stays listed, with its reason
            entries.append({"name": tensor.name, "error": str(e)})
            continue
        file = safe_file_stem(tensor.name, taken) + ".npy"
        save_npy_atomic(out / file, value)
        entries.append(tensor_entry(tensor, file))
        if on_tensor is not None:
            on_tensor(tensor)
    manifest = {"format": FORMAT, "version": VERSION, "source": source, "tensors": entries,
                "graph_inputs": list(graph_inputs), "graph_outputs": list(graph_outputs),
                "target_only": target_only, "meta": _plain(meta or {})}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, default=str) + "\n")
    return out
