"""Run an ONNX model with onnxruntime (CPU) and capture every node output."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._lazy import lazy_import
from netdiff.errors import InputError, ModelError, ReferenceRunError
from netdiff.runners.base import InputSpec, Model, register_runner
from netdiff.types import Dump, Tensor

onnx = lazy_import("onnx")
ort = lazy_import("onnxruntime")

_ONNX_TO_NUMPY = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                  9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


@dataclass(frozen=True)
class NodeOutput:
    """Where a tensor of the graph comes from."""

    name: str
    op_type: str
    node_name: str
    order: int
    inputs: tuple[str, ...]
    output_index: int = 0


@register_runner("onnx")
class OnnxModel(Model):
    """An ONNX model run by onnxruntime on the CPU with graph optimizations disabled."""

    suffixes = (".onnx",)

    def __init__(self, path: str | Path | None = None, model: Any = None, **options: Any) -> None:
        super().__init__(path or "<in-memory model>", **options)
        self._model = model
        self._skeleton: Any = None if model is None else False  # a Skeleton, or False when not available
        self._capture: tuple[Any, list[NodeOutput]] | None = None
        self._resized: dict[tuple, tuple[Any, list[NodeOutput]]] = {}  # input shapes -> capture session

    @classmethod
    def from_proto(cls, model: Any, label: str = "<in-memory model>") -> OnnxModel:
        """Wrap an in-memory ModelProto."""
        instance = cls(label, model=model)
        return instance

    def onnx_model(self) -> Any:
        """The whole ModelProto, weights included (loaded on first use)."""
        if self._model is None:
            self._model = load_onnx(self.path)
        return self._model

    def structure(self) -> Any:
        """A ModelProto with the graph, inputs and outputs; its large weights may be left out
        (the mapped skeleton, see :mod:`netdiff.runners.onnx_skeleton`)."""
        skeleton = self._mapped()
        return skeleton.model if skeleton else self.onnx_model()

    def _mapped(self) -> Any:
        if self._skeleton is None:
            from netdiff.runners.onnx_skeleton import open_skeleton

            try:
                self._skeleton = open_skeleton(self.path) or False
            except ModelError as e:  # external data out of place or missing
                raise ModelError(f"{self.path}: {e}") from e
            except Exception as e:  # protobuf DecodeError, WireError: not an ONNX file
                raise ModelError(f"{self.path}: not a readable ONNX model ({_first_line(e)})") from e
        return self._skeleton

    def input_specs(self) -> list[InputSpec]:
        """The graph inputs; a static 4-D input's H and W are defaults (run at the input's size, see
        :meth:`_session_for`)."""
        return [InputSpec(s.name, s.shape, s.dtype, s.flexible_batch,
                          flexible_spatial=len(s.shape) == 4 and all(isinstance(d, int) for d in s.shape[2:]))
                for s in graph_input_specs(self.structure())]

    def describe(self) -> dict[str, Any]:
        model = self.structure()
        return {"path": str(self.path), "format": self.name, "kind": "model", "nodes": len(model.graph.node),
                "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}

    def _run(self, feeds: dict[str, np.ndarray], on_tensor: Callable[[str], None] | None) -> Dump:
        model = self.structure()
        specs = {s.name: s for s in self.input_specs()}
        check_feeds(feeds, specs)
        resized = {n: tuple(int(d) for d in np.shape(feeds[n])) for n, spec in specs.items()
                   if spec.flexible_spatial and tuple(np.shape(feeds[n]))[2:] != tuple(spec.shape[2:])}
        session, outputs = self._resized_session(resized) if resized else self._capture_session()
        names = [o.name for o in outputs]
        try:
            values = session.run(names, feeds)
        except Exception as e:  # onnxruntime raises its own exception types
            if resized:
                raise ModelError(f"{self.path}: the model does not run at input {_shapes(resized)} (declared "
                                 f"{_shapes({n: specs[n].shape for n in resized})}): {_first_line(e)}") from e
            raise ReferenceRunError(f"{self.path}: onnxruntime failed: {_first_line(e)}") from e
        tensors: dict[str, Tensor] = {}
        for name in specs:
            tensors[name] = Tensor.from_array(name, np.asarray(feeds[name]), op_type="Input", order=0,
                                              source="input")
        for out, value in zip(outputs, values):
            tensors[out.name] = Tensor.from_array(out.name, np.asarray(value), op_type=out.op_type,
                                                  order=out.order, inputs=out.inputs,
                                                  meta={"node": out.node_name, "output_index": out.output_index}, source="onnxruntime")
            if on_tensor is not None:
                on_tensor(out.name)
        graph_outputs = [o.name for o in model.graph.output]
        return Dump(tensors=tensors, source=str(self.path), format=self.name, graph_inputs=list(specs),
                    graph_outputs=graph_outputs)


    def _resized_session(self, shapes: dict[str, tuple[int, ...]]) -> tuple[Any, list[NodeOutput]]:
        """A capture session with those inputs re-declared at ``shapes`` and every inner shape left to
        onnxruntime to infer again (a fully convolutional model run at the image's size)."""
        key = tuple(sorted(shapes.items()))
        if key not in self._resized:
            model = onnx.ModelProto()
            model.CopyFrom(self.onnx_model())
            for value in model.graph.input:
                if value.name in shapes:
                    dims = value.type.tensor_type.shape.dim
                    for dim, size in zip(dims, shapes[value.name]):
                        dim.Clear()
                        dim.dim_value = size
            del model.graph.value_info[:]
            for value in model.graph.output:
                value.type.tensor_type.ClearField("shape")
            outputs = node_outputs(model)
            try:
                session = make_session(model, outputs=[o.name for o in outputs])
            except ModelError as e:
                raise ModelError(f"{self.path}: the model does not run at input {_shapes(shapes)}: {e}") from e
            self._resized[key] = (session, outputs)
        return self._resized[key]

    def _capture_session(self) -> tuple[Any, list[NodeOutput]]:
        """The session with every node output as a graph output, built once per model object
        (building it costs more than a run of a small model)."""
        if self._capture is None:
            model = self.structure()
            outputs = node_outputs(model)
            names = [o.name for o in outputs]
            skeleton = self._mapped()
            if skeleton:  # the weights stay in the mapped file
                try:
                    session = skeleton.session(graph_outputs_patch(model, names), _session_options(False))
                except ModelError as e:
                    raise ModelError(f"{self.path}: {e}") from e
                except Exception as e:  # onnxruntime's own exception types
                    raise ModelError(f"onnxruntime cannot load the model: {_first_line(e)}") from e
            else:  # external data, or a file that cannot be mapped
                session = make_session(model, outputs=names)
            self._capture = (session, outputs)
        return self._capture


def _shapes(shapes: dict[str, Any]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


def load_onnx(path: str | Path) -> Any:
    """Load an ONNX model, external data included.

    Raises:
        ModelError: The file is unreadable, not an ONNX model, or its external data is missing.
    """
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    path = Path(path)
    try:
        model = onnx.ModelProto()
        model.ParseFromString(path.read_bytes())
        if any(uses_external_data(t) for t in _all_tensors(model.graph)):
            load_external_data_for_model(model, str(path.parent))
        return model
    except FileNotFoundError as e:
        missing = "model file" if Path(e.filename or "") == path else "external data file"
        raise ModelError(f"{path}: {missing} missing ({e.filename})") from e
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model ({_first_line(e)})") from e


def _first_line(error: Exception) -> str:
    """An exception's first line (onnxruntime's messages carry whole stack traces), or its type."""
    text = str(error)
    return text.splitlines()[0] if text.strip() else type(error).__name__


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _all_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _all_tensors(sub)


def node_names(model: Any) -> list[str]:
    """Node names with stable synthetic names ("<op_type>_<index>") for unnamed nodes."""
    used = {n.name for n in model.graph.node if n.name}
    names = []
    for i, node in enumerate(model.graph.node):
        name = node.name
        if not name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            used.add(name)
        names.append(name)
    return names


def node_outputs(model: Any) -> list[NodeOutput]:
    """Every named node output in topological order (graph inputs excluded)."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    result = []
    for i, (node, name) in enumerate(zip(graph.node, node_names(model))):
        inputs = tuple(x for x in node.input if x and x not in initializers)
        for k, out in enumerate(node.output):
            if out:
                result.append(NodeOutput(out, node.op_type, name, i + 1, inputs, k))
    return result


def graph_input_specs(model: Any) -> list[InputSpec]:
    """Inputs that need feeding (initializers listed as inputs are skipped)."""
    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        ttype = value.type.tensor_type
        dims: list[int | str | None] = []
        for d in ttype.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        specs.append(InputSpec(value.name, tuple(dims), _ONNX_TO_NUMPY.get(ttype.elem_type, "float32")))
    return specs


def check_feeds(feeds: dict[str, np.ndarray], specs: dict[str, InputSpec]) -> None:
    """Raise InputError when feeds miss an input or disagree with its declared rank/shape."""
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise InputError(f"missing input(s) {', '.join(missing)}; the model needs: "
                         + ", ".join(f"{s.name}{list(s.shape)}" for s in specs.values()))
    extra = [n for n in feeds if n not in specs]
    if extra:
        raise InputError(f"unknown input(s) {', '.join(extra)}; the model's inputs are: {', '.join(specs)}")
    for name, spec in specs.items():
        shape = tuple(int(d) for d in np.shape(feeds[name]))
        if not spec.accepts(shape):
            raise InputError(f"input {name}: shape {list(shape)} does not fit the model's {list(spec.shape)}")


def graph_outputs_patch(model: Any, names: list[str]) -> bytes:
    """Serialized bytes that, appended to ``model``'s serialization, add ``names`` as graph outputs.

    Protobuf merges repeated occurrences of an embedded message field: a second ``graph`` field
    (ModelProto field 7) holding only ``output`` entries (GraphProto field 12, ValueInfoProto with
    just a name) extends the model's outputs without copying or re-serializing the weights.
    """
    existing = {o.name for o in model.graph.output}
    from netdiff._protowire import encode_len

    entries = b"".join(encode_len(12, encode_len(1, n.encode("utf-8")))
                       for n in dict.fromkeys(names) if n not in existing)
    return encode_len(7, entries)


def with_all_outputs(model: Any, names: list[str]) -> Any:
    """Return a copy of ``model`` whose graph outputs are ``names`` (every node output)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(onnx.ValueInfoProto(name=name))
    return copy


#: Intra-op threads of new sessions (0: onnxruntime's default, every core). Dataset workers set 1,
#: so N worker processes use N cores, not N times all of them.
SESSION_THREADS = 0


def set_session_threads(threads: int) -> int:
    """Set the intra-op thread count of sessions created from now on; return the previous one."""
    global SESSION_THREADS
    previous, SESSION_THREADS = SESSION_THREADS, int(threads)
    return previous


def _session_options(optimize: bool) -> Any:
    options = ort.SessionOptions()
    if SESSION_THREADS > 0:
        options.intra_op_num_threads = SESSION_THREADS
        options.inter_op_num_threads = 1
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 3
    # netdiff runs most sessions once or a few times: packing weights for faster repeated runs costs
    # more at session creation (~25 % on a ResNet-18) than it saves
    options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def make_session(model: Any, optimize: bool = False, outputs: Sequence[str] = ()) -> Any:
    """Create a CPU InferenceSession for a ModelProto (external data handled beyond 2 GB), with
    ``outputs`` (e.g. every node output) added to the graph outputs without copying the model."""
    options = _session_options(optimize)
    try:
        try:
            data = model.SerializeToString()
        except ValueError:  # > 2 GB: go through a temporary file with external data
            return _session_via_file(with_all_outputs(model, list(outputs)) if outputs else model, options)
        if outputs:
            data += graph_outputs_patch(model, list(outputs))
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        if isinstance(e, (ModelError, ReferenceRunError)):
            raise
        raise ModelError(f"onnxruntime cannot load the model: {_first_line(e)}") from e


def _session_via_file(model: Any, options: Any) -> Any:
    with tempfile.TemporaryDirectory(prefix="netdiff-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin")
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
