"""The standalone HTML report: one file, no network, readable in any current browser.

The header and findings are rendered here (escaped); the chart, layer table, detail panel and
graph are drawn by a small embedded script from a JSON payload (``_html_data.page_data``). A
Content-Security-Policy allows only that script (by hash) and no network access at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from netdiff._io import write_text_atomic
from netdiff.errors import NetdiffError
from netdiff.reports._html_data import page_data
from netdiff.reports.dataset import html_section
from netdiff.types import Finding, Report

_ASSETS = "html_assets"


def render_html(report: Report) -> str:
    """Return the complete, self-contained HTML page for ``report``."""
    payload = page_data(report)
    index = {layer["name"]: i for i, layer in enumerate(payload["layers"])}
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           "img-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
    ref, tgt = _side(report.reference), _side(report.target)
    title = f"netdiff: {payload['verdict']} — {ref} vs {tgt}"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"referrer\" content=\"no-referrer\">\n",
        f"<title>{escape(title)}</title>\n<style>\n{_asset('report.css')}</style>\n</head>\n<body>\n<main>\n",
        "<div id=\"errors\" hidden></div>\n",
        _header(report, payload, index),
        _findings(report.findings, index),
        _detections(report, index),
        html_section(report),
        _SKELETON,
        f"<footer>{escape(payload['tool'])} · self-contained report, no network access</footer>\n</main>\n",
        "<pre id=\"selftest-result\" hidden></pre>\n",
        "<script type=\"application/json\" id=\"netdiff-data\">", embed_json(payload), "</script>\n",
        "<script>", script, "</script>\n</body>\n</html>\n",
    ])


def write_html(report: Report, path: str | os.PathLike[str]) -> None:
    """Write the HTML report atomically."""
    write_text_atomic(path, render_html(report))


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read a report saved with ``--json`` (to re-render it).

    Raises:
        NetdiffError: The file is missing, not JSON, or not a netdiff JSON report.
    """
    from netdiff.reports.json import report_from_json

    from netdiff._input_files import load_json

    path = Path(path)
    data = load_json(path, "JSON report (written by netdiff compare --json)", NetdiffError)
    try:
        return report_from_json(data)
    except NetdiffError as e:
        raise NetdiffError(f"{path}: {e}") from e


def embed_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (cannot close it or start a comment)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _asset(name: str) -> str:
    return resources.files("netdiff.reports").joinpath(_ASSETS, name).read_text(encoding="utf-8")


def _side(info: dict[str, Any]) -> str:
    path = str(info.get("path") or info.get("source") or "?")
    return Path(path).name or path


def _describe(info: dict[str, Any]) -> str:
    path = escape(str(info.get("path") or "?"))
    bits = [str(info[k]) for k in ("format", "kind") if info.get(k)]
    if info.get("tensors") is not None:
        bits.append(f"{info['tensors']} tensors")
    more = f" <span class=\"muted\">({escape(', '.join(bits))})</span>" if bits else ""
    return f"<span class=\"mono\">{path}</span>{more}"


def _layer_button(name: str | None, index: dict[str, int], element_id: str = "") -> str:
    if name is None:
        return ""
    ident = f" id=\"{element_id}\"" if element_id else ""
    if name in index:
        return f"<button class=\"linkish\"{ident} data-layer=\"{index[name]}\">{breakable(name)}</button>"
    return f"<span class=\"mono\"{ident}>{breakable(name)}</span>"


def breakable(text: str) -> str:
    """``text`` escaped, with a line-break opportunity (``<wbr>``) after each / _ . : - separator."""
    return re.sub(r"([/_.:-])", r"\1<wbr>", escape(text))


