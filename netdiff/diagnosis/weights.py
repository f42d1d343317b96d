"""Badly quantized weights: re-run an origin with its weights quantized the way converters do.

For an origin that is wrong by itself (its isolated error is high), re-run the reference node on
the target's own inputs with its weights quantized under a few hypotheses (int8 per tensor,
int8 per channel, NNIE's 8-bit log format). A hypothesis that reproduces the target's output names
the cause; the weight statistics say why (one outlier stretching a per-tensor step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from netdiff.diagnosis._common import explain_origins, node_name, pick, toolchain
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

#: Ops whose second input is a weight tensor, with the axis of its output channels.
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}
#: A hypothesis must reproduce the target at least this well ...
REPRODUCED = 0.999
#: ... and explain this share of the isolated error (1 - cosine).
EXPLAINED = 0.8


def int8_per_tensor(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 with one max-abs scale for the whole tensor."""
    scale = float(np.abs(w).max()) / 127.0
    return w if scale == 0 else (np.clip(np.round(w / scale), -127, 127) * scale).astype(w.dtype)


def int8_per_channel(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 with one max-abs scale per output channel."""
    moved = np.moveaxis(w, axis, 0)
    scale = np.abs(moved).reshape(moved.shape[0], -1).max(axis=1) / 127.0
    scale = np.where(scale == 0, 1.0, scale).reshape((-1,) + (1,) * (moved.ndim - 1))
    return np.moveaxis(np.clip(np.round(moved / scale), -127, 127) * scale, 0, axis).astype(w.dtype)


def nnie8(w: np.ndarray, axis: int) -> np.ndarray:
    """NNIE's 8-bit logarithmic format, one top per tensor."""
    from netdiff.nnie.logquant import log_quantize

    return np.asarray(log_quantize(w, float(np.abs(w).max()), 8), dtype=w.dtype)


HYPOTHESES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "int8 per-tensor": int8_per_tensor, "int8 per-channel": int8_per_channel, "nnie 8-bit log": nnie8,
}


@register_rule("weight-quantization")
def weight_quantization(context: Context) -> Iterator[Finding]:
    """Name the weight quantization that reproduces an origin's own error."""
    yield from explain_origins(context, WEIGHT_AXIS, _explain, inside=False)


def _explain(context: Context, site) -> Finding | None:
    from onnx import numpy_helper

    from netdiff.isolated import NodeRunner, rerun_output

    node, name, runner, feeds, target_out = site.node, site.name, site.runner, site.feeds, site.target_out
    weight_name = node.input[1] if len(node.input) > 1 else ""
    if weight_name not in runner.initializers:
        return None
    weights = numpy_helper.to_array(runner.initializers[weight_name])
    if weights.dtype.kind != "f" or weights.size < 16:
        return None
    axis = WEIGHT_AXIS[node.op_type]
    if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute):
        axis = 1
    float_out = rerun_output(runner, feeds, name)
    if float_out is None or float_out.shape != target_out.shape:
        return None
    isolated = _cosine(float_out, target_out)
    own_rel_l2 = float(np.linalg.norm(np.asarray(target_out, np.float64) - float_out) /
                       max(float(np.linalg.norm(np.asarray(float_out, np.float64))), 1e-30))
    names = [h for h in HYPOTHESES if h != "nnie 8-bit log" or toolchain(context) == "nnie"]
    scores = {}
    for hypothesis in names:
        quantized = HYPOTHESES[hypothesis](weights, axis)
        inits = {**runner.initializers, weight_name: numpy_helper.from_array(quantized, weight_name)}
        trial = NodeRunner(node, runner.inputs, runner.outputs, inits, runner.opsets, runner.ir_version)
        out = rerun_output(trial, feeds, name)
        if out is not None and out.shape == target_out.shape:
            scores[hypothesis] = (_cosine(out, target_out), _cosine(out, float_out))
    if not scores:
        return None
    best = max(scores, key=lambda h: scores[h][0])
    reproduced, own_cost = scores[best]
    if reproduced < REPRODUCED or (1 - reproduced) > (1 - EXPLAINED) * (1 - isolated):
        return None
    th = context.report.thresholds
    material = isolated < th.cosine or own_rel_l2 > th.rel_l2
    return _finding(context, name, weight_name, weights, axis, best, reproduced, isolated, scores,
                    "error" if material else "warning")


def _finding(context: Context, name: str, weight_name: str, weights: np.ndarray, axis: int, hypothesis: str,
             reproduced: float, isolated: float, scores: dict, severity: str) -> Finding:
    node = node_name(context.report.layer(name))
    magnitude = np.abs(weights).ravel()
    typical = float(np.percentile(magnitude, 99.0))
    top = float(magnitude.max())
    step = top / 127.0
    zero_fraction = float(np.mean(magnitude < step / 2))
    per_channel = scores.get("int8 per-channel", (None, None))[1]
    evidence = {"weights": weight_name, "hypothesis": hypothesis, "cosine_reproduced": reproduced,
                "isolated_cosine": isolated, "max_abs_weight": top, "p99_abs_weight": typical,
                "outlier_ratio": top / typical if typical > 0 else None, "int8_step": step,
                "weights_rounding_to_zero": zero_fraction,
                "per_channel_cosine_vs_float": per_channel,
                "hypotheses": {h: {"cosine_vs_target": c, "cosine_vs_float": f} for h, (c, f) in scores.items()}}
    why = ""
    if hypothesis != "int8 per-channel" and typical > 0 and top / typical > 4:
        why = (f": the largest weight ({top:.3g}) is {top / typical:.0f}x the 99th percentile, so the step "
               f"{step:.3g} rounds {zero_fraction:.0%} of the weights to zero")
    message = (f"{name}: quantizing its weights ({hypothesis}) reproduces the target's output (cosine "
               f"{reproduced:.5f}, vs {isolated:.5f} with float weights){why}")
    fix = pick(context,
               onnxruntime=f"quantize weights per channel (quantize_static(..., per_channel=True); netdiff run -O "
                           f"per_channel=true) or keep the node in float (nodes_to_exclude=['{node}'])",
               nnie="mark the layer high precision (top name with the _hp suffix, or [compile_mode] 1 for 16-bit), "
                    "or clip the outlier weight before conversion",
               ascend="quantize this layer's weights per channel in AMCT, or skip it (skip_layers)",
               generic="quantize this layer's weights per channel, clip the outlier weight, or keep the layer in "
                       "higher precision")
    if severity != "error":
        message += ("; alone the layer stays within the thresholds: this is where the error accumulated "
                    "over the layers before it crosses them")
    return Finding("quantization_coarse", name, severity, message, evidence, fix)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return min(float(a @ b) / denom, 1.0) if denom > 0 else float("nan")
