"""Reference subgraphs re-run from the nearest tensors a sparse target dumped.

Device dumps rarely hold every tensor: a board dump often has the inputs, the outputs and a few
feature maps. To re-run an op on the *target's* data when its own inputs were not dumped, the
reference subgraph between the nearest dumped ancestors (the *frontier*) and the op is rebuilt as
one ONNX model and run by onnxruntime on the target's values of those ancestors. A hypothesis rule
can swap one node of the segment for a variant (another resize convention, another axis) and see
whether the segment then reproduces the target.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netdiff.types import Dump, LayerResult

log = logging.getLogger(__name__)

#: A segment longer than this many nodes is not rebuilt (the nearest dumped tensor is too far).
MAX_NODES = 256
#: Ops a segment cannot hold (subgraphs, randomness).
_SKIP_OPS = {"If", "Loop", "Scan", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
             "Multinomial", "Dropout"}


@dataclass
class Segment:
    """The reference nodes computing ``output`` from ``frontier`` (target values of dumped tensors).

    Attributes:
        output: The tensor the segment computes.
        nodes: The reference nodes, in graph order (the producer of ``output`` last).
        frontier: Target values (reference shape and dtype) of the dumped tensors it starts from.
        initializers: The reference initializers the nodes read.
    """

    output: str
    nodes: list[Any]
    frontier: dict[str, np.ndarray]
    initializers: dict[str, Any]
    opsets: list[Any]
    ir_version: int
    _sessions: dict[tuple, Any] = field(default_factory=dict, repr=False)

    @property
    def started_from(self) -> list[str]:
        """Names of the dumped tensors the segment starts from."""
        return list(self.frontier)

    def run(self, outputs: list[str] | None = None, replace: Mapping[int, Any] | None = None,
            feeds: Mapping[str, np.ndarray] | None = None, nodes: list[Any] | None = None
            ) -> dict[str, np.ndarray] | None:
        """Run the segment (or ``nodes`` of it) and return ``outputs`` (default: its output).

        Args:
            outputs: Tensors to return (any tensor the nodes produce).
            replace: ``{position in nodes: variant node}``: nodes swapped for a variant.
            feeds: Extra graph inputs (e.g. a variant op's output fed to the nodes after it).
            nodes: A subset of the nodes to run instead of all of them.

        Returns:
            The arrays by name, or None when onnxruntime refuses the segment.
        """
        chosen = list(self.nodes if nodes is None else nodes)
        replace = dict(replace or {})
        chosen = [replace.get(i, n) for i, n in enumerate(chosen)]
        outputs = list(outputs or [self.output])
        values = {**self.frontier, **{k: np.ascontiguousarray(v) for k, v in (feeds or {}).items()}}
        produced = {o for n in chosen for o in n.output if o}
        needed = [i for n in chosen for i in n.input if i and i not in produced and i not in self.initializers]
        inputs = [n for n in dict.fromkeys(needed)]
        if any(n not in values for n in inputs):
            return None
        key = (tuple(n.SerializeToString() for n in chosen), tuple(outputs), tuple((n, values[n].dtype.str, values[n].shape)
                                                                 for n in inputs))
        try:
            session = self._sessions.get(key)
            if session is None:
                session = self._session(chosen, inputs, outputs, values)
                self._sessions[key] = session
            result = session.run(outputs, {n: values[n] for n in inputs})
        except Exception as e:  # onnxruntime raises its own types; a re-run is best effort
            log.debug("re-run of the segment to %s failed: %s", self.output, e)
            return None
        return {n: np.asarray(v) for n, v in zip(outputs, result)}

    def _session(self, nodes: list[Any], inputs: list[str], outputs: list[str],
                 values: Mapping[str, np.ndarray]) -> Any:
        from onnx import helper

        from netdiff.runners.onnxrt import make_session

        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(values[n].dtype),
                                                      list(values[n].shape)) for n in inputs]
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in outputs]
        used = {i for n in nodes for i in n.input}
        inits = [t for name, t in self.initializers.items() if name in used]
        graph = helper.make_graph(nodes, "segment", graph_inputs, graph_outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=self.opsets)
        model.ir_version = self.ir_version
        return make_session(model)

    def after(self, position: int) -> list[Any]:
        """The nodes that depend on the output of node ``position`` (in order), up to the segment's output."""
        tainted = {o for o in self.nodes[position].output if o}
        later = []
        for node in self.nodes[position + 1:]:
            if any(i in tainted for i in node.input):
                later.append(node)
                tainted.update(o for o in node.output if o)
        return later


def build_segment(index: Any, tensor: str, by_name: Mapping[str, LayerResult], reference: Dump, target: Dump,
                  max_nodes: int = MAX_NODES) -> Segment | None:
    """The reference subgraph computing ``tensor`` from the nearest tensors the target dumped.

    Walks back from ``tensor``'s producer; a tensor the target dumped (compared, with an alignment)
    stops the walk and becomes part of the frontier. Returns None when a path reaches a graph input
    the target did not dump, an op that cannot be re-run, or more than ``max_nodes`` nodes.

    Args:
        index: A :class:`netdiff.isolated.NodeIndex` of the reference model.
        tensor: The reference tensor to compute.
        by_name: The report's layers by name.
        reference: The reference dump.
        target: The target dump.
        max_nodes: Longest segment rebuilt.
    """
    from netdiff.isolated import aligned_target

    if index.producer.get(tensor) is None:
        return None
    chosen: dict[int, Any] = {}
    frontier: dict[str, np.ndarray] = {}
    inits: dict[str, Any] = {}
    todo = [tensor]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in index.initializers:
            inits[name] = index.initializers[name]
            continue
        if name != tensor:
            value = _dumped(aligned_target(by_name.get(name), target, reference), reference, name)
            if value is not None:
                frontier[name] = value
                continue
        node = index.producer.get(name)
        if node is None or node.op_type in _SKIP_OPS or any(a.type in (5, 10) for a in node.attribute):
            return None
        position = index.position[name]
        if position not in chosen:
            chosen[position] = node
            if len(chosen) > max_nodes:
                return None
            todo.extend(node.input)
    if not frontier:
        return None  # constants only: nothing of the target's own
    nodes = [chosen[p] for p in sorted(chosen)]
    model = index.model
    return Segment(tensor, nodes, frontier, inits, list(model.opset_import), int(model.ir_version))


def _dumped(value: np.ndarray | None, reference: Dump, name: str) -> np.ndarray | None:
    if value is None or name not in reference:
        return None
    ref = reference[name]
    if tuple(np.shape(value)) != tuple(ref.shape):
        return None
    return np.ascontiguousarray(value, dtype=np.dtype(ref.dtype))
