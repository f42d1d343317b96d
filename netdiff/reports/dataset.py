"""The dataset section of a multi-sample report: terminal view and HTML section.

Both read only ``report.meta["dataset"]``, ``report.meta["samples"]`` and the layers'
``extra["samples"]`` (docs/json-report.md), so a saved JSON report re-renders the same.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from netdiff.types import Report

FLIPS_SHOWN = 10
CHART_COLUMNS = 400


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value: Any, digits: int = 6) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def output_lines(data: dict[str, Any]) -> list[str]:
    """One line per graph output: agreement (classification) or cosine distribution."""
    lines = []
    for name, out in data.get("outputs", {}).items():
        dist = (f"cosine mean {_num(out.get('mean_cosine'))}, p5 {_num(out.get('p5_cosine'))}, "
                f"worst {_num(out.get('worst_cosine'))} ({out.get('worst_sample')})")
        if out.get("kind") == "classification":
            text = (f"{name}: top-1 agreement {_pct(out.get('top1_agreement'))} "
                    f"({out.get('flipped', 0)} of {out.get('samples', 0)} samples flip)")
            if out.get("top5_agreement") is not None:
                text += f", reference class in target top-5 {_pct(out['top5_agreement'])}"
            acc = out.get("accuracy")
            if acc:
                text += (f"; accuracy on {acc['labeled']} labeled: reference {_pct(acc['reference'])}, "
                         f"target {_pct(acc['target'])}")
            lines.append(f"{text}; {dist}")
        elif out.get("kind") == "detection":
            lines.append(f"{name} (detector head {out.get('head')}): {dist}")
        else:
            lines.append(f"{name}: {dist}; {out.get('diverged', 0)} samples diverge")
    for head, det in (data.get("detection") or {}).items():
        lines.append(f"boxes of head {head} (score ≥ {det['score_threshold']:g}, IoU ≥ {det['iou_threshold']:g}): "
                     f"{det['matched']} of {det['reference_kept']} reference boxes kept by the target, "
                     f"{det['lost']} lost, {det['extra']} extra; {det['samples_agreeing']} of {det['samples']} "
                     f"samples agree box for box")
    return lines


class DatasetView:
    """Terminal section: samples, task agreement, flips, shared first divergences, worst samples."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.data = report.meta.get("dataset") or {}

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        d = self.data
        head = Text(f"{d.get('samples', 0)} samples", style="bold")
        head.append(f": {d.get('diverged_samples', 0)} diverge somewhere", style="")
        if d.get("errors"):
            head.append(f", {d['errors']} could not be run", style="bold magenta")
        head.append(f"; the layer table below is the worst sample, {d.get('worst_sample')}", style="dim")
        yield head
        for line in output_lines(d):
            yield Text("  " + line)
        flips = [(name, f) for name, out in d.get("outputs", {}).items() for f in out.get("flips", [])]
        if flips:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            for col in ("flipped sample", "output", "reference class (margin)", "target class (margin)"):
                table.add_column(col)
            for name, f in flips[:FLIPS_SHOWN]:
                table.add_row(str(f["id"]), name, f"{f['reference_class']} ({_num(f['reference_margin'], 3)})",
                              f"{f['target_class']} ({_num(f['target_margin'], 3)})")
            yield table
            if len(flips) > FLIPS_SHOWN:
                yield Text(f"  ... {len(flips) - FLIPS_SHOWN} more flips in the JSON/HTML report", style="dim")
        firsts = d.get("first_divergences") or []
        if firsts:
            yield Text("  first divergence: " + ", ".join(f"{x['layer']} ({x['samples']} samples)"
                                                         for x in firsts[:5]))
        shared = d.get("shared_first_divergence")
        if shared and shared.get("sample") != d.get("worst_sample"):
            yield Text(f"  {shared['samples']} samples first diverge at {shared['layer']}: diagnosed on "
                       f"{shared['sample']} ({len(shared.get('findings', []))} findings, listed below)")
        worst = d.get("worst") or []
        if len(worst) > 1:
            yield Text("  worst samples: " + ", ".join(
                f"{w['id']} (first divergence {w.get('first_divergence') or 'none'})" for w in worst))


