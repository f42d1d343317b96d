"""A report in a Python session or notebook: a short ``repr``, a static HTML view, a DataFrame.

``Report.__repr__``, ``Report._repr_html_`` and ``Report.to_dataframe`` call these. The HTML
is static (no script: notebooks drop scripts of untrusted cells) and every name from a model or
dump is escaped.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from netdiff.types import METRIC_NAMES, STATUSES, LayerResult, Report

#: The longest name kept whole in ``repr`` (longer ones keep their start and their tail).
REPR_NAME = 90
#: Findings named in ``repr``.
REPR_FINDINGS = 3
#: Layer rows in the notebook table (the DataFrame has them all).
HTML_ROWS = 200
#: Metrics shown in the notebook table.
HTML_METRICS = ("cosine", "rel_l2", "sqnr_db", "max_abs")


def report_repr(report: Report) -> str:
    """One or a few lines: verdict, sides, counts, first divergence, top findings (< 2000 characters)."""
    s = report.summary()
    counts = ", ".join(f"{n} {status}" for status, n in s["counts"].items() if n)
    parts = [f"<netdiff Report {s['verdict'].upper()}: {_clip(_side(report.reference))} vs "
             f"{_clip(_side(report.target))}; {s['layers']} layers, {s['compared']} compared ({counts or 'none'})"]
    if report.first_divergence:
        layer = _find(report, report.first_divergence)
        op = f" ({_clip(layer.op_type, 40)})" if layer is not None and layer.op_type else ""
        more = len(report.origins) - 1
        parts.append(f"first divergence {_clip(report.first_divergence)}{op}"
                     + (f", {more} more origin{'s' if more > 1 else ''}" if more > 0 else ""))
    else:
        parts.append("no divergence")
    if report.findings:
        named = [f"{f.severity} {_clip(f.kind, 40)}" + (f" @ {_clip(f.layer)}" if f.layer else "")
                 for f in report.findings[:REPR_FINDINGS]]
        rest = len(report.findings) - REPR_FINDINGS
        parts.append(f"{len(report.findings)} finding{'s' if len(report.findings) > 1 else ''}: "
                     + "; ".join(named) + (f"; … {rest} more" if rest > 0 else ""))
    return "; ".join(parts) + ">"


def layer_repr(layer: LayerResult) -> str:
    """``<LayerResult name (op) status cosine=… rel_l2=…>`` in a few hundred characters at most."""
    bits = [_clip(layer.name)]
    if layer.op_type:
        bits.append(f"({_clip(layer.op_type, 40)})")
    bits.append(layer.status)
    if layer.metrics is not None:
        bits.append(f"cosine={_number(layer.metrics.cosine, 'cosine')} rel_l2={_number(layer.metrics.rel_l2, 'rel_l2')}")
    if layer.target_name and layer.target_name != layer.name:
        bits.append(f"target={_clip(layer.target_name)}")
    if layer.introduced:
        bits.append("origin")
    if layer.reason and layer.metrics is None:
        bits.append(f"reason={_clip(layer.reason, 120)!r}")
    return f"<LayerResult {' '.join(bits)}>"


def report_html(report: Report, rows: int = HTML_ROWS) -> str:
    """A static HTML fragment: summary, findings and the layer table (escaped)."""
    s = report.summary()
    colour = {"ok": "#1a7f37", "diverged": "#cf222e"}.get(s["verdict"], "#9a6700")
    counts = ", ".join(f"{n} {escape(status.replace('_', ' '))}" for status, n in s["counts"].items() if n)
    th = report.thresholds
    first = (f"<b>first divergence</b> <code>{escape(report.first_divergence)}</code>" if report.first_divergence
             else "<b>no divergence</b>")
    out = [
        "<div class=\"netdiff-report\">",
        f"<div><b style=\"color:{colour}\">{escape(s['verdict'].upper())}</b> "
        f"<code>{escape(_side(report.reference))}</code> vs <code>{escape(_side(report.target))}</code></div>",
        f"<div>{s['layers']} layers, {s['compared']} compared ({counts or 'none'}); {first}; "
        f"thresholds cosine ≥ {th.cosine:g}, rel_l2 ≤ {th.rel_l2:g}</div>",
    ]
    if report.findings:
        out.append("<ul>")
        for f in report.findings:
            where = f" at <code>{escape(f.layer)}</code>" if f.layer else ""
            fix = f"<br><i>fix:</i> {escape(f.suggestion)}" if f.suggestion else ""
            out.append(f"<li><b>{escape(f.severity)}</b> <code>{escape(f.kind)}</code>{where}: "
                       f"{escape(f.message)}{fix}</li>")
        out.append("</ul>")
    out.append(_layer_table(report, rows))
    out.append("</div>")
    return "\n".join(out)


def _layer_table(report: Report, rows: int) -> str:
    origins = set(report.origins)
    names = ("#", "layer", "op", "status", *HTML_METRICS, "gain")
    head = "".join(f"<th{_RIGHT if k >= 4 or k == 0 else ''}>{h}</th>" for k, h in enumerate(names))
    body = []
    for i, layer in enumerate(report.layers[:rows]):
        m = {k: getattr(layer.metrics, k) for k in HTML_METRICS} if layer.metrics is not None else {}
        mark = " ◆" if layer.name in origins else ""
        cells = [str(layer.order if layer.order is not None else i), f"<code>{escape(layer.name)}</code>{mark}",
                 escape(layer.op_type or ""), escape(layer.status),
                 *(_number(m.get(k), k) for k in HTML_METRICS),
                 _number(layer.error_gain, "gain")]
        style = " style=\"color:#cf222e\"" if layer.status == "diverged" else ""
        body.append(f"<tr{style}>" + "".join(f"<td{_RIGHT if k >= 4 or k == 0 else ''}>{c}</td>"
                                              for k, c in enumerate(cells)) + "</tr>")
    more = len(report.layers) - rows
    tail = (f"<div><i>{more} more layer(s): report.to_dataframe() has them all</i></div>" if more > 0 else "")
    return (f"<details{' open' if len(report.layers) <= 40 else ''}><summary>layers</summary>"
            "<div style=\"max-height:480px;overflow:auto\"><table>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{tail}</details>")


def report_dataframe(report: Report) -> Any:
    """A pandas DataFrame with one row per layer and the metrics as columns.

    Raises:
        ImportError: pandas is not installed (it is an optional extra).
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("Report.to_dataframe() needs pandas, an optional dependency: "
                          "pip install pandas (or pip install 'netdiff[pandas]')") from e
    records = [layer_record(i, layer, set(report.origins)) for i, layer in enumerate(report.layers)]
    columns = list(records[0]) if records else list(layer_record(0, _EMPTY, set()))
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["status"] = pd.Categorical(frame["status"], categories=list(dict.fromkeys((*STATUSES, *frame["status"]))))
    return frame


