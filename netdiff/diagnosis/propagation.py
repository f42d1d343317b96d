"""Where the error comes from: introduced by a layer itself, or accumulated through the net.

Uses the isolated metrics (:mod:`netdiff.isolated`: the reference node re-run on the target's own
inputs, recomputed from the nearest dumped tensors when it has none) when present, else the error
gain (a layer's rel_l2 over its inputs' largest rel_l2). An isolated error within the precision's
noise (:func:`netdiff.diagnosis._common.isolated_noise`) is not an introduced error; an origin with no
compared tensor before it (only the outputs dumped) is not blamed on its layer (see
:mod:`netdiff.diagnosis.unexplained`). Only origins not already explained by a more specific rule
are looked at.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import introduction_points, isolated_noise, node_name, pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult

#: A layer whose error is at most this many times its inputs' counts as amplifying, not introducing.
MAX_ACCUMULATED_GAIN = 2.0
MAX_INTRODUCED = 5


@register_rule("propagation")
def propagation(context: Context) -> Iterator[Finding]:
    """introduced_error for origins that are wrong in isolation; accumulated_error when none is."""
    by_name = {x.name: x for x in context.report.layers}
    th = context.report.thresholds
    accumulated: list[LayerResult] = []
    within_noise: dict[str, dict] = {}
    introduced = 0
    for name in introduction_points(context):
        layer = by_name.get(name)
        if layer is None or layer.metrics is None or name in context.explained:
            continue
        if not layer.introduced:  # a second introduction point: wrong in isolation by construction
            if introduced >= MAX_INTRODUCED:
                continue
            evidence = _isolated_evidence(layer)
            evidence["after_origins"] = _diverged_upstream(layer, by_name)
            yield _introduced(context, layer, evidence, isolated=True)
            introduced += 1
            continue
        if _unchanged(context, layer):
            continue  # identical on both sides (a constant): nothing was introduced here
        iso = layer.extra.get("isolated")
        m = layer.metrics
        evidence = {"cosine": _r(m.cosine), "rel_l2": _r(m.rel_l2), "error_gain": _r(layer.error_gain)}
        if isinstance(iso, dict) and iso.get("cosine") is not None:
            iso_cos, iso_rel = iso.get("cosine"), iso.get("rel_l2")
            evidence = _isolated_evidence(layer)
            iso_ok = iso_cos >= th.cosine and (iso_rel is None or iso_rel <= th.rel_l2)
            noise = None if iso_ok else isolated_noise(context, layer, iso_cos, iso_rel)
            if noise is not None:
                within_noise[name] = {"isolated_cosine": float(f"{iso_cos:.9g}"), **noise}
                iso_ok = True
            if not iso_ok:
                yield _introduced(context, layer, evidence, isolated=True)
                introduced += 1
            else:
                accumulated.append(layer)
            continue
        gain = layer.error_gain
        upstream = m.rel_l2 / gain if gain and math.isfinite(gain) and gain > 0 else 0.0
        if gain is not None and gain <= MAX_ACCUMULATED_GAIN and upstream >= 0.2 * th.rel_l2:
            accumulated.append(layer)
        elif introduced < MAX_INTRODUCED and _compared_upstream(layer, by_name):
            yield _introduced(context, layer, evidence, isolated=False)
            introduced += 1
    if accumulated and not introduced:
        yield _accumulated(context, accumulated, within_noise)


def _isolated_evidence(layer: LayerResult) -> dict:
    """The measured facts of a layer with an isolated re-run: its metrics, the isolated ones, where its inputs came from."""
    m, iso = layer.metrics, layer.extra["isolated"]
    evidence = {"cosine": _r(m.cosine), "rel_l2": _r(m.rel_l2), "error_gain": _r(layer.error_gain),
                "isolated_cosine": _r(iso.get("cosine")), "isolated_rel_l2": _r(iso.get("rel_l2"))}
    used = layer.extra.get("isolated_inputs") or {}
    if used.get("reference"):
        evidence["inputs_from_reference"] = list(used["reference"])
    if used.get("recomputed"):
        evidence["recomputed_from"] = sorted({t for names in used["recomputed"].values() for t in names})
    if layer.extra.get("isolated_through"):  # the target holds the layer's fused activation
        evidence["isolated_through"] = layer.extra["isolated_through"]
    return evidence


def _diverged_upstream(layer: LayerResult, by_name: dict[str, LayerResult]) -> list[str]:
    """The nearest compared tensors before ``layer`` that diverge (the error it inherits besides its own)."""
    return [u.name for u in _compared_upstream(layer, by_name) if u.status == "diverged"]


def _unchanged(context: Context, layer: LayerResult) -> bool:
    """True when the target holds exactly the reference's values (NaN and Inf in the same places)."""
    pair = context.cached_pair(layer)
    return pair is not None and pair[0].shape == pair[1].shape and bool(np.array_equal(*pair, equal_nan=True))


def _compared_upstream(layer: LayerResult, by_name: dict[str, LayerResult]) -> list[LayerResult]:
    """The nearest compared tensors before ``layer`` (its inputs, or their compared ancestors)."""
    from netdiff.verdict import compared_ancestors

    return compared_ancestors(layer.inputs, by_name)


