"""The compact JSON payload the HTML report's script renders (one entry per layer).

Everything here tolerates partial or malformed per-layer data (reports re-rendered from JSON
files may come from other versions): a detail part that does not have the expected shape is
dropped, never fatal. Numbers are rounded to keep a 200-layer report well under 2 MB.
"""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from typing import Any

from netdiff import __version__
from netdiff.reports._html_layout import layered_layout
from netdiff.types import LayerResult, Report

#: Metrics shown in the table and detail panel (keys of LayerMetrics.as_dict()).
SHOWN_METRICS = ("cosine", "rel_l2", "sqnr_db", "max_abs", "mean_abs", "rmse", "max_rel", "mean_rel", "kl",
                 "ref_min", "ref_max", "ref_mean", "ref_std", "target_min", "target_max", "target_mean",
                 "target_std", "ref_nan", "ref_inf", "target_nan", "target_inf", "count", "finite_count")
MAX_CHANNELS = 1024
MAX_BINS = 256
MAX_HEATMAP = 64


def page_data(report: Report) -> dict[str, Any]:
    """Return the payload embedded in the page (plain JSON types only)."""
    index = {layer.name: i for i, layer in enumerate(report.layers)}
    origins = set(report.origins)
    layers = [_layer(i, layer, index, layer.name in origins) for i, layer in enumerate(report.layers)]
    for entry, label in zip(layers, short_labels([layer.name for layer in report.layers])):
        if label != entry["name"]:
            entry["lb"] = label
    summary = report.summary()
    return {
        "tool": f"netdiff {__version__}",
        "verdict": summary["verdict"],
        "counts": summary["counts"],
        "thresholds": {"cosine": _num(report.thresholds.cosine), "rel_l2": _num(report.thresholds.rel_l2)},
        "first": report.first_divergence if report.first_divergence in index else None,
        "layers": layers,
        "graph": _graph(report, index),
    }


_OUTPUT_SUFFIX = re.compile(r"_output_\d+$|:\d+$")


def short_labels(names: list[str], min_segments: int = 2) -> list[str]:
    """The shortest tail of each name (path segments split at ``/``) that no other name shares.

    ``/backbone/stage2/block3/conv/Conv_output_0`` becomes ``block3/conv/Conv`` when that is
    unique, so 60 ``conv/Conv`` layers stay distinguishable in the chart and graph. The
    ``_output_N`` suffix is dropped unless it is what tells two names apart; a label has at
    least ``min_segments`` segments when the name has them.
    """
    stripped = _unique_tails([_segments(n, strip=True) for n in names], min_segments)
    plain = _unique_tails([_segments(n, strip=False) for n in names], min_segments)
    return [a or b or name for name, a, b in zip(names, stripped, plain)]


def _unique_tails(split: list[list[str]], min_segments: int) -> list[str | None]:
    depth = max((len(s) for s in split), default=0)
    counts = [Counter("/".join(s[-k:]) for s in split) for k in range(1, depth + 1)]
    out: list[str | None] = []
    for segments in split:
        label = None
        for k in range(min(min_segments, len(segments)), len(segments) + 1):
            tail = "/".join(segments[-k:])
            if k and counts[k - 1][tail] == 1:
                label = tail
                break
        out.append(label)
    return out


def _segments(name: str, strip: bool) -> list[str]:
    parts = [p for p in str(name).split("/") if p]
    if parts and strip:
        parts[-1] = _OUTPUT_SUFFIX.sub("", parts[-1]) or parts[-1]
    return parts