# --- HTML --------------------------------------------------------------------------------------------------


def sample_anchor(sample_id: str) -> str:
    """The HTML id of a worst sample's detail block."""
    return "sample-" + "".join(c if c.isalnum() or c in "-_" else f"_{ord(c):x}" for c in str(sample_id))


def html_section(report: Report) -> str:
    """The dataset section of the HTML page (escaped; static SVG, no script), or "" for one sample."""
    d = report.meta.get("dataset")
    if not isinstance(d, dict):
        return ""
    worst_ids = {str(w.get("id")) for w in d.get("worst") or []}
    parts = ["<section id=\"dataset\"><h2>Dataset</h2>\n",
             f"<p>{escape(str(d.get('samples', 0)))} samples, {escape(str(d.get('diverged_samples', 0)))} diverge "
             f"somewhere; the layer table below is the worst sample, {_sample_link(d.get('worst_sample'), worst_ids)}."
             "</p>\n<ul>\n"]
    parts += [f"<li>{escape(line)}</li>\n" for line in output_lines(d)]
    parts.append("</ul>\n")
    parts.append(_chart(report.meta.get("samples") or [], d))
    parts.append(_flips(d, worst_ids))
    parts.append(_layer_stats(report, worst_ids))
    parts.append(_worst(d))
    parts.append("</section>\n")
    return "".join(parts)


def _sample_link(sample_id: Any, worst_ids: set[str]) -> str:
    if sample_id is None:
        return "—"
    text = escape(str(sample_id))
    if str(sample_id) in worst_ids:
        return f"<a href=\"#{sample_anchor(str(sample_id))}\" class=\"mono\">{text}</a>"
    return f"<span class=\"mono\">{text}</span>"


def _chart(samples: list[dict[str, Any]], d: dict[str, Any]) -> str:
    """Per-sample output agreement: one bar per sample (per group of samples beyond CHART_COLUMNS,
    the group's worst), height log10 of 1 − output cosine, red where a class flips."""
    if not samples:
        return ""
    flipped = {str(f["id"]) for out in d.get("outputs", {}).values() for f in out.get("flips", [])}
    group = max(1, math.ceil(len(samples) / CHART_COLUMNS))
    columns = []
    for start in range(0, len(samples), group):
        chunk = samples[start:start + group]
        worst = min(chunk, key=lambda s: _cos(s.get("output_cosine")))
        columns.append((worst, any(str(s["id"]) in flipped for s in chunk)))
    width, height = 4 * len(columns), 120
    bars = []
    for x, (s, flip) in enumerate(columns):
        gap = 1.0 - _cos(s.get("output_cosine"))
        level = 0.0 if gap <= 1e-9 else min(1.0, (math.log10(gap) + 9) / 9) if math.isfinite(gap) else 1.0
        h = max(1.0, level * (height - 10))
        color = "#c0392b" if flip else "#2c7fb8"
        label = escape(f"{s['id']}: output cosine {_num(s.get('output_cosine'))}{' (class flips)' if flip else ''}")
        bars.append(f"<rect x=\"{4 * x}\" y=\"{height - h:.1f}\" width=\"3\" height=\"{h:.1f}\" fill=\"{color}\">"
                    f"<title>{label}</title></rect>")
    note = f" (each bar: the worst of {group} samples)" if group > 1 else ""
    return (f"<figure><figcaption>Output agreement per sample, in sample order{escape(note)}: bar height "
            "= 1 − output cosine on a log scale (1e-9 … 1); red: the class flips</figcaption>\n"
            f"<svg role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{min(width, 1200)}\" height=\"{height}\" "
            f"preserveAspectRatio=\"none\">{''.join(bars)}</svg></figure>\n")


