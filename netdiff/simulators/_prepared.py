"""A simulated model ready to run, whose values are named after the float model's tensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netdiff._lazy import lazy_import
from netdiff.errors import ReferenceRunError
from netdiff.types import Dump, Tensor

np = lazy_import("numpy")


@dataclass
class Placement:
    """Where the value of each float tensor lives in the simulated model.

    Attributes:
        targets: Float tensor name -> simulated tensor holding its value.
        boundaries: Simulated tensor -> float tensor it stands for (inputs and raw layer outputs);
            isolated runs feed these from the float reference.
        methods: Float tensor name -> how it was placed ("name", "node" or "content").
        notes: Float tensor name -> why (content-check cosines, ...).
    """

    targets: dict[str, str] = field(default_factory=dict)
    boundaries: dict[str, str] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class PreparedTarget:
    """A simulated ONNX model with one reusable session (subclasses place the tensors)."""

    kind = ""

    def __init__(self, float_model: Any, model: Any, meta: dict[str, Any] | None = None) -> None:
        from netdiff.runners.onnxrt import node_outputs

        self.float_model = float_model
        self.model = model
        self.meta = dict(meta or {})
        self.float_outputs = {o.name: o for o in node_outputs(float_model)}
        self.graph_inputs = [i.name for i in float_model.graph.input
                             if i.name not in {x.name for x in float_model.graph.initializer}]
        self.graph_outputs = [o.name for o in float_model.graph.output]
        self.last_placement: Placement | None = None
        self._session: Any = None
        self._names: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (dataset workers): the session is rebuilt on first use in the other process."""
        state = dict(self.__dict__)
        state["_session"] = None
        state["last_placement"] = None
        return state

    def place(self, values: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray] | None) -> Placement:
        """Where each float tensor's value is (``reference`` enables content checks)."""
        raise NotImplementedError

    def values(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the simulated model and return every named node output."""
        from netdiff.runners.onnxrt import make_session

        if self._session is None:
            self._names = [o for n in self.model.graph.node for o in n.output if o]
            self._session = make_session(self.model, outputs=self._names)
        try:
            result = self._session.run(self._names, dict(feeds))
        except Exception as e:  # onnxruntime's own exception types
            raise ReferenceRunError(f"simulated {self.kind} model failed: {str(e).splitlines()[0]}") from e
        out = {k: np.asarray(v) for k, v in zip(self._names, result)}
        for name in self.graph_inputs:
            out.setdefault(name, np.asarray(feeds[name]))
        return out

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph outputs only (by float name), as float32 where floating."""
        values = self.values(feeds)
        return {name: _as_float32(values[name]) for name in self.graph_outputs}

    def dump(self, feeds: Mapping[str, np.ndarray], reference: Dump | None = None) -> Dump:
        """Run on ``feeds`` and return the target dump (names aligned via ``origin_names``)."""
        values = self.values(feeds)
        ref_values = {t.name: t.load() for t in reference} if reference is not None else None
        placement = self.place(values, ref_values)
        self.last_placement = placement
        return placed_dump(self.float_outputs, self.graph_inputs, self.graph_outputs, feeds, values, placement,
                           self.kind, self.meta)

    def isolated(self, feeds: Mapping[str, np.ndarray], reference: Dump) -> dict[str, np.ndarray]:
        """Each layer simulated alone on the float reference's inputs (float name -> value)."""
        from netdiff.simulators._isolated import isolated_values

        values = self.values(feeds)
        ref_values = {t.name: t.load() for t in reference}
        placement = self.place(values, ref_values)
        dtypes = {k: v.dtype.name for k, v in values.items()}
        return isolated_values(self.model, placement.targets, placement.boundaries, ref_values, dtypes)


def placed_dump(float_outputs: Mapping[str, Any], graph_inputs: list[str], graph_outputs: list[str],
                feeds: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray], placement: Placement, kind: str,
                meta: Mapping[str, Any] | None = None, source: str = "") -> Dump:
    """The target dump of a model whose values are placed on the float model's tensors.

    Args:
        float_outputs: Float tensor name -> its ``NodeOutput`` (op type, order, inputs, node).
        graph_inputs: The float model's input names (their values come from ``feeds``).
        graph_outputs: The float model's output names.
        feeds: Input values.
        values: Every value of the target model's run, by the target's tensor names.
        placement: Where each float tensor's value is in ``values``.
        kind: Short name of the target ("int8", "qdq", ...): formats and sources are named after it.
        meta: Extra dump meta.
        source: Dump source (default "simulated <kind>").
    """
    names = dump_names(placement, set(float_outputs))
    tensors: dict[str, Tensor] = {}
    for name in graph_inputs:
        tensors[name] = Tensor.from_array(name, np.asarray(feeds[name]), op_type="Input", order=0, source="input")
    for float_name, info in float_outputs.items():
        target = placement.targets.get(float_name)
        if target is None or target not in values:
            continue
        tmeta = {"node": info.node_name, "output_index": info.output_index,
                 "placed_by": placement.methods.get(float_name, "name"), "dtype": str(values[target].dtype),
                 "simulated_tensor": target}
        if float_name in placement.notes:
            tmeta["note"] = placement.notes[float_name]
        name = names[float_name]
        origin = (float_name,) if name != float_name else ()
        tensors[name] = Tensor.from_array(name, _as_float32(values[target]), op_type=info.op_type,
                                          order=info.order, inputs=info.inputs, origin_names=origin,
                                          source=f"simulated-{kind}", meta=tmeta)
    dump_meta = {**dict(meta or {}), "simulator": kind, "float_tensors": len(float_outputs),
                 "placed": len(placement.targets),
                 "content_checked": sum(1 for m in placement.methods.values() if m == "content")}
    return Dump(tensors=tensors, source=source or f"simulated {kind}", format=f"simulated-{kind}",
                graph_inputs=list(graph_inputs), graph_outputs=[names.get(o, o) for o in graph_outputs],
                meta=dump_meta)


def dump_names(placement: Placement, float_names: set[str]) -> dict[str, str]:
    """Dump name of each placed float tensor: its own name, unless that would hide a renamed tensor.

    A simulated tensor named after *another* float tensor (the quantizer's renamed output) keeps
    its simulated name, and so does the tensor whose float name it took; both carry
    ``origin_names`` so the trap shows in the report.
    """
    renamed = {t: f for f, t in placement.targets.items() if t != f and t in float_names}
    return {f: t if (t in renamed or f in renamed) else f for f, t in placement.targets.items()}


def _as_float32(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    return value.astype(np.float32) if value.dtype.kind == "f" and value.dtype != np.float32 else value
