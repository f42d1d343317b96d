"""Input rules: channel order, scale, normalization, axis layout of the target's model input.

The target's input is explained as a transform of the reference input by *trying* transforms
(:mod:`netdiff.diagnosis._inputfit`): directly when the target dumped its input, or through the
first consumer (re-run on candidate inputs) when it did not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from netdiff.diagnosis._common import channel_axis, describe_factor, fmt_list, name_constant, pick, rounded
from netdiff.diagnosis._inputfit import AFFINE_OPS, InputExplanation, explain_input, is_identity, is_scale
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding, LayerResult

_LETTERS = {3: "CHW", 4: "NCHW", 5: "NCDHW"}
#: A channel permutation alone whose R² reaches this reproduces the target: no normalization is
#: reported on top of it (the simplest explanation wins; another only if it explains what remains).
SIMPLE_REPRODUCES = 0.999


@register_rule("input")
def input_rule(context: Context) -> Iterator[Finding]:
    """Name what is wrong with each diverged model input (or with what its first consumer saw)."""
    by_name = {x.name: x for x in context.report.layers}
    for name in context.reference.graph_inputs:
        layer = by_name.get(name)
        if layer is None or name in context.explained:
            continue
        if layer.status == "shape_mismatch":
            finding = _shape_mismatch(layer)
            context.claim(finding.layer)
            yield finding
            continue
        if layer.metrics is not None:
            if layer.status != "diverged":
                continue
            found = list(_direct(context, layer))
            if not found:
                found = [_mismatch(layer)]
        else:
            found = list(_through_consumer(context, name, by_name))
        for finding in found:
            context.claim(finding.layer)
            yield finding


def _direct(context: Context, layer: LayerResult) -> Iterator[Finding]:
    pair = context.cached_pair(layer)
    if pair is None:
        return
    ref, tgt = pair
    raw = context.target[layer.target_name].load()
    axis = channel_axis(ref.shape, context.reference[layer.name].layout)
    explanation = explain_input(ref, tgt, lambda x: x, axis, raw_target=raw)
    if explanation is not None:
        yield from _findings(context, layer.name, explanation, ref.shape, via=None)


def _through_consumer(context: Context, name: str, by_name: dict[str, LayerResult]) -> Iterator[Finding]:
    """The target lacks the input: test transforms through its first dumped, diverged consumer."""
    if context.model is None:
        return
    from netdiff.isolated import NodeIndex

    index = NodeIndex(context.model)
    for node in context.model.graph.node:
        if name not in node.input or not node.output:
            continue
        consumer = by_name.get(node.output[0])
        if consumer is None or consumer.metrics is None:
            continue
        if consumer.status != "diverged" or node.op_type not in AFFINE_OPS or list(node.input).count(name) != 1:
            return
        runner = index.runner(consumer.name)
        pair = context.cached_pair(consumer)
        if runner is None or pair is None:
            return
        ref_in = np.asarray(context.reference[name].load())
        feeds = {n: np.asarray(context.reference[n].load()) for n in runner.inputs if n in context.reference}
        if set(feeds) != set(runner.inputs):
            return

        def apply(x: np.ndarray, _feeds=feeds) -> np.ndarray:
            return runner.run({**_feeds, name: np.ascontiguousarray(x, dtype=ref_in.dtype)})[0]

        axis = channel_axis(ref_in.shape, context.reference[name].layout)
        try:
            explanation = explain_input(ref_in, pair[1], apply, axis)
        except Exception:  # a node onnxruntime cannot re-run: no input diagnosis
            return
        if explanation is None:
            return
        found = list(_findings(context, name, explanation, ref_in.shape, via=consumer.name))
        if found:
            context.claim(consumer.name)
        yield from found
        return


def _findings(context: Context, name: str, ex: InputExplanation, shape: tuple[int, ...],
              via: str | None) -> Iterator[Finding]:
    best, ident = ex.best, ex.identity
    seen = f" (seen through {via}, the target did not dump the input)" if via else ""
    evidence_base = {"r2_identity_order": round(ident.r2, 6), "r2_best": round(best.r2, 6),
                     "correlation_as_is": _r(ex.baseline_corr)}
    if via:
        evidence_base["observed_at"] = via
    strong = best.r2 > 0.99 and (1.0 - ident.r2) > 5.0 * max(1.0 - best.r2, 1e-9) and ident.r2 < 0.99
    if best.perm != tuple(range(len(best.perm))) and strong:
        words = _perm_words(best.perm)
        order_evidence = {**evidence_base, "channel_permutation": list(best.perm)}
        alone = ex.plain_r2.get(best.perm)
        if alone is not None:
            order_evidence["r2_permutation_alone"] = round(alone, 6)
        simplest = alone is not None and alone >= SIMPLE_REPRODUCES and not is_identity(best, ex.ref_std)
        if simplest:  # the swap alone reproduces the target: an affine fit on top explains nothing that remains
            order_evidence["normalization_not_reported"] = (
                f"the permutation alone reproduces the target (R² {alone:.6f}); a per-channel affine fit on top "
                f"(a {fmt_list(best.a)}, b {fmt_list(best.b)}) only reaches R² {best.r2:.6f}")
        yield Finding(
            "input_channel_order", name, "error",
            f"The target's input is the reference input with {words}{seen}.",
            order_evidence,
            pick(context,
                 nnie="set [RGB_order] in the mapper cfg to the other order (RGB <-> BGR), or feed the board "
                      "planar data in the order [RGB_order] names",
                 ascend="flip rbuv_swap_switch in the AIPP config (true <-> false), or swap R and B before feeding",
                 generic="swap the input channels in the target's preprocessing (e.g. cv2.cvtColor(img, "
                         "cv2.COLOR_BGR2RGB) or x[:, ::-1] on NCHW)"))
        if simplest:
            return
        fit = best
    elif ident.r2 > 0.995 and (1.0 - ident.r2) < 0.2 * max(1.0 - ex.baseline_r2, 1e-12):
        fit = ident
    else:
        fit = None
    if fit is not None and not is_identity(fit, ex.ref_std):
        yield _scale_or_normalization(context, name, fit, ex, seen, evidence_base)
        return
    if fit is not None:
        return
    letters = _LETTERS.get(len(shape))
    if ex.layout_perm is not None and ex.layout_corr > 0.999 and ex.baseline_corr < 0.99:
        order = "".join(letters[i] for i in ex.layout_perm) if letters else str(list(ex.layout_perm))
        model = letters or str(list(range(len(shape))))
        yield Finding(
            "input_layout", name, "error",
            f"The target's input holds the reference values in {order} order but is read as {model}: "
            f"the same numbers, scrambled{seen}.",
            {**evidence_base, "axis_order": list(ex.layout_perm), "correlation_after_reorder": _r(ex.layout_corr)},
            pick(context,
                 nnie="the NNIE input blob is planar (CHW): convert interleaved HWC images to planar before feeding",
                 ascend="declare the data's real layout (atc --input_format / AIPP input_format) or transpose the "
                        f"buffer to {model} before feeding",
                 generic=f"transpose the target input to {model} before feeding it (it is {order} now)"))


def _scale_or_normalization(context: Context, name: str, fit, ex: InputExplanation, seen: str,
                            evidence_base: dict) -> Finding:
    k = is_scale(fit, ex.ref_std)
    if k is not None:
        label = describe_factor(k)
        inv = 1.0 / k
        return Finding(
            "input_scale", name, "error",
            f"The target's input is {label} × the reference input{seen}.",
            {**evidence_base, "factor": float(f"{k:.6g}"), "factor_named": name_constant(k)},
            pick(context,
                 nnie=f"multiply [data_scale] by {inv:.6g} (norm_type 3 or 5; note the default data_scale is "
                      "1/256, not 1/255)",
                 ascend=f"multiply var_reci_chn_0..2 in the AIPP config by {inv:.6g}",
                 generic=f"multiply the target input by {inv:.6g} (the target skipped or repeated a scaling step)"))
    mean, std = fit.b, fit.a
    equal = all(abs(a / std[0] - 1.0) < 0.01 for a in std) if std[0] else False
    nnie = (f"[norm_type] 5 with [mean_file] lines {fmt_list(mean)} and [data_scale] {1.0 / std[0]:.6g}" if equal else
            f"[mean_file] lines {fmt_list(mean)}; [data_scale] is one scalar, so fold the per-channel "
            f"1/std {fmt_list(1.0 / np.asarray(std))} into the first convolution")
    return Finding(
        "input_normalization", name, "error",
        f"The target's input is the reference input under another normalization: reference = (target − mean) / std "
        f"with mean {fmt_list(mean)} and std {fmt_list(std)} per channel{seen}.",
        {**evidence_base, "mean": rounded(mean), "std": rounded(std), "scale": rounded(1.0 / np.asarray(std)),
         "channel_permutation": list(fit.perm), "r2": round(fit.r2, 6)},
        pick(context,
             nnie=f"apply this normalization on the target side: {nnie}",
             ascend="in the AIPP config (applied on top of the current one): mean_chn_i/min_chn_i += "
                    f"{fmt_list(mean)}, var_reci_chn_i *= {fmt_list(1.0 / np.asarray(std))}",
             generic=f"normalize the target input as (x - mean) / std with mean={fmt_list(mean)}, "
                     f"std={fmt_list(std)} (on top of what it does now)"))


def _shape_mismatch(layer: LayerResult) -> Finding:
    """The two sides ran on inputs of different shapes: nothing after the input compares element-wise."""
    ref, tgt = list(layer.shape or ()), list(layer.target_shape or ())
    return Finding(
        "input_shape_mismatch", layer.name, "error",
        f"The input fed as {layer.name} {ref} does not match the target's input shape {tgt}: the two sides ran on "
        "different inputs, so the tensors after it are not comparable (their differences name no conversion fault).",
        {"reference_shape": ref, "target_shape": tgt},
        f"feed an input of the target's shape {tgt}, or dump the target again with this input (e.g. netdiff dump "
        "MODEL OUT --input FILE)")


def _mismatch(layer: LayerResult) -> Finding:
    m = layer.metrics
    return Finding(
        "input_mismatch", layer.name, "warning",
        "The target was fed a different input than the reference (no channel order, scale, normalization or "
        "layout change explains it).",
        {"cosine": _r(m.cosine), "rel_l2": _r(m.rel_l2), "ref_range": [_r(m.ref_min), _r(m.ref_max)],
         "target_range": [_r(m.target_min), _r(m.target_max)]},
        "feed both sides the same sample (check the file, resizing and cropping of the target's input)")


def _perm_words(perm: tuple[int, ...]) -> str:
    if perm == (2, 1, 0):
        return "channels 0 and 2 swapped (R and B: BGR vs RGB)"
    if len(perm) == 4 and perm == (2, 1, 0, 3):
        return "channels 0 and 2 swapped (BGRA vs RGBA)"
    moves = ", ".join(f"channel {c} holds reference channel {s}" for c, s in enumerate(perm) if c != s)
    return f"its channels permuted ({moves})"


def _r(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(f"{value:.6g}")
