"""Multi-sample rule: the divergence appears only for some of the samples compared."""

from __future__ import annotations

from collections.abc import Iterator

from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, Report


#: The divergence is called data dependent only when at most this share of the samples diverge: when
#: most of them do, the fault is in the conversion and the few clean samples are the exception.
MAX_DIVERGING_SHARE = 0.5


def dataset_dependent_finding(report: Report) -> Finding | None:
    """A finding when ``report.meta["samples"]`` shows a minority of the samples diverging (at most
    :data:`MAX_DIVERGING_SHARE` of them, at least one) and the others clean."""
    samples = report.meta.get("samples")
    if not isinstance(samples, list) or len(samples) < 2:
        return None
    bad = [s for s in samples if s.get("first_divergence")]
    if not bad or len(bad) > MAX_DIVERGING_SHARE * len(samples):
        return None
    good = [s["id"] for s in samples if not s.get("first_divergence")]
    where = sorted({s["first_divergence"] for s in bad})
    return Finding(
        "dataset_dependent", where[0] if len(where) == 1 else None, "warning",
        f"The target diverges on {len(bad)} of {len(samples)} samples only: the fault depends on the data "
        f"(ranges reached only by some inputs).",
        {"diverging_samples": [s["id"] for s in bad], "clean_samples": good, "first_divergences": where},
        "look at what the diverging samples have in common (brightness, size, content); calibrate the target's "
        "quantization with samples like them, and add them to your test set")


@register_rule("dataset-dependent")
def dataset_dependent(context: Context) -> Iterator[Finding]:
    """Report data-dependent divergence on multi-sample reports."""
    finding = dataset_dependent_finding(context.report)
    if finding is not None:
        yield finding
