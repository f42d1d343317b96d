"""Simulate a float16 target (Ascend's default force_fp16 mode, fp16 TensorRT/RKNN builds).

The float model is converted to float16 here (no converter package needed): float initializers
and Constant values become float16, Cast(to=float) becomes Cast(to=float16), and a Cast is
inserted wherever a float32 tensor meets a float16 node and back. Model inputs and outputs stay
float32; integer tensors (shapes, indices) are untouched; ops that ONNX requires in float32
(Resize scales/roi) or that have no float16 kernel stay float32. Tensor names are kept, so the
dump aligns to the float model by name; values are cast back to float32 in the dump.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any


from netdiff._lazy import lazy_import
from netdiff.errors import ModelError
from netdiff.simulators._prepared import Placement, PreparedTarget
from netdiff.simulators.base import Feeds, Simulator, register_simulator
from netdiff.types import Dump

np = lazy_import("numpy")
onnx = lazy_import("onnx")

FLOAT, FLOAT16 = 1, 10
#: Inputs ONNX requires in float32 whatever the data type (op type -> input indices).
FP32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}
#: Ops kept in float32: random generators, control flow, quantization ops, NMS.
KEEP_FP32_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                           "EyeLike", "Loop", "If", "Scan", "QuantizeLinear", "DequantizeLinear",
                           "DynamicQuantizeLinear", "NonMaxSuppression"})
_NO_KERNEL = re.compile(r"Could not find an implementation for \w+\(\d+\) node with name '([^']*)'")


def elem_types(model: Any) -> dict[str, int]:
    """ONNX element type of every tensor known after shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; declared types remain
        inferred = model
    graph = inferred.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    return types


def half_nodes(model: Any, types: Mapping[str, int], keep: Collection[str] = ()) -> list[str]:
    """Names (see ``node_names``) of the nodes :func:`convert_to_fp16` runs in float16 that produce float data."""
    from netdiff.runners.onnxrt import node_names

    return [name for node, name in zip(model.graph.node, node_names(model))
            if not _stays_fp32(node, name, keep) and any(types.get(o) == FLOAT for o in node.output if o)]


def _stays_fp32(node: Any, name: str, keep: Collection[str]) -> bool:
    return (node.op_type in KEEP_FP32_OPS or node.op_type in keep or name in keep
            or node.domain not in ("", "ai.onnx"))


def convert_to_fp16(model: Any, keep: Collection[str] = (), types: Mapping[str, int] | None = None,
                    halves: dict[str, Any] | None = None) -> Any:
    """Return a float16 copy of ``model`` with float32 inputs and outputs.

    Args:
        model: Float ONNX ModelProto (not modified).
        keep: Op types or node names to keep in float32.
        types: Element type per tensor (default: from shape inference).
        halves: Cache of float16 initializers by name, filled and reused across conversions of
            the same model (sensitivity converts it once per configuration).
    """
    from onnx import helper, numpy_helper

    from netdiff.runners.onnxrt import node_names

    types = dict(types or elem_types(model))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    names = node_names(out)
    for node, name in zip(graph.node, names):
        node.name = name
    fp32 = {i for i, n in enumerate(graph.node) if _stays_fp32(n, n.name, keep)}
    inits = {i.name: i for i in graph.initializer}
    wants16: dict[str, bool] = {}
    for i, node in enumerate(graph.node):
        for k, x in enumerate(node.input):
            if x in inits and inits[x].data_type == FLOAT:
                want = i not in fp32 and k not in FP32_INPUTS.get(node.op_type, ())
                wants16[x] = wants16.get(x, True) and want
    dtype = {name: types.get(name) for name in types}
    for name, want in wants16.items():
        if want:
            half = halves.get(name) if halves is not None else None
            if half is None:
                half = numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype(np.float16), name)
                if halves is not None:
                    halves[name] = half
            inits[name].CopyFrom(half)
            dtype[name] = FLOAT16
    new_nodes: list[Any] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = cast_out = f"{name}__to_{'fp16' if to == FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [cast_out], name=f"{cast_out}_Cast", to=to))
            if to == FLOAT16:  # else onnxruntime drops this Cast when the consumer has no float16 kernel
                casts[key] = f"{cast_out}__fp16_kept"
                new_nodes.append(helper.make_node("Identity", [cast_out], [casts[key]], name=f"{casts[key]}_Identity"))
        return casts[key]

    guarded: dict[str, str] = {}
    for i, node in enumerate(graph.node):
        half = i not in fp32
        for k, x in enumerate(node.input):
            if x in guarded:
                node.input[k] = x = guarded[x]
            have = dtype.get(x)
            if not x or have not in (FLOAT, FLOAT16):
                continue
            need = FLOAT16 if half and k not in FP32_INPUTS.get(node.op_type, ()) else FLOAT
            if have != need:
                node.input[k] = cast(x, need)
        if half:
            _half_attributes(node)
        new_nodes.append(node)
        for o in node.output:
            t = types.get(o)
            dtype[o] = FLOAT16 if half and t == FLOAT else t
            if o and dtype[o] == FLOAT16:
                # onnxruntime runs ops without a float16 kernel in float32 between Casts it inserts, and
                # drops such Cast pairs between two of them: an Identity keeps every tensor in float16.
                guarded[o] = kept = f"{o}__fp16_kept"
                dtype[kept] = FLOAT16
                new_nodes.append(helper.make_node("Identity", [o], [kept], name=f"{kept}_Identity"))
    for value in graph.output:
        if dtype.get(value.name) == FLOAT16:
            inner = f"{value.name}__fp16"
            new_nodes = [n for n in new_nodes if n.name != f"{value.name}__fp16_kept_Identity"]
            for node in new_nodes:
                for seq in (node.input, node.output):
                    for k, x in enumerate(seq):
                        if x == value.name:
                            seq[k] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [value.name], name=f"{value.name}__to_fp32_Cast", to=FLOAT))
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    return out


