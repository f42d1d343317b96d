"""The last rule: a diverged report never ends without a finding.

When the target diverges and no rule named a cause (nor found the error accumulated), say so
explicitly, with the measured facts — where the divergence starts, how it grows towards the
outputs, what the isolated re-runs measured — and what to try next.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult

#: Kinds that account for a divergence even when they are about no diverged layer.
_ACCOUNTS = {"accumulated_error", "dataset_dependent", "unexplained_divergence"}
#: Origins described in the evidence.
MAX_ORIGINS = 5


def accounted(context: Context) -> bool:
    """True when a finding so far names a cause for a diverged layer (or the error accumulated)."""
    bad = {x.name for x in context.report.layers if x.status == "diverged"}
    bad |= set(context.reference.graph_inputs) | context.explained  # an input seen through its consumer
    return any(f.kind in _ACCOUNTS or (f.severity != "info" and (f.layer in bad or f.layer is None))
               for f in context.findings)


def unaccounted_origins(context: Context) -> list[str]:
    """Origins no finding is about and no rule claimed (all of them once the error is found accumulated)."""
    if any(f.kind in _ACCOUNTS for f in context.findings):
        return []
    about = {f.layer for f in context.findings if f.severity != "info"}
    by_name = {x.name: x for x in context.report.layers}
    return [n for n in context.report.origins if n not in about and n not in context.explained
            and n not in context.reference.graph_inputs and n in by_name and not _right_alone(context, by_name[n])]


def _right_alone(context: Context, layer: LayerResult) -> bool:
    """True when the layer's isolated re-run is within the thresholds or the precision's noise (it accumulated)."""
    from netdiff.diagnosis._common import isolated_wrong

    iso = layer.extra.get("isolated") if layer.extra else None
    has_run = isinstance(iso, dict) and iso.get("cosine") is not None
    return has_run and not isolated_wrong(context, layer)


@register_rule("unexplained")
def unexplained(context: Context) -> Iterator[Finding]:
    """unexplained_divergence when the report diverged and no finding accounts for it, or for some origin."""
    if not context.report.diverged:
        return
    left = unaccounted_origins(context)
    if left or not accounted(context):
        yield unexplained_finding(context, left)


def unexplained_finding(context: Context, left: list[str] | None = None) -> Finding:
    """The facts of a divergence no rule explained (at the origins ``left``, else the first divergence), and
    what to try next."""
    report = context.report
    by_name = {x.name: x for x in report.layers}
    names = [n for n in (left or report.origins) if n in by_name]
    first = (by_name[names[0]] if names else by_name.get(report.first_divergence or "")
             or next(x for x in report.layers if x.status == "diverged"))
    origins = [by_name[n] for n in names][:MAX_ORIGINS]
    diverged = [x for x in report.layers if x.status == "diverged"]
    compared = [x for x in report.layers if x.metrics is not None]
    outputs = [by_name[n] for n in report.meta.get("graph_outputs", []) or context.reference.graph_outputs
               if n in by_name and by_name[n].metrics is not None]
    evidence = {
        "first_divergence": report.first_divergence, "at": first.name,
        "cosine": _r(first.metrics.cosine if first.metrics else None),
        "origins": [_facts(x) for x in origins],
        "diverged_layers": len(diverged), "compared_layers": len(compared),
        "growth": [[x.name, _r(x.metrics.rel_l2)] for x in compared if (x.order or 0) >= (first.order or 0)][:12],
        "outputs": {x.name: _r(x.metrics.cosine) for x in outputs},
    }
    measured = [x for x in origins if isinstance(x.extra.get("isolated"), dict)]
    if measured:
        isolated = ", ".join(f"{x.name} {_cos(x.extra['isolated'].get('cosine'))}" for x in measured)
        how = f"isolated re-runs on the target's own inputs reach cosine {isolated}"
    else:
        how = "no isolated re-run was possible (no reference model, or no tensor before it was dumped)"
    tries = []
    if not measured:
        tries.append(f"dump more tensors before {first.name} (the target's input and a few feature maps) so the "
                     "error can be localised and re-run")
    tries.append("re-run with --isolated all to measure every layer's own error")
    tries.append("check the target's input and preprocessing, and the converter's log for this layer")
    cos = evidence["cosine"]
    others = f" (also {', '.join(x.name for x in origins[1:])})" if len(origins) > 1 else ""
    message = (f"The target diverges at {first.name}{others} (cosine {_cos(cos)}; "
               f"{len(diverged)} of {len(compared)} compared tensors diverged) and no rule names a cause: {how}.")
    return Finding("unexplained_divergence", first.name, "warning", message, evidence, "; ".join(tries))


def _facts(layer: LayerResult) -> dict:
    m = layer.metrics
    iso = layer.extra.get("isolated") if layer.extra else None
    return {"layer": layer.name, "op_type": layer.op_type, "cosine": _r(m.cosine if m else None),
            "rel_l2": _r(m.rel_l2 if m else None), "error_gain": _r(layer.error_gain),
            "isolated_cosine": _r(iso.get("cosine")) if isinstance(iso, dict) else None}


def _cos(value) -> str:
    """A cosine with the terminal table's 5 decimals."""
    return "undefined" if value is None or math.isnan(float(value)) else f"{float(value):.5f}"


def _r(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.6g}")
