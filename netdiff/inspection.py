"""Summaries of a dump's tensors (``netdiff inspect``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import NetdiffError
from netdiff.inputs import InputsLike


def inspect_source(source: str | Path, inputs: InputsLike = None, *, format: str | None = None,
                   options: dict[str, Any] | None = None, stats: bool = True, seed: int = 0
                   ) -> tuple[list[list[str]], str]:
    """Return table rows (one per tensor) and a header line for a dump or a model."""
    from netdiff.pipeline import _open_side, open_source
    from netdiff.progress import NullProgress

    opened = open_source(source, format, options)
    side = _open_side(opened, inputs, seed, NullProgress(), None)
    dump = side.dump
    rows = []
    for i, t in enumerate(dump):
        cells = [str(t.order if t.order is not None else i), t.name, t.op_type or "", str(list(t.shape)),
                 t.dtype, t.layout or ""]
        if stats:
            cells += _stats(t)
        else:
            cells += ["", "", "", ""]
        rows.append(cells)
    extra = f", target-only {len(dump.target_only)}" if dump.target_only else ""
    return rows, f"{dump.source} [{dump.format}]: {len(dump)} tensors{extra}"


def _stats(tensor: Any) -> list[str]:
    try:
        a = np.asarray(tensor.load())
    except NetdiffError as e:
        return [f"error: {e}", "", "", ""]
    if a.size == 0:
        return ["", "", "", "empty"]
    if a.dtype.kind not in "fiub":
        return ["", "", "", ""]
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    bad = int(a.size - finite.sum())
    vals = a[finite] if bad else a
    if vals.size == 0:
        return ["", "", "", f"{bad}"]
    return [f"{vals.min():.4g}", f"{vals.max():.4g}", f"{vals.mean():.4g}", str(bad) if bad else ""]