def _half_attributes(node: Any) -> None:
    """Make a node that creates float32 values create float16 ones."""
    from onnx import helper, numpy_helper

    if node.op_type == "Cast":
        for a in node.attribute:
            if a.name == "to" and a.i == FLOAT:
                a.i = FLOAT16
    elif node.op_type in ("Constant", "ConstantOfShape"):
        for a in list(node.attribute):
            if a.name == "value" and a.t.data_type == FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            elif a.name in ("value_float", "value_floats"):
                value = np.asarray(a.f if a.name == "value_float" else list(a.floats), dtype=np.float16)
                node.attribute.remove(a)
                node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value)))


class Fp16Target(PreparedTarget):
    """The float16 model: every float tensor keeps its name (graph outputs via a final Cast)."""

    kind = "fp16"

    def place(self, values: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray] | None) -> Placement:
        placement = Placement()
        for name in self.graph_inputs:
            placement.boundaries[name] = name
        outputs = set(self.graph_outputs)
        for name in self.float_outputs:
            inner = f"{name}__fp16" if name in outputs and f"{name}__fp16" in values else name
            if inner in values:
                placement.targets[name] = inner
                placement.boundaries[inner] = name
        return placement


def prepare_fp16(model: Any, keep: Collection[str] = (), max_retries: int = 32) -> Fp16Target:
    """Convert ``model`` and open its session; ops without a float16 kernel fall back to float32."""
    from netdiff.runners.onnxrt import make_session

    keep = set(keep)
    types = elem_types(model)
    fallback: list[str] = []
    for _ in range(max_retries):
        converted = convert_to_fp16(model, keep, types)
        target = Fp16Target(model, converted, {"fp32_nodes": len(fallback), "precision": "float16"})
        try:
            target._names = [o for n in converted.graph.node for o in n.output if o]
            target._session = make_session(converted, outputs=target._names)
            if fallback:
                target.meta["fp32_fallback"] = ",".join(fallback)
            return target
        except ModelError as e:
            m = _NO_KERNEL.search(str(e))
            if not m or m.group(1) in keep:
                raise ModelError(f"the float16 model cannot be loaded: {str(e).splitlines()[0]}") from e
            keep.add(m.group(1))
            fallback.append(m.group(1))
    raise ModelError(f"too many ops without a float16 kernel ({', '.join(fallback[:5])}, ...)")


@register_simulator("fp16")
class Fp16Simulator(Simulator):
    """Whole model in float16 (inputs/outputs float32), run by onnxruntime."""

    summary = "model converted to float16 (Ascend force_fp16, fp16 engines), run by onnxruntime"
    options = {"keep_fp32": "comma-separated op types or node names kept in float32"}

    def prepare(self, model: Any, calibration: Sequence[Feeds] = (), **options: Any) -> Fp16Target:
        """Convert once; the result runs many inputs (see :class:`PreparedTarget`)."""
        unknown = set(options) - set(self.options)
        if unknown:
            from netdiff.errors import NetdiffError

            raise NetdiffError(f"option(s) {', '.join(sorted(unknown))} do not apply to target 'fp16'")
        keep = options.get("keep_fp32") or ()
        if isinstance(keep, str):
            keep = [k.strip() for k in keep.split(",") if k.strip()]
        return prepare_fp16(model, keep)

    def _simulate(self, model: Any, feeds: Feeds, calibration: Sequence[Feeds], **options: Any) -> Dump:
        return self.prepare(model, calibration, **options).dump(feeds)
