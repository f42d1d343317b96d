"""CSV report with msaccucmp's column names where they apply, so Ascend users keep their habits."""

from __future__ import annotations

import csv
import math
import os
from typing import IO

from netdiff._io import atomic_open
from netdiff.types import LayerResult, Report

#: msaccucmp's result columns (golden side is npy, so no golden Address), plus netdiff's own.
COLUMNS = ["Index", "OpType", "NPUDump", "DataType", "Address", "GroundTruth", "DataType", "TensorIndex", "Shape",
           "CosineSimilarity", "MaxAbsoluteError", "AccumulatedRelativeError", "RelativeEuclideanDistance",
           "KullbackLeiblerDivergence", "StandardDeviation", "MeanAbsoluteError", "RootMeanSquareError",
           "MaxRelativeError", "MeanRelativeError", "CompareFailReason", "IsPrecisionError",
           "Status", "SQNR_dB", "Introduced", "AlignMethod", "Layout"]


def write_csv(report: Report, path: str | os.PathLike[str]) -> None:
    """Write one row per layer, atomically."""
    with atomic_open(path, "w") as handle:
        write_rows(report, handle)


def write_rows(report: Report, handle: IO[str]) -> None:
    """Write the header and the rows to an open text handle."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, layer in enumerate(report.layers):
        writer.writerow(_row(i, layer, report))


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    return f"{value:.6f}"


def _row(index: int, layer: LayerResult, report: Report) -> list[str]:
    m = layer.metrics
    shape = layer.shape if layer.shape is not None else layer.target_shape
    shape_text = "[" + ",".join(str(d) for d in shape) + "]" if shape is not None else ""
    npu = layer.target_name or "*"
    golden = layer.name if layer.status != "missing_in_reference" else "*"
    if m is None:
        metrics = ["NaN"] * 10
        fail = layer.reason or layer.status
        precision_error = "NO"
    else:
        acc_rel = m.mean_rel * m.finite_count if not math.isnan(m.mean_rel) else math.nan
        std = f"({_std(m.target_mean)};{_std(m.target_std)}),({_std(m.ref_mean)};{_std(m.ref_std)})"
        metrics = [_fmt(m.cosine), _fmt(m.max_abs), _fmt(acc_rel), _fmt(m.rel_l2), _fmt(m.kl), std,
                   _fmt(m.mean_abs), _fmt(m.rmse), _fmt(m.max_rel), _fmt(m.mean_rel)]
        fail = "; ".join(m.notes)
        precision_error = "YES" if layer.status == "diverged" and not math.isnan(m.cosine) else "NO"
    return [str(index), layer.op_type or "", npu, "", "NaN", golden, "", f"{npu}:output:0", shape_text,
            *metrics, fail, precision_error, layer.status,
            _fmt(m.sqnr_db) if m is not None else "NaN", "YES" if layer.introduced else "NO",
            layer.match.method if layer.match is not None else "", _layout(layer)]


def _std(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return "0.000" if abs(v) < 0.001 else f"{v:.3f}"


def _layout(layer: LayerResult) -> str:
    if layer.match is None or layer.match.transform is None:
        return ""
    return layer.match.transform.description
