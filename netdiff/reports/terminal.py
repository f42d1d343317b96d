"""Terminal rendering of a report with rich: header, findings, layer table, summary."""

from __future__ import annotations

import math
from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from netdiff.reports.fit import Column, NameCell, fit_table, fixed_format, number
from netdiff.types import LayerResult, Report

STATUS_STYLE = {
    "ok": "green", "noisy": "cyan", "diverged": "bold red", "missing_in_target": "yellow", "missing_in_reference": "yellow",
    "shape_mismatch": "magenta", "error": "bold magenta", "not_observable": "dim",
}
VERDICT_STYLE = {"ok": "bold green", "diverged": "bold red", "incomplete": "bold magenta",
                 "nothing_compared": "bold magenta"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def select_layers(report: Report, context: int = 2, worst: int = 5) -> list[int]:
    """Indices of the layers worth showing by default: around origins, the worst, and errors."""
    keep: set[int] = set()
    origins = set(report.origins)
    for i, layer in enumerate(report.layers):
        if layer.name in origins:
            keep.update(range(max(0, i - context), min(len(report.layers), i + context + 1)))
        if layer.status in ("error", "shape_mismatch"):
            keep.add(i)
    compared = [(i, x) for i, x in enumerate(report.layers) if x.metrics is not None]
    compared.sort(key=lambda p: _nan_low(p[1].metrics.cosine))
    keep.update(i for i, _ in compared[:worst])
    outputs = report.meta.get("graph_outputs") or []
    keep.update(i for i, x in enumerate(report.layers) if x.name in outputs)
    return sorted(keep)


class LayerTable:
    """The per-layer table (all layers, or a selection by index)."""

    def __init__(self, report: Report, indices: Iterable[int] | None = None) -> None:
        self.report = report
        self.indices = list(range(len(report.layers))) if indices is None else list(indices)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield fit_table(self.columns(), options.max_width)

    def columns(self) -> list[Column]:
        """The table's columns, before fitting: cells per row, drop priorities (gain goes first)."""
        r, th = self.report, self.report.thresholds
        isolated = any("isolated" in r.layers[i].extra for i in self.indices)
        rows: list[int | None] = []  # None: a "… n not shown" gap
        previous = None
        for i in self.indices:
            if previous is not None and i > previous + 1:
                rows.append(None)
            rows.append(i)
            previous = i
        layers = [r.layers[i] if i is not None else None for i in rows]
        metrics = [x.metrics if x is not None else None for x in layers]
        formats = {key: fixed_format([getattr(m, key) for m in metrics if m is not None], 4)
                   for key in ("rel_l2", "max_abs")}
        gain_format = fixed_format([x.error_gain for x in layers if x is not None], 1)
        iso = [_isolated_cosine(x) if x is not None else None for x in layers]
        cols = [Column("#", justify="right", style="dim"), Column("layer", names=True),
                Column("op", style="dim", drop=4), Column("status"), Column("cosine", justify="right"),
                Column("rel_l2", justify="right"), Column("sqnr dB", justify="right", drop=2),
                Column("max_abs", justify="right", drop=3), Column("gain", justify="right", drop=1)]
        if isolated:
            cols.append(Column("isolated cos", justify="right", drop=5))
        gap = iter(b - a - 1 for a, b in zip(self.indices, self.indices[1:]) if b > a + 1)
        for i, layer, m, iso_cos in zip(rows, layers, metrics, iso):
            if layer is None:
                cells: list = ["", NameCell(f"… {next(gap)} not shown (--all)", style="dim", plain=True)] + [""] * (len(cols) - 2)
            else:
                cells = [str(layer.order if layer.order is not None else i), self._name(layer), layer.op_type or "",
                         Text(layer.status, style=STATUS_STYLE.get(layer.status, ""))]
                if m is None:
                    cells += ["", "", "", "", ""]
                else:
                    cells += [Text(number(m.cosine, 5), style="red" if not m.cosine >= th.cosine else ""),
                              Text(number(m.rel_l2, 4, formats["rel_l2"]),
                                   style="red" if not m.rel_l2 <= th.rel_l2 else ""),
                              number(m.sqnr_db, 1), number(m.max_abs, 4, formats["max_abs"]),
                              _gain(layer.error_gain, gain_format)]
                if isolated:
                    cells.append(number(iso_cos, 5))
            for col, cell in zip(cols, cells):
                col.cells.append(cell)
        return cols

    def _name(self, layer: LayerResult) -> NameCell:
        mark = ""
        if layer.name == self.report.first_divergence:
            mark = "▶ "
        elif layer.introduced:
            mark = "◆ "
        alias = ""
        if (layer.target_name and layer.target_name != layer.name and layer.match is not None
                and layer.match.method not in ("exact", "normalized")):
            alias = layer.target_name
        note = ""
        if layer.metrics is None and layer.status not in ("missing_in_target", "missing_in_reference"):
            note = layer.reason.split(": ", 1)[-1]  # why an error / shape mismatch / not observable
        return NameCell(layer.name, mark=mark, style="bold red" if mark else "", alias=alias, note=note)


def _gain(gain: float | None, style: str) -> str:
    """The gain column: ∞ for an error from exact inputs (as the finding says), else the column's format."""
    return "∞" if gain is not None and math.isinf(gain) and gain > 0 else number(gain, 1, style)


def _isolated_cosine(layer: LayerResult) -> float | None:
    iso = layer.extra.get("isolated") or {}
    return iso.get("cosine") if isinstance(iso, dict) else None


class FindingsPanel:
    """Diagnosed causes in plain words with what to change."""

    def __init__(self, report: Report, limit: int = 8) -> None:
        self.report = report
        self.limit = limit

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        findings = self.report.findings
        if not findings:
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=7, no_wrap=True)
        grid.add_column(ratio=1)
        for f in findings[: self.limit]:
            body = Text()
            body.append(f.kind, style="bold")
            if f.layer:
                body.append(f" @ {f.layer}", style="bold")
            body.append(f"\n{f.message}")
            if f.suggestion:
                body.append("\nfix: ", style="green")
                body.append(f.suggestion)
            grid.add_row(Text(f.severity.upper(), style=SEVERITY_STYLE.get(f.severity, "")), body)
        if len(findings) > self.limit:
            grid.add_row("", Text(f"… and {len(findings) - self.limit} more finding(s) in the JSON/HTML report",
                                  style="dim"))
        yield Panel(grid, title="findings", title_align="left", border_style="cyan")


