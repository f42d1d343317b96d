"""Output quantization saturation: a quantized tensor's calibrated range is narrower than its values.

A quantized model stores each activation as integers with a scale and zero point fixed at
calibration: values beyond ``[(qmin - zp)·s, (qmax - zp)·s]`` are clipped. An input wider than the
calibration data pushes some layer's output past that range, and the layer then looks wrong by
itself (its re-run on the target's own inputs does not match). The converted-model adapter records
each quantized tensor's parameters (``meta["output_quantization"]``, netdiff/converted.py); this
rule names the clip only when it is what the target computed: quantizing the reference op's re-run
on the target's inputs (or the reference itself) to that tensor's grid, *with* the clip, reproduces
the target within the thresholds or the precision's noise, and the same rounding *without* the clip
does not. A layer the clip does not reproduce (a wrong weight, a bad kernel) is left to the
generic rules (``introduced_error``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import candidates, isolated_noise, looks_fused, node_name, pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.metrics import compute_metrics
from netdiff.types import Finding, LayerResult
from netdiff.verdict import ACCEPTED, status_of

#: The clip must leave at most this share of the rel_l2 the unclipped rounding leaves (it explains the error).
EXPLAINS = 0.5


@register_rule("output-quantization")
def output_saturation(context: Context) -> Iterator[Finding]:
    """A diverged introduction point whose target is its value clipped to the tensor's quantized range."""
    inputs = set(context.reference.graph_inputs)
    for layer in candidates(context):
        if layer.name in inputs or layer.name in context.explained or layer.target_name not in context.target:
            continue
        quant = dict(context.target[layer.target_name].meta or {}).get("output_quantization")
        if not isinstance(quant, dict):
            continue
        found = clip_fit(context, layer, quant)
        if found is None:
            continue
        context.claim(layer.name)
        lo, hi = found["quantized_range"]
        rlo, rhi = found["value_range"]
        op = (layer.op_type or "op") + ("+Relu" if found.get("fused_relu") else "")
        fit, value = found["clipped"], _WHAT[found["fitted_on"]].format(op=op)
        yield Finding(
            "quantization_saturation", layer.name, "error",
            f"{layer.name} is clipped by the target model's quantization of this tensor to its calibrated range "
            f"[{lo:.4g}, {hi:.4g}] ({found['type']}, scale {found['scale']:.4g}, zero point {found['zero_point']}): "
            f"{found['saturated_count']} of its {found['elements']} values ({found['saturated_fraction']:.2%}) lie "
            f"outside ({value} spans [{rlo:.4g}, {rhi:.4g}]). Quantizing {value} to that range reproduces the "
            f"target (cosine {fit['cosine']:.5f}, rel_l2 {fit['rel_l2']:.4f}); the same rounding without the clip "
            f"reaches only cosine {found['unclipped']['cosine']:.5f} (rel_l2 {found['unclipped']['rel_l2']:.4f}).",
            found,
            pick(context,
                 onnxruntime="calibrate on data representative of the inputs the model gets (covering their range), "
                             "or widen this tensor's range (extra_options TensorQuantOverrides "
                             f"{{{found['quantized_tensor_of']!r}: [{{'rmin': np.float32({min(rlo, lo):.4g}), "
                             f"'rmax': np.float32({max(rhi, hi):.4g})}}]}}; onnxruntime wants numpy floats there), "
                             "or exclude the node from quantization "
                             f"(nodes_to_exclude=['{node_name(layer)}'])",
                 generic="calibrate on data representative of the inputs the model gets, or widen this tensor's "
                         "quantization range to cover its values"))


#: How the message names the value the clip was fitted on (evidence ``fitted_on``).
_WHAT = {"isolated": "the reference {op} re-run on the target's own inputs", "reference": "the reference"}


