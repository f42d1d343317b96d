"""Assertions for test suites and CI: fail with a readable table of the diverging layers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from netdiff.types import LayerResult, Report, Thresholds


class NetdiffAssertionError(AssertionError):
    """Raised by :func:`assert_close`; carries the report."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


def assert_close(reference: Any, target: Any, inputs: Any = None, *, min_cosine: float = 0.99,
                 max_rel_l2: float = 0.05, layers: Iterable[str] | None = None,
                 allow_missing: bool = True, **options: Any) -> Report:
    """Compare and raise an AssertionError listing the failing layers when any layer diverges.

    Args:
        reference: As for :func:`netdiff.compare`.
        target: As for :func:`netdiff.compare`.
        inputs: As for :func:`netdiff.compare`.
        min_cosine: A layer fails below this cosine.
        max_rel_l2: A layer fails above this rel_l2.
        layers: Only check these reference tensor names (default: every compared layer).
        allow_missing: When False, tensors missing on either side also fail.
        **options: Passed to :func:`netdiff.compare`.

    Returns:
        The report, when the assertion holds.
    """
    __tracebackhide__ = True  # pytest: the failure points at the caller's line
    from netdiff.pipeline import compare

    report = compare(reference, target, inputs, thresholds=Thresholds(min_cosine, max_rel_l2), **options)
    check_report(report, layers=layers, allow_missing=allow_missing)
    return report


def check_report(report: Report, layers: Iterable[str] | None = None, allow_missing: bool = True) -> None:
    """Raise :class:`NetdiffAssertionError` when ``report`` has failing layers or compared nothing."""
    __tracebackhide__ = True
    wanted = set(layers) if layers is not None else None
    if wanted is not None:
        known = {x.name for x in report.layers}
        unknown = sorted(wanted - known)
        if unknown:
            raise NetdiffAssertionError(f"netdiff: layer(s) not in the report: {', '.join(unknown[:10])}", report)
    bad_status = {"diverged", "error", "shape_mismatch"}
    if not allow_missing:
        bad_status |= {"missing_in_target", "missing_in_reference"}
    failing = [x for x in report.layers if x.status in bad_status and (wanted is None or x.name in wanted)]
    if failing:
        raise NetdiffAssertionError(failure_message(report, failing), report)
    if not any(x.metrics is not None and (wanted is None or x.name in wanted) for x in report.layers):
        reason = report.verdict_reason() if report.nothing_compared else (
            f"nothing compared: none of the requested layer(s) {', '.join(sorted(wanted)[:5])} was aligned")
        raise NetdiffAssertionError(f"netdiff: {reason}", report)


def failure_message(report: Report, failing: list[LayerResult], limit: int = 20) -> str:
    """First line names the first diverging layer and metric; then a table of failing layers."""
    first = report.layer(report.first_divergence) if report.first_divergence else failing[0]
    lines = [f"netdiff: {len(failing)} layer(s) failed; first divergence {first.name} ({first.op_type or '?'}): "
             f"{_metric_phrase(first, report.thresholds)}"]
    width = min(60, max(len(x.name) for x in failing[:limit]))
    lines.append(f"  {'layer':<{width}}  {'status':<18} {'cosine':>9} {'rel_l2':>9} {'max_abs':>10}")
    for x in failing[:limit]:
        m = x.metrics
        cells = (f"{_f(m.cosine, 5):>9} {_f(m.rel_l2, 4):>9} {_f(m.max_abs, 4):>10}" if m is not None
                 else x.reason[:40])
        marker = "*" if x.introduced else " "
        lines.append(f"{marker} {x.name[:width]:<{width}}  {x.status:<18} {cells}")
    if len(failing) > limit:
        lines.append(f"  ... {len(failing) - limit} more")
    if report.findings:
        top = report.findings[0]
        lines.append(f"likely cause: {top.kind} at {top.layer}: {top.message}")
        if top.suggestion:
            lines.append(f"fix: {top.suggestion}")
    return "\n".join(lines)


def _metric_phrase(layer: LayerResult, th: Thresholds) -> str:
    m = layer.metrics
    if m is None:
        return f"{layer.status} ({layer.reason})"
    if not m.cosine >= th.cosine:
        return f"cosine {_f(m.cosine, 5)} < {th.cosine}"
    return f"rel_l2 {_f(m.rel_l2, 4)} > {th.rel_l2}"


def _f(v: float, digits: int) -> str:
    return "nan" if v is None or math.isnan(v) else f"{v:.{digits}f}"