class SummaryPanel:
    """Verdict, first divergence, origins and status counts."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r = self.report
        s = r.summary()
        text = Text()
        verdict = s["verdict"]
        text.append(verdict.replace("_", " ").upper(), style=VERDICT_STYLE.get(verdict, "bold"))
        text.append(f"  {s['compared']} of {s['layers']} tensors compared "
                    f"(cosine ≥ {r.thresholds.cosine}, rel_l2 ≤ {r.thresholds.rel_l2})\n")
        if s.get("reason"):
            text.append(s["reason"] + "\n", style="bold")
        precision = r.meta.get("precision")
        if isinstance(precision, dict) and precision.get("kind"):
            text.append(f"precision {precision['kind']} ({precision.get('source', '')}): a layer beyond the thresholds is "
                        f"noisy up to {r.thresholds.noise_factor:g}x its expected {precision['kind']} noise, "
                        "diverged beyond\n", style="dim")
        if r.first_divergence:
            layer = r.layer(r.first_divergence)
            text.append("first divergence: ", style="bold")
            text.append(f"{r.first_divergence}", style="bold red")
            if layer.op_type:
                text.append(f" ({layer.op_type})")
            if layer.metrics is not None:
                text.append(f"  cosine {_num(layer.metrics.cosine, 5)}, rel_l2 {_num(layer.metrics.rel_l2, 4)}")
            text.append("\n")
        if len(r.origins) > 1:
            text.append(f"origins ({len(r.origins)}): ", style="bold")
            text.append(", ".join(r.origins[:8]) + (" …" if len(r.origins) > 8 else "") + "\n")
        counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v)
        text.append(counts, style="dim")
        aligned = _alignment_summary(r)
        if aligned:
            text.append(f"\nalignment: {aligned}", style="dim")
        target_only = r.meta.get("target_only") or []
        if target_only:
            text.append(f"\ntarget-only (device-internal, not compared): {len(target_only)}", style="dim")
        yield Panel(text, title="summary", title_align="left", border_style="red" if r.failed else "green")


class DetectionPanel:
    """One line per detector head: boxes kept by each side, matched, lost and extra (netdiff.detection)."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from netdiff.detection import summary_line

        entries = [e for e in self.report.meta.get("detection") or [] if isinstance(e, dict)]
        if not entries:
            return
        text = Text("\n".join(summary_line(e) for e in entries))
        bad = any(e.get("compared") and (e.get("lost") or e.get("extra")) for e in entries)
        yield Panel(text, title="detections", title_align="left", border_style="red" if bad else "green")


