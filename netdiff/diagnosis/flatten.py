"""Flatten order: the target flattened a feature map in another axis order (HWC instead of CHW).

A classic of layout conversions: a network trained NCHW flattens ``C, H, W`` before its first
fully connected layer; a target that holds the feature map as NHWC (a TensorFlow export, an NPU)
and flattens it as it is feeds the FC layer the same numbers in ``H, W, C`` order, so every
following value is wrong although each layer is right. For an origin Flatten/Reshape from 4-D to
2-D, the target's own input is flattened in each order of its three inner axes; one that reproduces
the target's output while ``C, H, W`` does not names the cause. A fully connected origin whose
flatten has no tensor of its own (Caffe's InnerProduct) is re-run on each flattening instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from netdiff.diagnosis._common import (cosine, explain_origins, pick, severity_at, unexplained_origins,
                                      variant_explains)
from netdiff.diagnosis._sites import Site
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

FLATTEN_OPS = ("Flatten", "Reshape")
#: Fully connected ops whose flatten may have no tensor of its own (Caffe InnerProduct).
FC_OPS = ("Gemm", "MatMul")
_AXES = "CHW"


@register_rule("flatten-order")
def flatten_order(context: Context) -> Iterator[Finding]:
    """Name the axis order in which the target flattened a 4-D feature map."""
    yield from explain_origins(context, FLATTEN_OPS, _explain)
    yield from _fully_connected_origins(context)


def _fully_connected_origins(context: Context) -> Iterator[Finding]:
    """The same question for a fully connected origin whose flatten has no tensor of its own (Caffe's
    InnerProduct flattens inside the layer): re-run the FC node on the target's feature map
    flattened in each order."""
    from netdiff.isolated import aligned_target

    by_name = {x.name: x for x in context.report.layers}
    for layer, node, index in unexplained_origins(context, FC_OPS):
        flatten = index.producer.get(node.input[0])
        if flatten is None or flatten.op_type not in FLATTEN_OPS or flatten.input[0] not in context.reference:
            continue
        runner = index.runner(layer.name)
        data = aligned_target(by_name.get(flatten.input[0]), context.target, context.reference)
        target_out = aligned_target(layer, context.target, context.reference)
        if runner is None or data is None or target_out is None or set(runner.inputs) != {node.input[0]}:
            continue
        found = _explain_orders(context, layer.name, node.op_type, np.asarray(data), np.asarray(target_out),
                                lambda flat: _rerun(runner, node.input[0], flat, layer.name))
        if found is not None:
            context.claim(layer.name)
            yield found


def _rerun(runner: Any, input_name: str, flat: np.ndarray, name: str) -> np.ndarray | None:
    from netdiff.isolated import rerun_output

    return rerun_output(runner, {input_name: np.ascontiguousarray(flat, dtype=np.float32)}, name)


def _explain(context: Context, site: Site) -> Finding | None:
    node = site.node
    data = site.feeds.get(node.input[0]) if node.input else None
    if data is None or len(site.op_shape) != 2:
        return None
    return _explain_orders(context, site.name, node.op_type, np.asarray(data), site.target_out, site.forward)


def _explain_orders(context: Context, name: str, op_type: str, data: np.ndarray, target_out: np.ndarray,
                    forward: Callable[[np.ndarray], np.ndarray | None]) -> Finding | None:
    """Flatten ``data`` (N, C, H, W) in each order of its inner axes, pass it through ``forward`` (the
    identity, or the FC layer that follows) and compare with ``target_out``."""
    if data.ndim != 4 or sorted(data.shape[1:])[-2] < 2:
        return None  # flattening a map with one non-trivial axis is the same in every order
    n = data.shape[0]
    scores = {}
    for order in itertools.permutations((1, 2, 3)):
        out = forward(np.transpose(data, (0, *order)).reshape(n, -1))
        if out is not None and np.shape(out) == np.shape(target_out):
            scores[order] = cosine(out, target_out)
    own = scores.get((1, 2, 3))
    others = {o: c for o, c in scores.items() if o != (1, 2, 3) and c == c}
    if own is None or own != own or not others:
        return None
    best = max(others, key=others.__getitem__)
    best_cos = others[best]
    if not variant_explains(best_cos, own):
        return None
    target_order = "".join(_AXES[a - 1] for a in best)
    severity = severity_at(context, own)
    evidence = {"op_type": op_type, "input_shape": list(data.shape), "model_order": "CHW",
                "target_order": target_order, "cosine_reproduced": best_cos, "cosine_model_order": own}
    what = "flattening its input" if op_type in FLATTEN_OPS else "this layer on its input flattened"
    message = (f"{name}: {what} in {target_order} order reproduces the target's output (cosine "
               f"{best_cos:.5f}); the model flattens C, H, W (cosine {own:.5f}): the target flattened a feature map "
               f"held as N{target_order}")
    fix = pick(context, generic=f"transpose the feature map back to NCHW before the flatten (or permute the rows of "
                                f"the next fully connected layer's weights from CHW to {target_order} order) in "
                                "the converted model")
    return Finding("flatten_order", name, severity, message, evidence, fix)
