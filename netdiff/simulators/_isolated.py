"""Isolated error: each layer of a simulated target run on the float reference's inputs.

The simulated model (fp16 or QDQ int8) is cut into one small subgraph per float tensor: the nodes
that compute that tensor's target value, walking back until a *boundary* (a target tensor that
stands for another float tensor, an initializer or a graph input). Boundaries are fed with the
float reference's values, so only this layer's own precision loss remains ("single" mode of
vendor tools; the whole model is "entire" mode). All subgraphs go into one model that runs in a
single onnxruntime session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from netdiff._lazy import lazy_import

onnx = lazy_import("onnx")

#: A subgraph larger than this is not one layer any more: the layer is skipped.
MAX_NODES = 64

_NP_TO_ONNX = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7,
               "bool": 9, "float16": 10, "float64": 11, "uint32": 12, "uint64": 13}


def subgraph_nodes(producers: Mapping[str, Any], start: str, own: str, boundaries: Mapping[str, str],
                   constants: set[str]) -> tuple[list[Any], list[str]] | None:
    """Nodes computing ``start`` back to the boundaries, and the boundary tensors reached.

    ``own`` is the float tensor ``start`` stands for: a boundary that stands for it too is the
    layer's own raw output and is walked through. Returns None when the walk is too large or ends
    at a tensor that nothing produces.
    """
    nodes: dict[int, Any] = {}
    reached: list[str] = []
    stack, seen = [start], set()
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in constants:
            continue
        if name != start and name in boundaries and boundaries[name] != own:
            reached.append(name)
            continue
        node = producers.get(name)
        if node is None:
            if name in boundaries:  # a graph input standing for itself
                reached.append(name)
                continue
            return None
        if id(node) not in nodes:
            nodes[id(node)] = node
            if len(nodes) > MAX_NODES:
                return None
            stack.extend(node.input)
    if not nodes:
        return None
    return list(nodes.values()), reached


def isolated_values(model: Any, targets: Mapping[str, str], boundaries: Mapping[str, str],
                    reference: Mapping[str, np.ndarray], dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Recompute each target tensor from float reference values at its boundaries.

    Args:
        model: The simulated ModelProto.
        targets: Float tensor name -> target tensor holding its value.
        boundaries: Target tensor -> the float tensor it stands for (raw layer outputs, inputs).
        reference: Float reference values by float tensor name.
        dtypes: numpy dtype name of every target tensor (from a full run).

    Returns:
        Float tensor name -> isolated value (float32), for every layer that could be cut out.
    """
    from onnx import helper

    from netdiff.runners.onnxrt import make_session

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output if out}
    initializers = {i.name: i for i in graph.initializer}
    constants = set(initializers)
    order = {id(n): i for i, n in enumerate(graph.node)}
    new_nodes, outputs, feeds, inputs, used_init = [], [], {}, [], set()
    taken: dict[str, str] = {}
    for index, (float_name, target) in enumerate(targets.items()):
        cut = subgraph_nodes(producers, target, float_name, boundaries, constants)
        if cut is None:
            continue
        nodes, reached = cut
        if any(boundaries[b] not in reference for b in reached):
            continue
        rename = {}
        for b in reached:
            dtype = dtypes.get(b, "float32")
            key = f"{boundaries[b]}::{dtype}"
            if key not in taken:
                taken[key] = f"iso_in{len(taken)}"
                with np.errstate(over="ignore"):  # beyond the fp16 range becomes Inf, as on the target
                    feeds[taken[key]] = np.asarray(reference[boundaries[b]]).astype(dtype)
                inputs.append(helper.make_tensor_value_info(taken[key], _NP_TO_ONNX.get(dtype, 1),
                                                            list(feeds[taken[key]].shape)))
            rename[b] = taken[key]
        suffix = f"::iso{index}"
        for node in sorted(nodes, key=lambda n: order[id(n)]):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = (node.name or node.op_type) + suffix
            for k, x in enumerate(node.input):
                if x in initializers:
                    used_init.add(x)
                elif x:
                    copy.input[k] = rename.get(x, x + suffix)
            for k, x in enumerate(node.output):
                if x:
                    copy.output[k] = x + suffix
            new_nodes.append(copy)
        outputs.append((float_name, target + suffix))
    if not outputs:
        return {}
    sub = helper.make_graph(new_nodes, f"{graph.name}_isolated", inputs,
                            [onnx.ValueInfoProto(name=o) for _, o in outputs],
                            initializer=[initializers[n] for n in sorted(used_init)])
    combined = helper.make_model(sub, opset_imports=list(model.opset_import))
    combined.ir_version = model.ir_version
    values = make_session(combined).run([o for _, o in outputs], feeds)
    return {f: np.asarray(v).astype(np.float32) for (f, _), v in zip(outputs, values)}
