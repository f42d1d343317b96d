"""Fused activations: a target tensor that holds the activation of the reference tensor of its name.

Converters fuse Conv+ReLU (Conv+Clip, ...) into one op and keep the Conv's name, so the target
tensor named after the Conv holds relu(conv). Comparing it with the reference Conv output would
report a false divergence (and a false first divergence). :func:`realign_fused_activations` runs
in the pipeline *before* origins are computed: it re-measures such pairs against the consumer
activation's reference tensor (or against relu(reference) when the reference has none), marks
them with ``match.method == "content"``, and the ``fused-activation`` rule reports them.

A pair is re-aligned when the activation's tensor matches within the thresholds (the pair is then
``ok``), or, for an activation the layer really feeds in the reference graph, when it is clearly
the activation's although beyond the thresholds (:func:`_clearly_clipped`: the layer inherits error
from its inputs); the pair then keeps the status its re-aligned metrics earn (``diverged``, like its
neighbours). Without an activation in the reference (relu(reference)), only the strict rule applies:
there a Relu in the target could itself be the bug.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.detail import layer_detail
from netdiff.diagnosis.base import Context, register_rule
from netdiff.metrics import compute_metrics
from netdiff.types import Dump, Finding, LayerResult, Match, Thresholds
from netdiff.verdict import ACCEPTED, status_of

#: Single-input activations a converter fuses into the preceding op.
ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "PRelu", "Elu",
               "Selu", "Softplus", "Mish", "Gelu", "Swish", "Relu6", "ReLU", "ReLU6", "TanH"}
#: Ops a converter folds into the preceding Conv's weights (the Conv output then holds their value).
FOLDED = {"BatchNormalization"}


def realign_fused_activations(layers: list[LayerResult], reference: Dump, target: Dump,
                              thresholds: Thresholds) -> list[str]:
    """Re-measure diverged layers whose target holds the reference's activation; return their names."""
    consumers: dict[str, list[LayerResult]] = {}
    for layer in layers:
        for name in layer.inputs:
            consumers.setdefault(name, []).append(layer)
    fixed = []
    for layer in layers:
        if layer.status != "diverged" or layer.metrics is None or layer.target_name is None:
            continue
        if layer.match is None or layer.match.transform is None or layer.op_type in ACTIVATIONS:
            continue
        acts = _fusable_consumers(layer.name, consumers, reference)
        if not acts and not (layer.metrics.target_min >= 0 and layer.metrics.ref_min < 0):
            continue
        try:
            ref = np.asarray(reference[layer.name].load())
            tgt = layer.match.transform.apply(target[layer.target_name].load(), tuple(ref.shape))
        except Exception:  # unreadable: the layer is reported as is
            continue
        direct = [a for a in acts if a.op_type in ACTIVATIONS and layer.name in a.inputs]
        chosen = _strict_match(acts, ref, tgt, reference, thresholds, layer)
        if chosen is None:  # beyond the thresholds: an activation the layer feeds, clearly the target's
            chosen = _inherited_match(direct, ref, tgt, reference, thresholds, layer)
        if chosen is not None:
            act, act_ref, metrics, status = chosen
            _realign(layer, act_ref, tgt, metrics, act.name, act.op_type or "activation", status)
            _pair_activation(act, layer, metrics, status)
            fixed.append(layer.name)
        elif not direct and layer.metrics.target_min >= 0:
            relu = np.maximum(ref, 0)
            metrics = compute_metrics(relu, tgt)
            if _accepted(thresholds, metrics, layer.expected_rel_l2, layer.metrics):
                _realign(layer, relu, tgt, metrics, None, "Relu")
                fixed.append(layer.name)
    return fixed


def _strict_match(acts: list[LayerResult], ref: np.ndarray, tgt: np.ndarray, reference: Dump,
                  thresholds: Thresholds, layer: LayerResult) -> tuple | None:
    """The first consumer whose reference tensor the target matches within the thresholds (status ok)."""
    for act in acts:
        act_ref = np.asarray(reference[act.name].load())
        if act_ref.shape != ref.shape:
            continue
        metrics = compute_metrics(act_ref, tgt)
        if _accepted(thresholds, metrics, act.expected_rel_l2, layer.metrics):
            return act, act_ref, metrics, "ok"
    return None


def _inherited_match(direct: list[LayerResult], ref: np.ndarray, tgt: np.ndarray, reference: Dump,
                     thresholds: Thresholds, layer: LayerResult) -> tuple | None:
    """The first activation reading the layer that the target clearly holds (:func:`_clearly_clipped`),
    with the status its metrics earn."""
    for act in direct:
        act_ref = np.asarray(reference[act.name].load())
        if act_ref.shape != ref.shape:
            continue
        metrics = compute_metrics(act_ref, tgt)
        if _clearly_clipped(ref, act_ref, tgt, metrics, layer.metrics):
            return act, act_ref, metrics, status_of(thresholds, metrics, act.expected_rel_l2)
    return None


def _accepted(thresholds: Thresholds, metrics, expected_rel_l2: float | None, before) -> bool:
    """Better than the pair by name, and within the thresholds (or the precision's expected noise)."""
    better = metrics.rel_l2 < before.rel_l2 or math.isnan(before.rel_l2)
    return better and status_of(thresholds, metrics, expected_rel_l2) in ACCEPTED