def layer_record(i: int, layer: LayerResult, origins: set[str]) -> dict[str, Any]:
    """One DataFrame row: identity, verdict, every metric (NaN when not compared), isolated error."""
    m = layer.metrics
    record: dict[str, Any] = {
        "name": layer.name,
        "target_name": layer.target_name,
        "op_type": layer.op_type,
        "order": layer.order,
        "status": layer.status,
        "origin": layer.name in origins,
        "error_gain": layer.error_gain if layer.error_gain is not None else math.nan,
        "shape": tuple(layer.shape) if layer.shape is not None else None,
        "target_shape": tuple(layer.target_shape) if layer.target_shape is not None else None,
        "alignment": layer.match.method if layer.match is not None else None,
    }
    for key in METRIC_NAMES:
        value = getattr(m, key) if m is not None else math.nan
        record[key] = float(value) if m is None or key not in _COUNTS else int(value)
    isolated = layer.extra.get("isolated") if isinstance(layer.extra, dict) else None
    for key in ("cosine", "rel_l2"):
        value = isolated.get(key) if isinstance(isolated, dict) else None
        record[f"isolated_{key}"] = float(value) if isinstance(value, (int, float)) else math.nan
    record["reason"] = layer.reason
    return record


_RIGHT = " style=\"text-align:right\""
_COUNTS = {"ref_nan", "ref_inf", "target_nan", "target_inf", "count", "finite_count"}
_EMPTY = LayerResult(name="", target_name=None, op_type=None, order=None, status="ok")


def _find(report: Report, name: str) -> LayerResult | None:
    try:
        return report.layer(name)
    except KeyError:
        return None


def _side(info: dict[str, Any]) -> str:
    path = str(info.get("path") or info.get("source") or "?")
    return Path(path).name or path


def _clip(text: Any, limit: int = REPR_NAME) -> str:
    text = str(text)
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep // 3] + "…" + text[-(keep - keep // 3):]


def _number(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if key == "cosine":
        return f"{value:.6f}"
    if key == "sqnr_db":
        return f"{value:.1f}"
    if key == "gain":
        return f"{value:.1f}×"
    return f"{value:.4g}"
