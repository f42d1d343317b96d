"""Isolated error: re-run one reference node on the *target's* inputs and compare with its output.

Accumulated metrics say how far a target tensor is from the reference; they mix the error a
layer makes itself with the error it inherited. Re-running the reference node (a one-node ONNX
model with the node's initializers, executed by onnxruntime) on the target's own input tensors
and comparing with the target's output measures only the layer's own error:

- isolated cosine ≈ 1, accumulated cosine low → the layer inherited its error;
- isolated cosine low → the layer itself computes something else (bad kernel, quantization, ...).

Inputs the target did not dump are recomputed by the reference subgraph from the nearest tensors
it did dump (:mod:`netdiff.segment`); when none can be reached they fall back to the reference
tensor (both recorded per layer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netdiff.errors import NetdiffError
from netdiff.metrics import compute_metrics
from netdiff.types import Dump, LayerResult

log = logging.getLogger(__name__)

#: Ops whose subgraphs or state make a one-node re-run meaningless.
_SKIP_OPS = {"If", "Loop", "Scan", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
             "Multinomial", "Dropout"}


@dataclass
class NodeRunner:
    """One ONNX node as a runnable model (built lazily, session cached)."""

    node: Any
    inputs: list[str]
    outputs: list[str]
    initializers: dict[str, Any]
    opsets: list[Any]
    ir_version: int
    _sessions: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the node on ``feeds`` (every non-initializer input) and return all its outputs."""
        key = tuple((n, np.asarray(feeds[n]).dtype.str, tuple(np.shape(feeds[n]))) for n in self.inputs)
        session = self._sessions.get(key)
        if session is None:
            session = self._session(feeds)
            self._sessions[key] = session
        return [np.asarray(v) for v in session.run(self.outputs, {n: feeds[n] for n in self.inputs})]

    def _session(self, feeds: Mapping[str, np.ndarray]) -> Any:
        from onnx import helper

        from netdiff.runners.onnxrt import make_session

        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(feeds[n]).dtype),
                                                      list(np.shape(feeds[n]))) for n in self.inputs]
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in self.outputs]
        graph = helper.make_graph([self.node], "isolated", graph_inputs, graph_outputs,
                                  initializer=list(self.initializers.values()))
        model = helper.make_model(graph, opset_imports=self.opsets)
        model.ir_version = self.ir_version
        return make_session(model)


class NodeIndex:
    """Find the node producing a tensor of an ONNX model and build :class:`NodeRunner` s."""

    def __init__(self, model: Any) -> None:
        self.model = model
        graph = model.graph
        self.initializers = {i.name: i for i in graph.initializer}
        self.producer: dict[str, Any] = {}
        self.position: dict[str, int] = {}  # tensor -> index of its producer in the graph
        for i, node in enumerate(graph.node):
            for out in node.output:
                if out:
                    self.producer[out] = node
                    self.position[out] = i
        self._constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}

    def runner(self, tensor: str) -> NodeRunner | None:
        """A runner for the node that produces ``tensor``, or None (graph input, unsupported op)."""
        node = self.producer.get(tensor)
        if node is None or node.op_type in _SKIP_OPS or node.op_type == "Constant":
            return None
        if any(a.type in (5, 10) for a in node.attribute):  # GRAPH / GRAPHS attributes
            return None
        inits = {n: self.initializers[n] for n in node.input if n in self.initializers}
        inputs = [n for n in dict.fromkeys(node.input) if n and n not in inits]
        outputs = [o for o in node.output if o]
        return NodeRunner(node, inputs, outputs, inits, list(self.model.opset_import), int(self.model.ir_version))


def aligned_target(layer: LayerResult | None, target: Dump, reference: Dump) -> np.ndarray | None:
    """The target's value of a reference tensor, in the reference's shape, or None."""
    if layer is None or layer.target_name is None or layer.metrics is None or layer.match is None:
        return None
    if layer.match.transform is None or layer.target_name not in target:
        return None
    ref_shape = tuple(reference[layer.name].shape)
    try:
        return layer.match.transform.apply(target[layer.target_name].load(), ref_shape)
    except (ValueError, KeyError):
        return None


def node_feeds(index: NodeIndex, layer: LayerResult, by_name: Mapping[str, LayerResult], reference: Dump,
               target: Dump) -> tuple[NodeRunner, dict[str, np.ndarray], dict[str, Any], np.ndarray] | None:
    """The reference node of ``layer`` with the target's own inputs, ready to re-run.

    An input the target did not dump is recomputed by the reference subgraph from the nearest
    tensors the target did dump (:func:`netdiff.segment.build_segment`); when no dumped tensor can
    be reached, the reference's value stands in.

    Returns:
        (runner, feeds, where the inputs came from: ``{"target": [...], "reference": [...]}`` plus
        ``"recomputed": {input: [dumped tensors it was computed from]}`` when any was, the target's
        output in the reference's shape), or None when the node cannot be re-run on target data.
    """
    from netdiff.segment import build_segment

    runner = index.runner(layer.name)
    target_out = aligned_target(layer, target, reference)
    if runner is None or target_out is None:
        return None
    feeds: dict[str, np.ndarray] = {}
    used: dict[str, Any] = {"target": [], "reference": []}
    recomputed: dict[str, list[str]] = {}
    for name in runner.inputs:
        if name not in reference:
            return None
        ref_value = np.asarray(reference[name].load())
        value = aligned_target(by_name.get(name), target, reference)
        if value is not None and value.shape == ref_value.shape:
            feeds[name] = np.ascontiguousarray(value, dtype=ref_value.dtype)
            used["target"].append(name)
            continue
        segment = build_segment(index, name, by_name, reference, target)
        values = segment.run() if segment is not None else None
        if values is not None and values[name].shape == ref_value.shape:
            feeds[name] = np.ascontiguousarray(values[name], dtype=ref_value.dtype)
            recomputed[name] = segment.started_from
        else:
            feeds[name] = ref_value
            used["reference"].append(name)
    if recomputed:
        used["recomputed"] = recomputed
    if not used["target"] and not recomputed:
        return None  # nothing of the target's own: the re-run would only repeat the reference
    return runner, feeds, used, np.asarray(target_out)