def _header(report: Report, payload: dict[str, Any], index: dict[str, int]) -> str:
    verdict = payload["verdict"]
    words = {"ok": "No layer diverged", "diverged": "The target diverges from the reference",
             "incomplete": "Some layers could not be compared",
             "nothing_compared": "Nothing was compared: no tensor of the target matched the reference"}
    inputs = ", ".join(f"{k} = {v}" for k, v in report.inputs.items()) or "—"
    th = report.thresholds
    counts = "".join(f"<span class=\"pill s-{escape(s)}\">{n} {escape(s.replace('_', ' '))}</span>"
                     for s, n in payload["counts"].items() if n)
    if report.first_divergence:
        layer = report.layer(report.first_divergence) if report.first_divergence in index else None
        op = f" <span class=\"muted\">({escape(layer.op_type)})</span>" if layer and layer.op_type else ""
        more = len(report.origins) - 1
        extra = f" <span class=\"muted\">· {more} more origin{'s' if more > 1 else ''}</span>" if more > 0 else ""
        first = (f"<div class=\"first\"><strong>First divergence</strong>"
                 f"{_layer_button(report.first_divergence, index, 'first-divergence')}{op}{extra}</div>")
    else:
        first = "<div class=\"first none\"><strong>First divergence</strong><span>none</span></div>"
    return (
        "<section class=\"card\"><div class=\"top\"><div>"
        "<div class=\"brand\">netdiff report</div>"
        f"<div class=\"verdict\"><span class=\"pill big s-{escape(verdict)}\">{escape(verdict.upper())}</span>"
        f"<h1>{escape(words.get(verdict, verdict))}</h1></div>"
        "<dl class=\"facts\">"
        f"<dt>Reference</dt><dd>{_describe(report.reference)}</dd>"
        f"<dt>Target</dt><dd>{_describe(report.target)}</dd>"
        f"<dt>Inputs</dt><dd class=\"mono\">{escape(inputs)}</dd>"
        f"<dt>Thresholds</dt><dd>cosine ≥ {th.cosine:g} and rel_l2 ≤ {th.rel_l2:g}</dd>"
        "</dl></div>"
        f"<div class=\"counts\">{counts}</div></div>{first}</section>\n"
    )


def _findings(findings: list[Finding], index: dict[str, int]) -> str:
    if not findings:
        return ""
    items = []
    for f in findings:
        layer = f"<div>{_layer_button(f.layer, index)}</div>" if f.layer else ""
        evidence = ", ".join(f"{k}={_short(v)}" for k, v in dict(f.evidence).items())
        items.append(
            f"<div class=\"finding\"><div><span class=\"pill sev-{escape(f.severity)}\">{escape(f.severity)}</span></div>"
            f"<div><div class=\"msg\">{escape(f.message)}</div>{layer}"
            + (f"<div class=\"fix\">{escape(f.suggestion)}</div>" if f.suggestion else "")
            + f"<div class=\"ev\">{escape(f.kind)}{' · ' + escape(evidence) if evidence else ''}</div></div></div>")
    return f"<section class=\"card\" id=\"findings\"><h2>Findings</h2>{''.join(items)}</section>\n"


def _detections(report: Report, index: dict[str, int]) -> str:
    """The detection summary (report.meta["detection"]): one row per detector head."""
    from netdiff.detection import summary_line

    entries = [e for e in report.meta.get("detection") or [] if isinstance(e, dict)]
    if not entries:
        return ""
    rows = []
    for e in entries:
        cells = [str(e.get(k, "")) if e.get("compared") else "—" for k in ("reference_kept", "target_kept", "matched",
                                                                           "lost", "extra")]
        name = str(e.get("scores", ""))
        rows.append(f"<tr><td class=\"name\">{_layer_button(name, index)}</td>"
                    + "".join(f"<td class=\"num\">{escape(c)}</td>" for c in cells)
                    + f"<td>{escape(summary_line(e))}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Head", "Reference", "Target", "Matched", "Lost", "Extra", "Summary"))
    return (f"<section class=\"card\" id=\"detections\"><h2>Detections</h2><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>\n")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


_SKELETON = """\
<section class="card" id="chart-section"><div class="chart-head"><h2>Metrics over depth</h2>
<div class="legend"><span><i style="background:var(--ref)"></i>cosine (left axis)</span>
<span><i style="background:var(--sqnr)"></i>SQNR dB (right axis)</span>
<span><i style="background:var(--bad)"></i>cosine threshold</span>
<span><i style="background:var(--bad);height:10px;width:10px;border-radius:50%"></i>origin</span></div></div>
<div id="chart"><p class="empty">The interactive parts of this report need JavaScript.</p></div></section>
<div class="split">
<section class="card" id="table-section"><h2>Layers</h2>
<div class="controls"><input id="filter" type="search" placeholder="Filter by name or op type" aria-label="Filter layers">
<select id="status-filter" aria-label="Status"></select><span id="row-count" class="muted small"></span></div>
<div class="table-wrap"><table id="layer-table"><thead></thead><tbody></tbody></table></div></section>
<aside class="card" id="detail"><p class="empty">Select a layer.</p></aside>
</div>
<section class="card" id="graph-section" hidden><div class="chart-head"><h2>Graph</h2>
<div class="legend"><span><i style="background:#4ac26b"></i>cosine ok</span><span id="legend-noisy" hidden><i style="background:#54aeff"></i>noisy (within the precision's expected noise)</span><span><i style="background:#fa8080"></i>diverged (darker = lower cosine)</span>
<span><i style="background:#d0d7de"></i>not compared</span><span><i style="background:var(--bad);height:10px"></i>origin (thick outline)</span></div></div>
<div class="graph-wrap" id="graph"></div></section>
"""