#: The relaxed acceptance (:func:`_clearly_clipped`): the activation's tensor leaves at most this share of the
#: rel_l2 the tensor of the layer's own name leaves ...
CLEARLY_BETTER = 0.5
#: ... the activation clips at least this share of the layer's reference values to its lower bound ...
MIN_CLIPPED_SHARE = 0.01


def _clearly_clipped(ref: np.ndarray, act_ref: np.ndarray, tgt: np.ndarray, metrics, before) -> bool:
    """A fused pair beyond the thresholds (the layer inherits error from its inputs), yet clearly the
    activation's: a real consumer activation of the layer in the reference graph that clips from below
    (Relu, Relu6, Clip: at least :data:`MIN_CLIPPED_SHARE` of its reference values sit on its minimum
    while the layer's go below it), whose tensor is at least 2x closer to the target (rel_l2 at most
    :data:`CLEARLY_BETTER` of the pair by name), and a target that never goes below that minimum
    where the layer's reference does (the clip happened in the target)."""
    if not (math.isfinite(metrics.rel_l2) and math.isfinite(before.rel_l2)):
        return False
    if metrics.rel_l2 > CLEARLY_BETTER * before.rel_l2:
        return False
    r, a, t = (np.asarray(v, dtype=np.float64).ravel() for v in (ref, act_ref, tgt))
    if not (np.isfinite(r).all() and np.isfinite(a).all() and np.isfinite(t).all()) or a.size == 0:
        return False
    bound = float(a.min())
    span = max(float(np.ptp(a)), 1e-12)
    on_bound = np.abs(a - bound) <= 1e-6 * span
    below = r < bound - 1e-6 * span
    if float(np.mean(on_bound)) < MIN_CLIPPED_SHARE or float(np.mean(below)) < MIN_CLIPPED_SHARE:
        return False
    return bool(np.all(t[below] >= bound - 1e-6 * span))


def _fusable_consumers(name: str, consumers: dict[str, list[LayerResult]], reference: Dump) -> list[LayerResult]:
    """Activations reading ``name``, and a BatchNormalization reading it (folded into a Conv by onnxsim or
    onnxruntime) followed by its activations."""
    found = []
    for c in consumers.get(name, []):
        if c.name not in reference:
            continue
        if c.op_type in ACTIVATIONS:
            found.append(c)
        elif c.op_type in FOLDED:
            found.append(c)
            found.extend(a for a in consumers.get(c.name, []) if a.op_type in ACTIVATIONS and a.name in reference)
    return found


def _realign(layer: LayerResult, act_ref: np.ndarray, tgt: np.ndarray, metrics, act_name: str | None,
             act_op: str, status: str = "ok") -> None:
    before = layer.metrics
    against = act_name or f"relu({layer.name})"
    layer.extra["fused_activation"] = {
        "activation": act_op, "measured_against": against, "cosine_before": _n(before.cosine),
        "rel_l2_before": _n(before.rel_l2), "cosine_after": _n(metrics.cosine), "rel_l2_after": _n(metrics.rel_l2),
        "target_min": _n(before.target_min), "reference_min": _n(before.ref_min),
        "accepted": "within thresholds" if status == "ok" else "clearly better"}
    layer.metrics = metrics
    layer.status = status
    layer.reason = "" if status == "ok" else (f"fused {act_op}: measured against {against}, the error it inherits "
                                              "remains")
    layer.match = Match(layer.name, layer.target_name, "content", layer.match.transform,
                        reason=f"target holds {act_op}({layer.name}) (fused {layer.op_type or 'op'}+{act_op}); "
                               f"measured against {against}")
    if "detail" in layer.extra:
        layer.extra["detail"] = layer_detail(act_ref, tgt)


def _pair_activation(act: LayerResult, layer: LayerResult, metrics, status: str = "ok") -> None:
    """The activation's own reference tensor, fused away in the target, gets the same target tensor."""
    if act.metrics is not None or act.status not in ("missing_in_target", "not_observable"):
        return
    act.target_name = layer.target_name
    act.target_shape = layer.target_shape
    act.metrics = metrics
    act.status = status
    act.reason = ""
    act.match = Match(act.name, layer.target_name, "content", layer.match.transform,
                      reason=f"fused into target tensor {layer.target_name!r} with {layer.name}")


def _n(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@register_rule("fused-activation")
def fused_activation(context: Context) -> Iterator[Finding]:
    """Report the layers :func:`realign_fused_activations` re-aligned."""
    for layer in context.report.layers:
        info = layer.extra.get("fused_activation")
        if not isinstance(info, dict):
            continue
        if layer.status == "ok":  # re-aligned beyond the thresholds: the later rules still look for a cause
            context.claim(layer.name)
        yield Finding(
            "fused_activation", layer.name, "info",
            f"The target's {layer.target_name} holds {info['activation']}({layer.name}): the converter fused the "
            f"{'folded op' if info['activation'] in FOLDED else 'activation'} into {layer.op_type or 'the op'}; "
            f"netdiff compared it with {info['measured_against']} instead"
            + (f" (still {layer.status}, cosine {info['cosine_after']:.5f}: "
               f"{'its own error' if layer.introduced else 'the error its inputs carry'}, not the fusion's; "
               f"by name it reads {info['cosine_before']:.5f})."
               if info.get("accepted") == "clearly better" and info.get("cosine_after") is not None
               and info.get("cosine_before") is not None else "."),
            info, "nothing to change: the fusion is expected (pass a fusion map to name it explicitly)")
