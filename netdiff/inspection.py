"""Summaries of a dump's tensors (``netdiff inspect``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import NetdiffError
from netdiff.inputs import InputsLike


def inspect_source(source: str | Path, inputs: InputsLike = None, *, format: str | None = None,
                   options: dict[str, Any] | None = None, stats: bool = True, seed: int = 0
                   ) -> tuple[list[list[Any]], str]:
    """Return table rows (one per tensor) and a header line for a dump or a model.

    Cells are text, except min/max/mean: floats (the renderer picks one format per column), or text
    when undefined or unreadable."""
    from netdiff.pipeline import _open_side, open_source
    from netdiff.progress import NullProgress

    from netdiff.runners.onnxrt import OnnxModel

    opened = open_source(source, format, options)
    if not stats and not inputs and isinstance(opened, OnnxModel):
        return _graph_rows(opened)
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


#: Columns of the inspect listing; right-aligned ones.
COLUMNS = ("#", "tensor", "op", "shape", "dtype", "layout", "min", "max", "mean", "nan/inf")
RIGHT = frozenset({"#", "min", "max", "mean"})
#: Above this many rows the listing is printed as plain aligned text (linear and fast; a rich table
#: costs ~1.5 ms per row, minutes for a large graph).
RICH_ROWS = 2000


def plain_table(title: str, rows: list[list[str]], columns: tuple[str, ...] = COLUMNS,
                right: frozenset[str] = RIGHT) -> Iterator[str]:
    """The listing as aligned text lines (title, header, one line per row), in linear time.

    Control characters in cells (names come from files) are shown escaped, never sent to the terminal.
    """
    rows = [[_CONTROL.sub(_escape, c) if isinstance(c, str) else f"{c:.6g}" for c in row] for row in rows]
    title = _CONTROL.sub(_escape, title)
    widths = [len(c) for c in columns]
    for row in rows:
        for j, cell in enumerate(row):
            if len(cell) > widths[j]:
                widths[j] = len(cell)
    just = [str.rjust if c in right else str.ljust for c in columns]
    yield title
    yield "  ".join(f(c, w) for f, c, w in zip(just, columns, widths)).rstrip()
    for row in rows:
        yield "  ".join(f(c, w) for f, c, w in zip(just, row, widths)).rstrip()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def _graph_rows(model: Any) -> tuple[list[list[str]], str]:
    """An ONNX model's tensors without running it: shapes and types from ONNX shape inference
    (dynamic dimensions by name; ``?`` where only a run would tell)."""
    from netdiff.runners.onnxrt import graph_input_specs, node_outputs

    structure = model.structure()
    known = _inferred_types(structure)
    rows = [["0", spec.name, "Input", str(list(spec.shape)), spec.dtype, "", "", "", "", ""]
            for spec in graph_input_specs(structure)]
    for out in node_outputs(structure):
        shape, dtype = known.get(out.name, ("?", "?"))
        rows.append([str(out.order), out.name, out.op_type, shape, dtype, "", "", "", "", ""])
    return rows, f"{model.path} [onnx model, not run]: {len(rows)} tensors (shapes from ONNX shape inference)"


def _inferred_types(model: Any) -> dict[str, tuple[str, str]]:
    """Tensor name -> (shape text, numpy dtype name) from ONNX shape inference (best effort)."""
    import onnx
    from onnx import helper

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort: declared outputs remain
        inferred = model
    known = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output):
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]
        shape = str(dims) if tensor_type.HasField("shape") else "?"
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        except (KeyError, TypeError, ValueError):
            dtype = "?"
        known[value.name] = (shape, dtype)
    return known


_CHUNK = 1 << 22


def _stats(tensor: Any) -> list[Any]:
    """min, max, mean (floats, or "" when undefined; an error text in the first cell) and NaN/Inf count."""
    try:
        a = np.asarray(tensor.load())
    except NetdiffError as e:
        return [f"error: {e}", "", "", ""]
    if a.size == 0:
        return ["", "", "", "empty"]
    if a.dtype.kind not in "fiub":
        return ["", "", "", ""]
    lo, hi, total, finite_count = math.inf, -math.inf, 0.0, 0
    flat = a.reshape(-1)
    for start in range(0, flat.size, _CHUNK):  # in chunks: a float64 copy of a large tensor is never made
        part = flat[start:start + _CHUNK].astype(np.float64)
        finite = np.isfinite(part)
        vals = part if finite.all() else part[finite]
        if vals.size:
            lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
            total += float(vals.sum())
            finite_count += vals.size
    bad = a.size - finite_count
    if finite_count == 0:
        return ["", "", "", f"{bad}"]
    return [lo, hi, total / finite_count, str(bad) if bad else ""]