def rerun_output(runner: NodeRunner, feeds: Mapping[str, np.ndarray], name: str) -> np.ndarray | None:
    """Run the node and return its output ``name`` (None when onnxruntime refuses)."""
    try:
        outputs = runner.run(feeds)
    except Exception as e:  # onnxruntime raises its own types; a re-run is best effort
        log.debug("re-run of %s failed: %s", name, e)
        return None
    return outputs[runner.outputs.index(name) if name in runner.outputs else 0]


def isolate_layer(index: NodeIndex, layer: LayerResult, by_name: Mapping[str, LayerResult], reference: Dump,
                  target: Dump) -> dict[str, Any] | None:
    """Re-run the reference node of ``layer`` on the target's inputs; return its extra entries.

    Returns:
        ``{"isolated": metrics dict, "isolated_inputs": {"target": [...], "reference": [...]}}``
        (plus ``"recomputed"``, see :func:`node_feeds`) or None when the node cannot be re-run.
    """
    prepared = node_feeds(index, layer, by_name, reference, target)
    if prepared is None:
        return None
    runner, feeds, used, target_out = prepared
    out = rerun_output(runner, feeds, layer.name)
    through = fused_activation_of(layer)
    if out is not None and through is not None:
        out = run_activation(index, through, layer.name, out)
    if out is None or out.shape != target_out.shape:
        return None
    extra = {"isolated": compute_metrics(out, target_out).as_dict(), "isolated_inputs": used}
    if through is not None:
        extra["isolated_through"] = through
    return extra


def fused_activation_of(layer: LayerResult) -> str | None:
    """The activation a layer's target holds fused (re-aligned by :mod:`netdiff.diagnosis.fused`): the
    reference tensor it was measured against, ``"relu"`` for relu(reference), or None."""
    info = layer.extra.get("fused_activation") if layer.extra else None
    if not isinstance(info, dict):
        return None
    against = str(info.get("measured_against") or "")
    return "relu" if against.startswith("relu(") else (against or None)


def run_activation(index: NodeIndex, activation: str, layer_name: str, value: np.ndarray) -> np.ndarray | None:
    """``value`` (the layer's re-run) through the reference node producing ``activation`` when it reads
    only the layer (and initializers), so a re-run compares with a target holding the fused pair; None
    when that node cannot be run on it (a BatchNormalization fold followed by an activation, ...)."""
    if activation == "relu":
        return np.maximum(value, 0)
    runner = index.runner(activation)
    if runner is None or runner.inputs != [layer_name]:
        return None
    return rerun_output(runner, {layer_name: value}, activation)


#: With ``which="origins"``, diverged layers after an origin are re-run too (a second fault after the first)
#: when their error grows more than this many times past their inputs', or when an input of theirs was not
#: dumped (a sparse dump: several ops stand between them and the nearest dumped tensors); at most
#: :data:`MAX_GROWING` of them.
GROWING_GAIN = 2.0
MAX_GROWING = 16


def growing_layers(layers: Iterable[LayerResult], origins: Iterable[str]) -> list[str]:
    """Diverged non-origin layers to re-run besides the origins (see :data:`GROWING_GAIN`), in order."""
    skip = set(origins)
    by_name = {x.name: x for x in layers}
    found = []
    for x in layers:
        if x.name in skip or x.metrics is None or x.status != "diverged":
            continue
        sparse = any(n in by_name and by_name[n].metrics is None for n in x.inputs)
        if sparse or (x.error_gain is not None and x.error_gain > GROWING_GAIN):
            found.append(x.name)
    return found[:MAX_GROWING]


def compute_isolated(model: Any, layers: list[LayerResult], reference: Dump, target: Dump,
                     which: str | Iterable[str] = "origins", origins: Iterable[str] = ()) -> int:
    """Fill ``layer.extra["isolated"]`` for the selected layers; return how many were measured.

    Args:
        model: The reference ONNX ModelProto.
        layers: The report's layer results (modified in place).
        reference: The reference dump.
        target: The target dump.
        which: "origins", "all", "none", or an explicit list of reference tensor names.
        origins: Origin names (used when ``which`` is "origins", with the :func:`growing_layers` after them).
    """
    if model is None or which == "none":
        return 0
    if isinstance(which, str) and which not in ("origins", "all"):
        raise NetdiffError(f"isolated must be 'origins', 'all' or 'none', not {which!r}")
    by_name = {x.name: x for x in layers}
    if which == "origins":
        names = list(origins) + growing_layers(layers, origins)
    elif which == "all":
        names = [x.name for x in layers if x.metrics is not None]
    else:
        names = list(which)
    index = NodeIndex(model)
    done = 0
    for name in names:
        layer = by_name.get(name)
        if layer is None or layer.metrics is None:
            continue
        extra = isolate_layer(index, layer, by_name, reference, target)
        if extra is not None:
            layer.extra.update(extra)
            done += 1
    return done