class ReportView:
    """The whole terminal report."""

    def __init__(self, report: Report, show_all: bool = False) -> None:
        self.report = report
        self.show_all = show_all

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r = self.report
        header = Table.grid(padding=(0, 1))  # wrapped values stay indented under their value
        header.add_column(no_wrap=True)
        header.add_column(overflow="fold")
        header.add_row(Text("reference", style="bold"), Text(_describe(r.reference)))
        header.add_row(Text("target", style="bold"), Text(_describe(r.target)))
        if r.inputs:
            header.add_row(Text("inputs", style="dim"),
                           Text(", ".join(f"{k}={v}" for k, v in r.inputs.items()), style="dim"))
        extra = {k: v for k, v in r.meta.items() if k.startswith("target.") and v not in (None, "", [], {}, ())}
        if extra.get("target.dumped_from") == extra.get("target.model"):  # netdiff dump: said once, as model=
            extra.pop("target.dumped_from", None)
        if extra:
            header.add_row("", Text(", ".join(f"{k[7:]}={_meta_value(v)}" for k, v in extra.items()), style="dim"))
        yield header
        indices = None if self.show_all else select_layers(r)
        yield Group(LayerTable(r, indices))
        yield FindingsPanel(r)
        yield DetectionPanel(r)
        yield SummaryPanel(r)


def render_text(report: Report, width: int = 120, show_all: bool = False, color: bool = False) -> str:
    """Render the terminal report to a string (for tests, logs and assertion messages)."""
    import io

    console = Console(file=io.StringIO(), width=width, color_system="standard" if color else None,
                      force_terminal=color, legacy_windows=False, markup=False)
    console.print(ReportView(report, show_all=show_all))
    return console.file.getvalue()


def _alignment_summary(report: Report) -> str:
    methods: dict[str, int] = {}
    layouts: dict[str, int] = {}
    for layer in report.layers:
        if layer.match is None or layer.metrics is None:
            continue
        methods[layer.match.method] = methods.get(layer.match.method, 0) + 1
        t = layer.match.transform
        if t is not None and t.description != "none":
            key = t.description if t.permutation else "reshape"
            layouts[key] = layouts.get(key, 0) + 1
    parts = [f"{n} by {m} name" if m in ("exact", "normalized") else f"{n} by {m}" for m, n in methods.items()]
    parts += [f"{n} {k}" for k, n in layouts.items()]
    return ", ".join(parts)


def _describe(side: dict) -> str:
    path = side.get("path", "?")
    fmt = side.get("format", "")
    return f"{path} [{fmt}]" if fmt else str(path)


def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if math.isinf(value) or abs(value) >= 1e300:
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** -digits):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def _meta_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _nan_low(value: float) -> float:
    return -2.0 if math.isnan(value) else value