def clip_fit(context: Context, layer: LayerResult, quant: dict) -> dict | None:
    """Evidence that ``layer``'s target is a value quantized with the clip to ``quant["range"]``, or None.

    The value is the reference op re-run on the target's own inputs when it can be (it carries no
    inherited error), else the reference tensor. Both the clipped and the unclipped quantization are
    measured against the target: the clipped one must be accepted (thresholds or the precision's
    noise), the unclipped one beyond the thresholds, and the clip must remove at least
    :data:`EXPLAINS` of its rel_l2.
    """
    try:
        lo, hi = (float(v) for v in quant["range"])
        scale, zero = float(quant["scale"]), int(quant["zero_point"])
        info = np.iinfo(np.dtype(str(quant["type"])))
    except (KeyError, TypeError, ValueError):
        return None
    if not (scale > 0 and math.isfinite(scale) and lo < hi):
        return None
    relu = _fused_relu(context, layer)
    if relu is False:
        return None
    for fitted_on, value, target in _values(context, layer, relu):
        if value.shape != target.shape or value.size == 0:
            continue
        finite = np.isfinite(value)
        if not finite.all() or not np.isfinite(target).all():
            continue
        outside = (value < lo - scale / 2) | (value > hi + scale / 2)  # beyond rounding to the last level
        if not outside.any():
            continue
        levels = np.rint(value / scale) + zero
        clipped = ((np.clip(levels, info.min, info.max) - zero) * scale).astype(np.float32)
        unclipped = ((levels - zero) * scale).astype(np.float32)
        after, before = compute_metrics(clipped, target), compute_metrics(unclipped, target)
        explained = (_reproduces(context, layer, after) and not context.report.thresholds.passes(before)
                     and after.rel_l2 <= EXPLAINS * before.rel_l2)
        if not explained:
            return None  # the first value that can be fitted decides: a failed re-run fit is not retried
        return {"fitted_on": fitted_on, "quantized_tensor_of": _float_name(quant, layer.name), "quantized_range": [lo, hi],
                "scale": scale, "zero_point": zero, "type": str(quant["type"]),
                "saturated_fraction": float(np.mean(outside)), "saturated_count": int(outside.sum()),
                "elements": int(value.size), "below_fraction": float(np.mean(value < lo - scale / 2)),
                "above_fraction": float(np.mean(value > hi + scale / 2)),
                "value_range": [float(value.min()), float(value.max())],
                "clipped": _scores(after), "unclipped": _scores(before),
                "target_range": [float(target.min()), float(target.max())],
                **({"fused_relu": relu} if relu else {})}
    return None


def _float_name(quant: dict, default: str) -> str:
    """The float tensor the quantizer quantized (the key of its TensorQuantOverrides)."""
    held = str(quant.get("quantized") or "")
    for suffix in ("_QuantizeLinear_Output", "_quantized"):
        if held.endswith(suffix):
            return held[: -len(suffix)]
    return default


def _values(context: Context, layer: LayerResult, relu: str | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """("isolated", the reference op re-run on the target's inputs, target), then ("reference", ...).

    A target holding the layer's fused Relu (QOperator's QLinearConv+Relu) is fitted on the Relu of
    those values (``relu``: the reference's Relu tensor), so the Relu's clip at 0 is not counted as
    saturation (another fused activation is not fitted at all, :func:`_fused_relu`).
    """
    rerun = _rerun(context, layer)
    if rerun is not None:
        yield "isolated", (np.maximum(rerun[0], 0) if relu else rerun[0]), rerun[1]
    pair = context.cached_pair(layer)
    if pair is not None:
        if relu:
            yield "reference", np.asarray(context.reference[relu].load(), dtype=np.float64), pair[1]
        else:
            yield "reference", pair[0], pair[1]


def _fused_relu(context: Context, layer: LayerResult) -> str | None | bool:
    """The reference Relu tensor a layer's target holds fused (re-aligned by the fused-activation check, or
    no negative target value where the reference has some and a Relu reads the layer); None when the target
    holds the layer itself; False when it holds another activation (not fitted)."""
    info = layer.extra.get("fused_activation") if layer.extra else None
    if isinstance(info, dict):
        act = info.get("measured_against")
        return act if info.get("activation") == "Relu" and act in context.reference else False
    if not looks_fused(layer):
        return None
    relus = [x.name for x in context.report.layers
             if layer.name in x.inputs and x.op_type == "Relu" and x.name in context.reference]
    return relus[0] if relus else False


def _rerun(context: Context, layer: LayerResult) -> tuple[np.ndarray, np.ndarray] | None:
    if context.model is None:
        return None
    from netdiff.isolated import NodeIndex, node_feeds, rerun_output

    if "node_index" not in context._memo:
        context._memo["node_index"] = NodeIndex(context.model)
    by_name = {x.name: x for x in context.report.layers}
    prepared = node_feeds(context._memo["node_index"], layer, by_name, context.reference, context.target)
    if prepared is None:
        return None
    runner, feeds, _, target_out = prepared
    out = rerun_output(runner, feeds, layer.name)
    if out is None or out.shape != target_out.shape:
        return None
    return np.asarray(out, dtype=np.float64), np.asarray(target_out, dtype=np.float64)


def _reproduces(context: Context, layer: LayerResult, metrics) -> bool:
    """Within the thresholds, the precision's expected noise, or any precision's noise."""
    if status_of(context.report.thresholds, metrics, layer.expected_rel_l2) in ACCEPTED:
        return True
    return isolated_noise(context, layer, metrics.cosine, metrics.rel_l2) is not None


def _scores(metrics) -> dict:
    return {"cosine": _r(metrics.cosine), "rel_l2": _r(metrics.rel_l2), "max_abs": _r(metrics.max_abs)}


def _r(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.6g}")