def _introduced(context: Context, layer: LayerResult, evidence: dict, isolated: bool) -> Finding:
    context.claim(layer.name)
    op = layer.op_type or "layer"
    named = f"{layer.name} ({layer.op_type})" if layer.op_type else layer.name  # dumps may not know the op
    by_name = {x.name: x for x in context.report.layers}
    again = ""
    if evidence.get("after_origins"):
        again = (f" This is a second introduction point: its inputs already diverge "
                 f"({', '.join(evidence['after_origins'])}), but that does not explain its own error.")
    if isolated and evidence.get("recomputed_from"):
        start = ", ".join(evidence["recomputed_from"])
        message = (f"{named} or the ops just before it are wrong: its inputs were not dumped, so the "
                   f"reference was re-run from {start} (the nearest tensors the target dumped) and reaches only "
                   f"cosine {_cos(evidence['isolated_cosine'])} against the target's output.")
    elif isolated:
        message = (f"{named} is wrong by itself: re-run on the target's own inputs, the reference op "
                   f"reaches only cosine {_cos(evidence['isolated_cosine'])} against the target's output.")
    else:
        upstream = _compared_upstream(layer, by_name)
        direct = {u.name for u in upstream} == {n for n in layer.inputs if n in by_name}
        where = (f"its inputs match the reference" if direct else
                 f"the nearest tensors dumped before it ({', '.join(u.name for u in upstream)}) match the reference, "
                 "the ones in between were not dumped")
        evidence["upstream_compared"] = [u.name for u in upstream]
        message = (f"{named} introduces the error: {where}, but its output does not "
                   f"({_describe_error(evidence)}{gain_phrase(evidence.get('error_gain'))}).")
    message += again
    if isolated and evidence.get("inputs_from_reference"):
        message += (f" The target did not dump {', '.join(evidence['inputs_from_reference'])}: the reference's value "
                    "stood in.")
    fix = pick(context,
               nnie=f"if this is quantization error, run {layer.name} in 16 bits ([compile_mode] 2 with the layer "
                    "name ending in _hp); otherwise check how the mapper supports this layer's parameters",
               ascend=f"keep {op} in fp32 to test precision (--modify_mixlist / --precision_mode=must_keep_origin_dtype); "
                      "otherwise check the op's attributes after conversion (atc --mode=1 JSON)",
               onnxruntime=f"exclude the node from quantization (nodes_to_exclude=['{node_name(layer)}']) or quantize its "
                           "weights per channel (per_channel=True)",
               generic=f"check the converted {op}: its weights, attributes and precision (keep it in higher precision "
                       "to confirm)")
    return Finding("introduced_error", layer.name, "error", message, evidence, fix)


def _describe_error(evidence: dict) -> str:
    if evidence.get("cosine") is not None:
        return f"cosine {_cos(evidence['cosine'])}"
    return f"rel_l2 {evidence['rel_l2']:.4f}" if evidence.get("rel_l2") is not None else "no finite cosine"


def _cos(value) -> str:
    """A cosine with the terminal table's 5 decimals (the evidence keeps 6 significant digits)."""
    return f"{value:.5f}" if value is not None else "undefined"


def _accumulated(context: Context, layers: list[LayerResult], within_noise: dict[str, dict]) -> Finding:
    first = layers[0]
    for layer in layers:
        context.claim(layer.name)
    compared = [x for x in context.report.layers if x.metrics is not None and not math.isnan(x.metrics.rel_l2)]
    trail = [[x.name, _r(x.metrics.rel_l2)] for x in compared if (x.order or 0) <= (first.order or 0)][-8:]
    evidence = {"origins": [x.name for x in layers], "rel_l2_trail": trail, "error_gain": _r(first.error_gain),
                "isolated_cosine": _r((first.extra.get("isolated") or {}).get("cosine"))}
    noise = ""
    if within_noise:
        evidence["isolated_within_noise"] = within_noise
        noise = (f" ({', '.join(within_noise)}: the isolated error is beyond the thresholds but within the "
                 "precision's noise, so not an error of the layer itself)")
    return Finding(
        "accumulated_error", first.name, "info",
        f"No single layer is broken: each layer is right on the target's own inputs{noise}, and small errors add up "
        f"until {first.name} crosses the threshold.",
        evidence,
        pick(context,
             nnie="raise precision for the whole net ([compile_mode] 1) or for its most sensitive layers "
                  "([compile_mode] 2, names ending in _hp); calibrate with more representative images",
             ascend="use a higher precision mode (--precision_mode=allow_fp32_to_fp16 or must_keep_origin_dtype) "
                    "or accept a looser threshold",
             onnxruntime="quantize per channel, calibrate with more data, or keep activations in 16 bits",
             generic="raise the target's precision globally or accept a looser threshold: no layer is individually wrong"))


def _r(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.6g}")


def gain_phrase(gain: float | None) -> str:
    """``, error gain 12.3``; from inputs equal to the reference's the gain is unbounded: said so."""
    if gain is None:
        return ""
    if math.isinf(gain):
        return ", error gain ∞: its inputs are exact"
    return f", error gain {gain:.1f}"
