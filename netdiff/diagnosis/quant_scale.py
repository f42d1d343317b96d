"""A quantized target model's own scale is far coarser than the tensor's range needs.

The target model (QDQ / QOperator) holds its weight and activation scales
(:attr:`Precision.weight_steps`, :attr:`Precision.activation_steps`). For an origin, the step
a max-abs quantizer would take from the reference's own values (weights: ``max|w| / (2**(bits-1)-1)``
per channel or per tensor; activations: ``(max - min) / (2**bits - 1)`` on this input) is compared
with the model's: a weight step 4x coarser (activation: 8x, calibration data may be wider than one
input) names the quantization as the cause.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult, Precision

#: A weight step this many times the step the weights' own range needs is a broken scale.
WEIGHT_RATIO = 4.0
#: An activation step this many times the step this input's range needs (calibration data varies more).
ACTIVATION_RATIO = 8.0


@register_rule("quantization-scale")
def quantization_scale(context: Context) -> Iterator[Finding]:
    """Name an origin whose weight or activation scale in the target model is far too coarse."""
    precision = context.options.get("precision")
    if not isinstance(precision, Precision) or not (precision.weight_steps or precision.activation_steps):
        return
    from netdiff.noise import layer_weights

    weights = layer_weights(context.model) if context.model is not None else {}
    for name in context.report.origins:
        layer = context.report.layer(name)
        if name in context.explained or layer.status != "diverged":
            continue
        found = _weight_evidence(layer, precision, weights) or _activation_evidence(context, layer, precision)
        if found is None:
            continue
        context.claim(name)
        what = "weights" if "weights" in found else "output"
        yield Finding(
            "quantization_scale", name, "error",
            f"{name}: the target model quantizes its {what} with a step {found['ratio']:.1f}x coarser than "
            f"{'their' if what == 'weights' else 'its'} range needs ({found['model_step']:.4g} vs "
            f"{found['needed_step']:.4g}); this layer's error (rel_l2 {layer.metrics.rel_l2:.3g}) is "
            f"{found['noise_ratio']:.1f}x what {precision.kind} costs here.",
            found,
            pick(context,
                 onnxruntime="re-run the quantizer (quantize_static) on the float model: this scale does not come "
                             "from the tensor's range; check any script that edits the QDQ/QOperator model",
                 generic="requantize this tensor with a scale taken from its own range (max|w| / 127 for int8 "
                         "weights, calibrated min/max for activations)"))


def _weight_evidence(layer: LayerResult, precision: Precision, weights: dict) -> dict | None:
    node = str(layer.extra.get("node") or "")
    steps = precision.weight_steps.get(node)
    if not steps or node not in weights:
        return None
    w, axis = weights[node]
    levels = 2.0 ** ((precision.weight_bits or 8) - 1) - 1
    model = np.asarray(steps, dtype=np.float64)
    if model.size > 1 and w.ndim > axis and w.shape[axis] == model.size:
        needed = np.abs(np.moveaxis(w, axis, 0).reshape(model.size, -1)).max(axis=1) / levels
    else:
        needed = np.full(model.shape, float(np.abs(w).max()) / levels)
    keep = needed > 0
    if not keep.any():
        return None
    ratios = model[keep] / needed[keep]
    worst = int(np.argmax(ratios))
    if ratios[worst] < WEIGHT_RATIO:
        return None
    return {"weights": node, "ratio": float(ratios[worst]), "model_step": float(model[keep][worst]),
            "needed_step": float(needed[keep][worst]), "channels": int(ratios.size),
            "channels_too_coarse": int(np.sum(ratios >= WEIGHT_RATIO)), "noise_ratio": _noise_ratio(layer)}


def _activation_evidence(context: Context, layer: LayerResult, precision: Precision) -> dict | None:
    step = precision.activation_steps.get(layer.target_name or "") or precision.activation_steps.get(layer.name)
    if not step or layer.metrics is None:
        return None
    span = layer.metrics.ref_max - layer.metrics.ref_min
    needed = span / (2.0 ** (precision.activation_bits or 8) - 1)
    if not needed > 0 or step / needed < ACTIVATION_RATIO:
        return None
    return {"tensor": layer.target_name or layer.name, "ratio": step / needed, "model_step": step,
            "needed_step": needed, "noise_ratio": _noise_ratio(layer)}


def _noise_ratio(layer: LayerResult) -> float:
    if layer.metrics is None or not layer.expected_rel_l2:
        return float("nan")
    return layer.metrics.rel_l2 / layer.expected_rel_l2
