"""Axis semantics: re-run an origin Softmax-like op along every other axis.

A layout conversion (NCHW <-> NHWC, a TensorFlow export, a converter that re-lays tensors out) can
keep an op's ``axis`` number while the data moved: a Softmax over the channels becomes a Softmax
over the width, with no error anywhere. For an origin Softmax / LogSoftmax / Hardmax /
LpNormalization, the node is re-run by onnxruntime on the target's own input along each other axis;
one that reproduces the target's output while the model's axis does not names the cause (from the
nearest dumped tensors when the target did not dump the op's input).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from netdiff.diagnosis._common import cosine, explain_origins, pick, severity_at, variant_explains
from netdiff.diagnosis._sites import Site
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

#: Ops whose output keeps the input's shape and whose ``axis`` says along what they normalise.
AXIS_OPS = ("Softmax", "LogSoftmax", "Hardmax", "LpNormalization")


@register_rule("axis-semantics")
def axis_semantics(context: Context) -> Iterator[Finding]:
    """Name the axis along which the target computed a Softmax-like origin."""
    yield from explain_origins(context, AXIS_OPS, _explain)


def node_axis(node: Any, rank: int) -> int:
    """The node's ``axis`` (ONNX default -1) as 0..rank-1."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
    return axis % rank if rank else 0


def _single_axis(node: Any, opsets: list[Any]) -> bool:
    """Before opset 13 the Softmax family normalises over every axis from ``axis`` on (a 2-D view)."""
    if node.op_type == "LpNormalization":
        return True
    version = max((o.version for o in opsets if o.domain in ("", "ai.onnx")), default=0)
    return version >= 13


def _explain(context: Context, site: Site) -> Finding | None:
    from onnx import helper

    from netdiff.isolated import NodeRunner, rerun_output

    node, name, runner, feeds, target_out = site.node, site.name, site.runner, site.feeds, site.target_out
    data = feeds.get(node.input[0]) if node.input else None
    if (data is None or np.ndim(data) < 2 or tuple(site.op_shape) != np.shape(data)
            or not _single_axis(node, runner.opsets)):
        return None
    rank = np.ndim(data)
    own_axis = node_axis(node, rank)
    scores: dict[int, float] = {}
    for axis in range(rank):
        if np.shape(data)[axis] < 2:
            continue  # normalising along a length-1 axis says nothing
        trial = helper.make_node(node.op_type, list(node.input), list(node.output), name=node.name,
                                 **{**{a.name: helper.get_attribute_value(a) for a in node.attribute}, "axis": axis})
        rerun = NodeRunner(trial, runner.inputs, runner.outputs, runner.initializers, runner.opsets,
                           runner.ir_version)
        out = site.forward(rerun_output(rerun, feeds, name))
        if out is not None and out.shape == target_out.shape:
            scores[axis] = cosine(out, target_out)
    as_own = scores.get(own_axis)
    others = {a: c for a, c in scores.items() if a != own_axis and c == c}
    if as_own is None or as_own != as_own or not others:
        return None
    best = max(others, key=others.__getitem__)
    best_cos = others[best]
    if not variant_explains(best_cos, as_own):
        return None
    severity = severity_at(context, as_own)
    shape = list(np.shape(data))
    evidence = {"op_type": node.op_type, "model_axis": own_axis, "target_axis": best, "shape": shape,
                "cosine_reproduced": best_cos, "cosine_model_axis": as_own,
                "cosines_by_axis": {str(a): c for a, c in sorted(scores.items())}}
    message = (f"{name}: {node.op_type} along axis {best} (size {shape[best]}) reproduces the target's output "
               f"(cosine {best_cos:.5f}); along the model's axis {own_axis} (size {shape[own_axis]}) it reaches "
               f"only {as_own:.5f}: the target normalises along another axis")
    hint = ("a layout conversion kept the axis number while the data moved (NCHW channels are axis 1, NHWC "
            f"channels axis {rank - 1})" if rank == 4 and {own_axis, best} & {1, 3} else
            "the converter or runtime used another axis")
    fix = pick(context, generic=f"{hint}: give the target's {node.op_type} the axis of the model's data layout, "
                                "or transpose its input to the layout the axis assumes")
    return Finding("axis_semantics", name, severity, message, evidence, fix)