def _cos(value: Any) -> float:
    return -2.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _flips(d: dict[str, Any], worst_ids: set[str]) -> str:
    rows = [(name, f) for name, out in d.get("outputs", {}).items() for f in out.get("flips", [])]
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_sample_link(f['id'], worst_ids)}</td><td class=\"mono\">{escape(name)}</td>"
                   f"<td>{escape(str(f['reference_class']))} ({escape(_num(f['reference_margin'], 3))})</td>"
                   f"<td>{escape(str(f['target_class']))} ({escape(_num(f['target_margin'], 3))})</td></tr>\n"
                   for name, f in rows[:500])
    confusion = "".join(f"<li>{escape(name)}: class {escape(str(c['reference_class']))} → "
                        f"{escape(str(c['target_class']))}: {escape(str(c['samples']))} samples</li>\n"
                        for name, out in d.get("outputs", {}).items() for c in out.get("confusion", [])[:20])
    more = f"<p class=\"muted\">{len(rows) - 500} more in the JSON report</p>" if len(rows) > 500 else ""
    return (f"<h3>Flipped samples ({len(rows)})</h3>\n<table class=\"dataset\"><thead><tr><th>sample</th>"
            "<th>output</th><th>reference class (margin)</th><th>target class (margin)</th></tr></thead>\n"
            f"<tbody>{body}</tbody></table>{more}\n<h4>Confusion of flips</h4>\n<ul>{confusion}</ul>\n")


def _layer_stats(report: Report, worst_ids: set[str]) -> str:
    rows = []
    for layer in report.layers:
        s = layer.extra.get("samples")
        if not isinstance(s, dict):
            continue
        rows.append(f"<tr><td class=\"mono\">{escape(layer.name)}</td><td>{escape(str(layer.op_type or ''))}</td>"
                    f"<td>{escape(_num(s.get('mean_cosine')))}</td><td>{escape(_num(s.get('p5_cosine')))}</td>"
                    f"<td>{escape(_num(s.get('worst_cosine')))}</td><td>{escape(_num(s.get('p95_rel_l2')))}</td>"
                    f"<td>{escape(str(s.get('diverged', len(s.get('diverged_in', [])))))}</td>"
                    f"<td>{escape(str(s.get('first_divergence_of', '')))}</td>"
                    f"<td>{_sample_link(s.get('worst_sample'), worst_ids)}</td></tr>\n")
    if not rows:
        return ""
    return ("<h3>Layers over all samples</h3>\n<table class=\"dataset\"><thead><tr><th>layer</th><th>op</th>"
            "<th>mean cosine</th><th>p5 cosine</th><th>worst cosine</th><th>p95 rel_l2</th><th>samples diverged</th>"
            "<th>first divergence of</th><th>worst sample</th></tr></thead>\n<tbody>" + "".join(rows)
            + "</tbody></table>\n")


def _worst(d: dict[str, Any]) -> str:
    blocks = []
    for w in d.get("worst") or []:
        findings = "".join(f"<li><b>{escape(str(f.get('severity', '')))}</b> {escape(str(f.get('kind', '')))}: "
                           f"{escape(str(f.get('message', '')))}</li>" for f in w.get("findings", []))
        outputs = ", ".join(f"{escape(k)} {escape(_num(v))}" for k, v in (w.get("outputs") or {}).items())
        blocks.append(f"<div class=\"sample-detail\" id=\"{sample_anchor(str(w['id']))}\"><h4>Sample "
                      f"<span class=\"mono\">{escape(str(w['id']))}</span></h4><p>first divergence: "
                      f"<span class=\"mono\">{escape(str(w.get('first_divergence') or 'none'))}</span>; "
                      f"{escape(str(w.get('diverged_layers', 0)))} layers diverged; output cosine: {outputs or '—'}"
                      f"</p><ul>{findings or '<li>no finding</li>'}</ul></div>\n")
    shared = d.get("shared_first_divergence")
    if shared:
        blocks.append(f"<p>{escape(str(shared['samples']))} samples first diverge at <span class=\"mono\">"
                      f"{escape(str(shared['layer']))}</span>; diagnosed on sample <span class=\"mono\">"
                      f"{escape(str(shared['sample']))}</span>: "
                      + (escape("; ".join(str(f.get("message", "")) for f in shared.get("findings", [])))
                         or "no finding") + "</p>\n")
    if not blocks:
        return ""
    return "<h3>Worst samples, diagnosed in full</h3>\n" + "".join(blocks)
