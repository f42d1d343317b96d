"""The expected-noise model: how much error a target's precision costs at each layer.

Each layer gets an *expected rel_l2* (``LayerResult.expected_rel_l2``): the noise its own rounding
adds, relative to the reference signal, accumulated with the noise its inputs carry (fresh white
rounding noise through a weighted layer's white-noise gain, older noise through its signal gain). The model is deliberately computed from the *precision*
and the *reference's* own values, never from the target's scales: a target whose scale is broken
(16x too coarse) must not excuse its own error. The formulas (docs/converted-models.md):

* uniform integer (int8, uint8, int16, int4 — QDQ, QOperator, onnxruntime int8, device int8):
  the step a well-calibrated quantizer would use, ``(max - min) / (2**bits - 1)`` over this
  tensor's reference values, gives noise ``step / sqrt(12)`` against the signal's rms; a weighted
  layer (Conv, Gemm, MatMul) adds its weights' ``max|w| / (2**(bits-1) - 1)`` steps (per channel
  when the target quantizes per channel) against their rms.
* float (fp16, bf16): unit roundoff ``u`` (2**-11, 2**-8) per rounding (the rms of one rounding is
  ``u / sqrt(3)``; the margin covers the kernels' reductions), and the weights' rounding.
* NNIE log format (nnie8, nnie16): L steps per octave round with relative rms ``ln 2 / (L sqrt 12)``
  at every quantized input and weight, plus the Q20.12 output rounding.

Ops that only move or select values (Reshape, MaxPool, Relu, Concat, ...) add no noise of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from netdiff._lazy import lazy_import
from netdiff.errors import NetdiffError
from netdiff.types import Dump, LayerResult, Precision

np = lazy_import("numpy")

#: ``--precision`` values: kind -> (family, bits).
PRECISIONS: dict[str, tuple[str, int]] = {
    "int8": ("uniform", 8), "uint8": ("uniform", 8), "int16": ("uniform", 16), "int4": ("uniform", 4),
    "fp16": ("float", 11), "bf16": ("float", 8), "nnie8": ("log", 16), "nnie16": ("log", 128),
    "fp32": ("float", 24),
}
#: Ops that move, select or clip values without computing new ones: no rounding noise of their own.
PASS_THROUGH = frozenset({
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "MaxPool", "Concat", "Split",
    "Slice", "Gather", "GatherElements", "GatherND", "Pad", "Relu", "Clip", "Dropout", "DepthToSpace",
    "SpaceToDepth", "Tile", "Expand", "Cast", "GlobalMaxPool", "ReduceMax", "ReduceMin", "TopK", "Max", "Min",
    "Shape", "Size", "ArgMax", "ArgMin", "NonZero", "Where", "Compress", "Upsample", "Relu6", "ReLU", "ReLU6",
})
#: Ops whose input 1 is a weight tensor, with the axis of its output channels.
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}
_Q12 = 1.0 / 4096.0


def precision_hint(kind: str) -> Precision:
    """A :class:`Precision` from a ``--precision`` value.

    Raises:
        NetdiffError: Unknown kind (the message lists the known ones).
    """
    key = kind.strip().lower()
    if key not in PRECISIONS:
        raise NetdiffError(f"unknown precision {kind!r}; known: {', '.join(PRECISIONS)}")
    family, bits = PRECISIONS[key]
    if family == "uniform":
        return Precision(key, "hint", activation_bits=bits, weight_bits=bits, per_channel=False)
    return Precision(key, "hint")


def assign_expected_noise(layers: list[LayerResult], reference: Dump, precision: Precision | None,
                          model: Any = None, weights: Mapping[str, tuple[Any, int]] | None = None,
                          stats: Mapping[str, tuple[float, float]] | None = None) -> None:
    """Set ``expected_rel_l2`` on every layer with a float reference tensor (nothing without a precision).

    Args:
        layers: Layer results in reference topological order.
        reference: The reference dump (values, op types, inputs).
        precision: The target's precision; nothing is set when None.
        model: The reference ONNX ModelProto (weights of weighted layers), or None.
        weights: The weights :func:`layer_weights` extracted from ``model`` (to reuse over samples).
        stats: (rms, max - min) over the finite values of float reference tensors already measured
            (a dataset run has them from the metrics kernel); the others are read from ``reference``.
    """
    if precision is None or precision.kind not in PRECISIONS:
        return
    if weights is None:
        weights = layer_weights(model) if model is not None else {}
    noise: dict[str, tuple[float, float]] = {}  # absolute (fresh, carried) noise rms per tensor
    rms: dict[str, float] = {}
    for layer in layers:
        if layer.status == "missing_in_reference" or layer.name not in reference:
            continue
        tensor = reference[layer.name]
        known = stats.get(layer.name) if stats else None
        if known is not None:
            value, (r, span) = None, known
        else:
            try:
                value = np.asarray(tensor.load())
            except Exception:  # unreadable: no estimate
                continue
            if value.dtype.kind != "f":
                noise[layer.name], rms[layer.name] = (0.0, 0.0), 0.0
                continue
            r, span = _rms(value), None
        rms[layer.name] = r
        node = str(tensor.meta.get("node")) if tensor.meta and tensor.meta.get("node") else None
        weight = weights.get(node) if node else None
        noise[layer.name] = fresh, carried = layer_noise(
            value, r, tensor.op_type, precision, weight,
            [(*noise.get(n, (0.0, 0.0)), rms.get(n, 0.0)) for n in tensor.inputs], span=span)
        total = math.hypot(fresh, carried)
        if r > 0 and math.isfinite(total):
            layer.expected_rel_l2 = total / r


def layer_noise(value: np.ndarray | None, rms: float, op_type: str | None, precision: Precision,
                weight: tuple[np.ndarray, int] | None, inputs: list[tuple[float, float, float]],
                span: float | None = None) -> tuple[float, float]:
    """Absolute noise rms of one layer's output as (fresh, carried).

    *Fresh* noise is this layer's own output rounding: white, independent element to element.
    *Carried* noise is everything older (the inputs' noise, the weights' rounding): it follows the
    signal through later layers. ``inputs`` holds (fresh, carried, signal rms) of each input, the
    data input first. ``span`` (max - min of the finite values) stands for ``value`` when given.
    """
    carried = _carried(rms, op_type, weight, inputs)
    if op_type in PASS_THROUGH or rms == 0.0 or not math.isfinite(rms):
        return carried
    family, bits = PRECISIONS[precision.kind]
    if family == "uniform":
        if span is None:
            finite = value[np.isfinite(value)]
            span = float(finite.max() - finite.min()) if finite.size else 0.0
        own = span / (2.0 ** (precision.activation_bits or bits) - 1) / math.sqrt(12.0)
        weight_rel = (weight_noise(*weight, precision.weight_bits or bits, precision.per_channel)
                      if weight is not None else 0.0)
    elif family == "float":  # u per rounding: the rms is u/sqrt(3); u also covers the kernels' reductions
        own = 2.0 ** -bits * rms
        weight_rel = 2.0 ** -bits
    else:  # log format: ``bits`` holds the steps per octave
        per_rounding = math.log(2.0) / (bits * math.sqrt(12.0))
        own = math.hypot(per_rounding * rms, _Q12 / math.sqrt(12.0))
        weight_rel = per_rounding
    fresh, older = carried
    if weight is not None and inputs:
        older = math.hypot(older, weight_rel * _weight_gain(*weight) * inputs[0][2])
    return math.hypot(fresh, own), older


def _carried(rms: float, op_type: str | None, weight: tuple[np.ndarray, int] | None,
             inputs: list[tuple[float, float, float]]) -> tuple[float, float]:
    """The inputs' noise at this layer's output, as (fresh, carried).

    A weighted layer carries its input's fresh (white) noise through its weights' white-noise gain
    and its older noise through its signal gain ``rms(out) / rms(in)``; both are carried noise after
    it. Add/Sub/Sum add the noise powers; every other op keeps its inputs' relative noise (the input
    with the most).
    """
    if not inputs:
        return 0.0, 0.0
    if weight is not None:
        fresh, older, signal = inputs[0]
        gain = rms / signal if signal > 0 else 0.0
        return 0.0, math.hypot(_weight_gain(*weight) * fresh, gain * older)
    if op_type in ("Add", "Sub", "Sum"):
        return (math.sqrt(sum(f * f for f, _, _ in inputs)), math.sqrt(sum(c * c for _, c, _ in inputs)))
    rel = [(math.hypot(f, c) / s, f / s, c / s) for f, c, s in inputs if s > 0]
    if not rel:
        return 0.0, 0.0
    _, f, c = max(rel)
    return f * rms, c * rms


#: Weight terms already computed, by (id of the weight array, arguments): a dataset run judges the
#: same weights on every sample. Each entry keeps its array, so an id is never reused while cached.
_WEIGHT_MEMO: dict[tuple, tuple[Any, float]] = {}


def _memo(w: Any, key: tuple, compute: Any) -> float:
    found = _WEIGHT_MEMO.get((id(w), *key))
    if found is not None and found[0] is w:
        return found[1]
    if len(_WEIGHT_MEMO) > 4096:
        _WEIGHT_MEMO.clear()
    value = compute()
    _WEIGHT_MEMO[(id(w), *key)] = (w, value)
    return value


def _weight_gain(w: np.ndarray, axis: int) -> float:
    """sqrt of the mean over output channels of the sum of squared weights (white-noise gain)."""
    return _memo(w, ("gain", axis), lambda: _weight_gain_of(w, axis))


def _weight_gain_of(w: np.ndarray, axis: int) -> float:
    w = np.asarray(w, dtype=np.float64)
    channels = w.shape[axis] if w.ndim > axis else 1
    return math.sqrt(float(np.sum(w * w)) / max(channels, 1))


def weight_noise(w: np.ndarray, axis: int, bits: int, per_channel: bool) -> float:
    """rel_l2 of symmetric ``bits``-bit max-abs quantization of ``w`` (per output channel or per tensor)."""
    return _memo(w, ("noise", axis, bits, per_channel), lambda: _weight_noise_of(w, axis, bits, per_channel))


def _weight_noise_of(w: np.ndarray, axis: int, bits: int, per_channel: bool) -> float:
    w = np.asarray(w, dtype=np.float64)
    power = float(np.sum(w * w))
    if power == 0.0 or w.size == 0:
        return 0.0
    levels = 2.0 ** (bits - 1) - 1
    if per_channel and w.ndim >= 2:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        steps = np.abs(moved).max(axis=1) / levels
        noise = float(np.sum(steps ** 2 * moved.shape[1])) / 12.0
    else:
        step = float(np.abs(w).max()) / levels
        noise = step * step * w.size / 12.0
    return math.sqrt(noise / power)


def _rms(value: np.ndarray) -> float:
    finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
    if finite.size == 0:
        return 0.0
    x = np.asarray(finite, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x)))


def layer_weights(model: Any) -> dict[str, tuple[np.ndarray, int]]:
    """Node name -> (float weight array, output-channel axis) for the weighted nodes of a model."""
    from onnx import numpy_helper

    from netdiff.runners.onnxrt import node_names

    inits = {i.name: i for i in model.graph.initializer}
    out: dict[str, tuple[np.ndarray, int]] = {}
    for node, name in zip(model.graph.node, node_names(model)):
        if node.op_type not in WEIGHT_AXIS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.dtype.kind != "f":
            continue
        axis = WEIGHT_AXIS[node.op_type]
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute):
            axis = 1
        out[name] = (w, axis)
    return out


def noise_summary(layers: Iterable[LayerResult]) -> dict[str, Any]:
    """The report's noise facts: how many layers are noisy, and the layer whose rel_l2 is the largest
    multiple of its expected noise (``worst_noise_ratio``, ``worst_noise_layer``)."""
    ratios = [(x.metrics.rel_l2 / x.expected_rel_l2, x.name) for x in layers
              if x.metrics is not None and x.expected_rel_l2 and math.isfinite(x.metrics.rel_l2)]
    worst = max(ratios, default=None)
    return {"noisy": sum(1 for x in layers if x.status == "noisy"),
            "worst_noise_ratio": worst[0] if worst else None, "worst_noise_layer": worst[1] if worst else None}