def _layer(i: int, layer: LayerResult, index: dict[str, int], origin: bool) -> dict[str, Any]:
    match = layer.match
    entry: dict[str, Any] = {
        "name": str(layer.name),
        "status": str(layer.status),
    }
    optional = {
        "target": _str(layer.target_name) if layer.target_name != layer.name else None,
        "op": _str(layer.op_type),
        "origin": True if origin else None,
        "gain": _num(layer.error_gain),
        "exp": _num(getattr(layer, "expected_rel_l2", None)),
        "shape": _ints(layer.shape),
        "tshape": _ints(layer.target_shape),
        "method": _str(match.method) if match is not None else None,
        "layout": _str(match.transform.description) if match is not None and match.transform is not None else None,
        "why": _str(match.reason) if match is not None and match.reason else None,
        "reason": _str(layer.reason) or None,
        "inputs": [index[n] for n in layer.inputs if n in index] or None,
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    if layer.metrics is not None:
        values = layer.metrics.as_dict()
        entry["m"] = {k: _num(values.get(k)) for k in SHOWN_METRICS}
        if layer.metrics.notes:
            entry["notes"] = [str(n) for n in layer.metrics.notes]
    extra = layer.extra if isinstance(layer.extra, dict) else {}
    isolated = extra.get("isolated")
    if isinstance(isolated, dict):
        iso = {str(k): _num(v) for k, v in isolated.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if iso:
            entry["iso"] = iso
    if extra.get("node") is not None:
        entry["node"] = _str(extra["node"])
    detail = _detail(extra.get("detail"))
    if detail:
        entry["d"] = detail
    return entry


def _detail(detail: Any) -> dict[str, Any]:
    if not isinstance(detail, dict):
        return {}
    out: dict[str, Any] = {}
    hist = detail.get("histogram")
    if isinstance(hist, dict):
        edges = _edges(hist.get("edges"))
        ref, tgt = _counts(hist.get("reference")), _counts(hist.get("target"))
        if edges and ref and tgt and len(ref) == len(tgt):
            out["h"] = {"e": edges, "r": ref, "t": tgt, "n": _int(hist.get("sampled"))}
    err = detail.get("error_histogram")
    if isinstance(err, dict):
        edges, counts = _edges(err.get("edges")), _counts(err.get("counts"))
        if edges and counts:
            out["eh"] = {"e": edges, "c": counts}
    channels = detail.get("channel_cosine")
    if isinstance(channels, list) and 0 < len(channels) <= MAX_CHANNELS:
        out["cc"] = [_round(c, 5) for c in channels]
    heat = _heatmap(detail.get("heatmap"))
    if heat:
        out["hm"] = heat
    return out


def _heatmap(heat: Any) -> dict[str, Any] | None:
    """|error| grid quantized to bytes (255 = not finite) and base64-encoded."""
    if not isinstance(heat, dict) or not isinstance(heat.get("values"), list):
        return None
    rows = heat["values"]
    if not rows or len(rows) > MAX_HEATMAP or not all(isinstance(r, list) and len(r) == len(rows[0]) for r in rows):
        return None
    cols = len(rows[0])
    if not 0 < cols <= MAX_HEATMAP:
        return None
    flat = [_float(v) for r in rows for v in r]
    finite = [v for v in flat if v is not None and math.isfinite(v)]
    top = max((abs(v) for v in finite), default=0.0)
    data = bytes(255 if v is None or not math.isfinite(v) else (round(254 * abs(v) / top) if top > 0 else 0)
                 for v in flat)
    shape = _ints(heat.get("shape"))
    return {"ch": _int(heat.get("channel")), "shape": shape, "max": _num(top), "rows": len(rows), "cols": cols,
            "q": base64.b64encode(data).decode("ascii")}


def _graph(report: Report, index: dict[str, int]) -> dict[str, Any] | None:
    """Layered positions of the reference's layers, when the report knows any edges."""
    members = [i for i, layer in enumerate(report.layers) if layer.status != "missing_in_reference"]
    if not any(report.layers[i].inputs for i in members):
        return None
    local = {g: k for k, g in enumerate(members)}
    preds = [[local[index[n]] for n in report.layers[g].inputs if n in index and index[n] in local] for g in members]
    layout = layered_layout(preds)
    return {"nodes": members, "x": layout.x, "y": layout.y, "w": layout.width, "h": layout.height,
            "nw": layout.node_w, "nh": layout.node_h}


def _edges(value: Any) -> list[float] | None:
    if isinstance(value, list) and len(value) == 2:
        lo, hi = _float(value[0]), _float(value[1])
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            return [_num(lo), _num(hi)]
    return None


def _counts(value: Any) -> list[int] | None:
    if isinstance(value, list) and 0 < len(value) <= MAX_BINS:
        out = [_int(v) for v in value]
        if all(v is not None and v >= 0 for v in out):
            return out
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _num(value: Any) -> float | int | None:
    """A JSON number with 6 significant digits; None for missing or NaN; ±1e308 for infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value
    if math.isnan(value):
        return None
    if math.isinf(value) or abs(value) >= 1e300:
        return 1e308 if value > 0 else -1e308
    return float(f"{value:.6g}")


def _round(value: Any, digits: int) -> float | None:
    v = _float(value)
    return None if v is None or not math.isfinite(v) else round(v, digits)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) else None


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, (list, tuple)) and all(_int(v) is not None for v in value):
        return [int(v) for v in value]
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
