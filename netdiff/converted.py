"""Models written by real converters as targets: what precision they compute in.

A target ONNX model tells its precision: QuantizeLinear/DequantizeLinear pairs (QDQ, from
onnxruntime's quantizer or a TensorRT/QAT export) and QLinear* ops (QOperator) hold the scales and
zero points; float16 initializers mark an fp16 conversion (onnxconverter-common). See
docs/converted-models.md.
"""

from __future__ import annotations

from typing import Any

from netdiff._lazy import lazy_import
from netdiff.types import Dump, Precision

np = lazy_import("numpy")

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: QOperator ops whose input 3 is the quantized weight and input 4 its scale.
QLINEAR_WEIGHTED = ("QLinearConv", "QLinearMatMul", "QGemm")
_BITS = {2: 8, 3: 8, 4: 16, 5: 16, 21: 4, 22: 4}  # ONNX element type -> bits (uint8, int8, uint16, int16, uint4, int4)
_INT_KIND = {2: "uint8", 3: "int8", 4: "int16", 5: "int16", 21: "int4", 22: "int4"}


def model_precision(model: Any, reference_model: Any = None) -> Precision | None:
    """The precision a target ONNX model computes in, or None for a float32 model.

    Args:
        model: The target ModelProto.
        reference_model: The float reference ModelProto, to key weight steps by its node names.
    """
    quantized = _quantized_precision(model, reference_model)
    if quantized is not None:
        return quantized
    inits = list(model.graph.initializer)
    floats = [i.data_type for i in inits if i.data_type in (1, 10, 16)]
    if floats and floats.count(10) > len(floats) / 2:
        return Precision("fp16", "model")
    if floats and floats.count(16) > len(floats) / 2:
        return Precision("bf16", "model")
    return None


def _quantized_precision(model: Any, reference_model: Any) -> Precision | None:
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    nodes = [n for n in graph.node if n.op_type in QDQ_OPS or n.op_type.startswith("QLinear") or n.op_type == "QGemm"]
    if not nodes:
        return None
    ref_nodes = _reference_nodes(reference_model)
    weight_steps: dict[str, tuple[float, ...]] = {}
    activation_steps: dict[str, float] = {}
    weight_types: list[int] = []
    act_types: list[int] = []
    per_channel = False

    def array(name: str) -> Any:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            scale = array(node.input[1])
            zp_type = _elem_type(model, node.input[2] if len(node.input) > 2 else "", inits)
            source = node.input[0]
            if scale is None:
                continue
            quantizer = producers.get(source)
            float_weight = quantizer is not None and quantizer.op_type == "QuantizeLinear" and quantizer.input[0] in inits
            if source in inits or float_weight:  # a quantized weight (or bias), or a float one with its Q/DQ pair
                if zp_type is None and source in inits:
                    zp_type = inits[source].data_type
                for user in consumers.get(node.output[0], []):
                    if len(user.input) > 1 and user.input[1] == node.output[0]:
                        weight_types.append(zp_type)
                        per_channel = per_channel or np.size(scale) > 1
                        weight_steps[_ref_name(user.name, ref_nodes)] = tuple(float(s) for s in np.ravel(scale))
            else:
                if zp_type is not None:
                    act_types.append(zp_type)
                quantizer = producers.get(source)
                float_name = quantizer.input[0] if quantizer is not None and quantizer.op_type == "QuantizeLinear" \
                    else node.output[0]
                activation_steps.setdefault(float_name, float(np.ravel(scale)[0]))
        elif node.op_type in QLINEAR_WEIGHTED and len(node.input) > 4:
            scale = array(node.input[4])
            if scale is None:
                continue
            wtype = _elem_type(model, node.input[3], inits)
            if wtype is not None:
                weight_types.append(wtype)
            per_channel = per_channel or np.size(scale) > 1
            weight_steps[_ref_name(node.name, ref_nodes)] = tuple(float(s) for s in np.ravel(scale))
        elif node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            scale = array(node.input[1])
            zp_type = _elem_type(model, node.input[2] if len(node.input) > 2 else "", inits)
            if zp_type is not None:
                act_types.append(zp_type)
            if scale is not None:
                activation_steps.setdefault(node.input[0], float(np.ravel(scale)[0]))
    if not weight_types and not act_types:
        return None
    abits = max((_BITS.get(t, 8) for t in act_types), default=8)
    wbits = max((_BITS.get(t, 8) for t in weight_types), default=abits)
    kind = _INT_KIND.get(max(act_types or weight_types, key=lambda t: _BITS.get(t, 8)), "int8")
    return Precision(kind, "model", activation_bits=abits, weight_bits=wbits, per_channel=per_channel,
                     weight_steps=weight_steps, activation_steps=activation_steps)


def _elem_type(model: Any, name: str, inits: dict[str, Any]) -> int | None:
    if not name:
        return None
    if name in inits:
        return int(inits[name].data_type)
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        if value.name == name and value.type.HasField("tensor_type"):
            return int(value.type.tensor_type.elem_type)
    return None


def _reference_nodes(reference_model: Any) -> set[str]:
    if reference_model is None:
        return set()
    from netdiff.runners.onnxrt import node_names

    return set(node_names(reference_model))


def _ref_name(node_name: str, ref_nodes: set[str]) -> str:
    """The reference node a quantized node stands for (QOperator appends ``_quant``)."""
    if node_name in ref_nodes or not node_name.endswith("_quant"):
        return node_name
    return node_name[: -len("_quant")]


#: Ops converters insert that compute nothing of the float model: their outputs are the target's internals.
HELPER_OPS = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear", "ReorderInput", "ReorderOutput",
                        "DynamicQuantizeLinear"})
NCHWC_DOMAIN = "com.microsoft.nchwc"
#: NCHWc block sizes MLAS uses (8: AVX2/NEON, 16: AVX-512); the dump does not say which.
NCHWC_BLOCKS = (8, 16)


def graph_kind(model: Any) -> str:
    """"qoperator", "qdq", "fp16", "optimized" (onnxruntime/onnxsim fused ops) or "float"."""
    ops = {n.op_type for n in model.graph.node}
    if any(op.startswith("QLinear") or op in ("QGemm", "ConvInteger", "MatMulInteger") for op in ops):
        return "qoperator"
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "qdq"
    if model_precision(model) is not None:
        return "fp16"
    if any(n.domain in ("com.microsoft", NCHWC_DOMAIN) for n in model.graph.node):
        return "optimized"
    return "float"


def adapt_target(reference_model: Any, target_model: Any, reference: Dump, target: Dump) -> Dump:
    """The target model's dump in the reference's terms (docs/converted-models.md).

    * QDQ: tensors placed on the float tensors they stand for (a DequantizeLinear output for the
      tensor it quantizes; the quantizer's renamed outputs content-checked), Q/DQ outputs target-only.
    * QOperator: quantized outputs dequantized with the scale and zero point the model holds.
    * onnxruntime NCHWc (ORT_ENABLE_ALL): blocked tensors unpacked to NCHW.
    * QDQ and QOperator: a tensor that is a quantized value (a DequantizeLinear output, a
      dequantized QOperator output) carries ``meta["output_quantization"]``
      (:func:`output_quantization`).
    * every kind: outputs of helper ops (Cast, Q/DQ, Reorder) are target-only; reference tensors
      a fusion removed are listed in ``meta["not_observable"]``.
    """
    kind = graph_kind(target_model)
    if kind == "qdq":
        target = _placed_qdq(reference_model, target_model, reference, target)
    elif kind == "qoperator":
        target = _dequantized(target_model, reference, target)
        _quantized_inputs(target_model, target, {t.name: t.load() for t in target if t.name in _entry_tensors(target_model)},
                          dequantize=True)
    if kind in ("qdq", "qoperator"):
        _attach_output_quantization(target_model, target)
    target = _unpack_nchwc(target_model, reference, target)
    _mark_internals(target_model, reference, target)
    target.meta.setdefault("graph_kind", kind)
    target.meta["not_observable"] = fused_away(reference, target)
    return target


def _placed_qdq(reference_model: Any, target_model: Any, reference: Dump, target: Dump) -> Dump:
    from netdiff.runners.onnxrt import node_outputs
    from netdiff.simulators._prepared import placed_dump
    from netdiff.simulators._qdq_names import place_qdq
    from netdiff.simulators.int8 import named_copy

    float_model = named_copy(reference_model)
    values = {t.name: t.load() for t in target if not t.error}
    ref_values = {t.name: t.load() for t in reference if not t.error}
    placement = place_qdq(float_model, target_model, values, ref_values)
    float_outputs = {o.name: o for o in node_outputs(float_model)}
    feeds = {n: values[n] for n in reference.graph_inputs if n in values}
    dump = placed_dump(float_outputs, [n for n in reference.graph_inputs if n in feeds], list(reference.graph_outputs),
                       feeds, values, placement, "qdq", {**target.meta}, source=target.source)
    dump.format = target.format
    dump.meta.pop("simulator", None)
    _quantized_inputs(target_model, dump, values)
    used = {t.meta.get("simulated_tensor") for t in dump}
    dump.target_only = [n for n in target.names if n not in used and n not in dump]
    for name in dump.target_only:  # listed (never compared), so the summary still counts them
        dump.tensors.setdefault(name, target[name])
    return dump


def input_quantization(model: Any) -> dict[str, dict[str, Any]]:
    """Graph input -> how the model quantizes it on entry: the tensor holding the dequantized copy
    (QDQ: the DequantizeLinear output; QOperator: the QuantizeLinear output), its scale, zero point,
    integer type and the float range it can represent (``[(qmin - zp) * s, (qmax - zp) * s]``)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in inits]
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    found: dict[str, dict[str, Any]] = {}
    for name in inputs:
        for q in consumers.get(name, []):
            if q.op_type != "QuantizeLinear" or len(q.input) < 2 or q.input[1] not in inits:
                continue
            scale = numpy_helper.to_array(inits[q.input[1]])
            zero = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else None
            if np.size(scale) != 1 or (zero is not None and np.size(zero) != 1):
                continue
            kind = np.dtype(zero.dtype) if zero is not None else np.dtype(np.uint8)
            if kind.kind not in "iu":
                continue
            info = np.iinfo(kind)
            s, z = float(np.ravel(scale)[0]), int(np.ravel(zero)[0]) if zero is not None else 0
            dq = next((u.output[0] for u in consumers.get(q.output[0], []) if u.op_type == "DequantizeLinear"), None)
            found[name] = {"quantized": q.output[0], "dequantized": dq, "scale": s, "zero_point": z,
                           "type": kind.name, "range": [(info.min - z) * s, (info.max - z) * s]}
            break
    return found


def quantized_range(scale: float, zero_point: int, kind: Any) -> list[float] | None:
    """The float range an integer type represents with ``scale`` / ``zero_point``:
    ``[(qmin - zp) * s, (qmax - zp) * s]`` (computed in float32, as DequantizeLinear does), or None
    for a type numpy has no integer limits for."""
    try:
        dtype = np.dtype(kind)
    except TypeError:
        return None
    if dtype.kind not in "iu":
        return None
    info, s, z = np.iinfo(dtype), np.float32(scale), np.float32(zero_point)
    return [float((np.float32(info.min) - z) * s), float((np.float32(info.max) - z) * s)]


def output_quantization(model: Any) -> dict[str, dict[str, Any]]:
    """DequantizeLinear output -> the quantization it went through: ``scale``, ``zero_point``,
    ``type`` (of the integer tensor) and ``range`` (:func:`quantized_range`); ``quantized`` names the
    integer tensor. Per-tensor scales only: a per-channel DequantizeLinear (``axis``, a weight) is
    left out, as are scales held by neither an initializer nor a Constant."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n.attribute[0].t for n in graph.node
                 if n.op_type == "Constant" and n.output and n.attribute and n.attribute[0].HasField("t")}

    def array(name: str) -> Any:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return numpy_helper.to_array(constants[name]) if name in constants else None

    found: dict[str, dict[str, Any]] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2 or not node.output:
            continue
        scale = array(node.input[1])
        zero = array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or np.size(scale) != 1 or scale.dtype.kind != "f" or (zero is not None and np.size(zero) != 1):
            continue
        if zero is not None:
            kind = zero.dtype
        else:
            elem = _elem_type(model, node.input[0], inits)
            kind = helper.tensor_dtype_to_np_dtype(elem) if elem else np.dtype(np.uint8)  # ONNX's default
        z = int(np.ravel(zero)[0]) if zero is not None else 0
        limits = quantized_range(float(np.ravel(scale)[0]), z, kind)
        if limits is None:
            continue
        found[node.output[0]] = {"scale": float(np.ravel(scale)[0]), "zero_point": z, "type": np.dtype(kind).name,
                                 "range": limits, "quantized": node.input[0]}
    return found


def _attach_output_quantization(model: Any, dump: Dump) -> None:
    """Put :func:`output_quantization` on the dump's tensors that hold a DequantizeLinear output
    (under its own name or placed on a float tensor, ``meta["simulated_tensor"]``); QOperator tensors
    :func:`_dequantized` made carry it already. Graph inputs carry ``input_quantization`` instead."""
    from dataclasses import replace

    table = output_quantization(model)
    skip = set(dump.graph_inputs) | set(dump.target_only)
    for name, tensor in list(dump.tensors.items()):
        meta = dict(tensor.meta or {})
        if name in skip or "output_quantization" in meta:
            continue
        held = meta.get("simulated_tensor") or name
        if held in table:
            q = table[held]
            meta["output_quantization"] = {k: q[k] for k in ("scale", "zero_point", "type", "range", "quantized")}
            dump.tensors[name] = replace(tensor, meta=meta)


def _entry_tensors(model: Any) -> set[str]:
    return {q["quantized"] for q in input_quantization(model).values()}


def _quantized_inputs(model: Any, dump: Dump, values: dict[str, Any], dequantize: bool = False) -> None:
    """A graph input the model quantizes on entry is, for the rest of the model, its quantized copy:
    that copy stands for the input (clipping and rounding included). QDQ: the DequantizeLinear
    output; QOperator (``dequantize``): the QuantizeLinear output, dequantized."""
    for name, q in input_quantization(model).items():
        dq = q["quantized"] if dequantize else q["dequantized"]
        if name not in dump.tensors or dq is None or dq not in values:
            continue
        fed = dump.tensors[name]
        value = np.asarray(values[dq], dtype=np.float32)
        if dequantize:
            value = ((value - np.float32(q["zero_point"])) * np.float32(q["scale"])).astype(np.float32)
        dump.tensors[name] = type(fed).from_array(
            name, value, op_type=fed.op_type, order=fed.order, layout=fed.layout, source=fed.source,
            meta={**dict(fed.meta), "simulated_tensor": dq, "placed_by": "name",
                  "input_quantization": {k: q[k] for k in ("scale", "zero_point", "type", "range")}})


def _dequantized(target_model: Any, reference: Dump, target: Dump) -> Dump:
    """QOperator: ``X_quantized`` (uint8/int8) becomes ``X`` = (q - zero_point) * scale.

    A float ``X`` the model computes and then quantizes (``QuantizeLinear(X) -> X_quantized``, e.g. a
    float Transpose or Relu before a QLinear op) is replaced by that quantized copy, as a QDQ
    model's DequantizeLinear output stands for its tensor: every consumer reads the copy (clipping and
    rounding included). Graph inputs are left to :func:`_quantized_inputs`.
    """
    params = quantization_params(target_model)
    producers = {o: n for n in target_model.graph.node for o in n.output if o}
    tensors = dict(target.tensors)
    internal: list[str] = []
    for name, tensor in target.tensors.items():
        if name not in params:
            continue
        base = name[: -len("_quantized")] if name.endswith("_quantized") else None
        internal.append(name)
        if base is None or base not in reference or base in target.graph_inputs:
            continue
        quantizer = producers.get(name)
        requantized = quantizer is not None and quantizer.op_type == "QuantizeLinear" and quantizer.input[0] == base
        if base in target.tensors and not requantized:
            continue
        scale, zero = params[name]

        def load(t=tensor, s=scale, z=zero) -> Any:
            return ((np.asarray(t.load(), dtype=np.float32) - np.float32(z)) * np.float32(s)).astype(np.float32)

        ref = reference[base]
        meta = {**dict(tensor.meta), "dequantized_from": name, "scale": float(scale), "zero_point": int(zero),
                "reference_op": ref.op_type}
        like = tensor
        if base in target.tensors:  # the float value before QuantizeLinear gives way to its quantized copy
            meta["replaces_float_value"] = True
            like = target.tensors[base]
        limits = quantized_range(scale, zero, tensor.dtype)
        if limits is not None:
            meta["output_quantization"] = {"scale": float(scale), "zero_point": int(zero),
                                           "type": np.dtype(tensor.dtype).name, "range": limits, "quantized": name}
        tensors[base] = type(tensor)(name=base, shape=tensor.shape, dtype="float32", loader=load, layout=like.layout,
                                     op_type=like.op_type, order=like.order, inputs=like.inputs,
                                     source=tensor.source, meta=meta)
    dump = Dump(tensors=tensors, source=target.source, format=target.format, graph_inputs=list(target.graph_inputs),
                graph_outputs=list(target.graph_outputs), meta=dict(target.meta),
                target_only=[*target.target_only, *internal])
    return dump


def quantization_params(model: Any) -> dict[str, tuple[float, int]]:
    """Quantized tensor -> (scale, zero point) of a QOperator/QDQ model, per-tensor scales only.

    Read where the model uses the tensor: the (scale, zero point) inputs that follow it at a
    consumer (QLinear*, QGemm, DequantizeLinear) or that its producer (QuantizeLinear) was given.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}

    def value(name: str) -> Any:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    found: dict[str, tuple[float, int]] = {}
    for node in graph.node:
        op = node.op_type
        if not (op.startswith("QLinear") or op in ("QGemm", "DequantizeLinear", "QuantizeLinear")):
            continue
        ins = list(node.input)
        slots: list[tuple[str, int]] = []
        if op == "QuantizeLinear" and len(ins) >= 2:
            slots.append((node.output[0], 1))
        else:
            for i, x in enumerate(ins):
                if x and x not in inits and i + 1 < len(ins):
                    slots.append((x, i + 1))
            if op != "DequantizeLinear" and op != "QuantizeLinear":
                # the output's own scale / zero point: the last float/int pair of a QLinear op's inputs
                # (QLinearConcat puts it first: Y_scale, Y_zero_point, then one triple per input)
                pairs = [i for i in range(len(ins) - 1) if ins[i] in inits and inits[ins[i]].data_type == 1
                         and ins[i + 1] in inits and inits[ins[i + 1]].data_type in (2, 3)]
                if pairs and node.output:
                    slots.append((node.output[0], pairs[0] if op == "QLinearConcat" else pairs[-1]))
        for tensor, at in slots:
            scale = value(ins[at]) if at < len(ins) else None
            zero = value(ins[at + 1]) if at + 1 < len(ins) and ins[at + 1] else np.zeros((), np.int64)
            if scale is None or zero is None or np.size(scale) != 1 or scale.dtype.kind != "f":
                continue
            found.setdefault(tensor, (float(np.ravel(scale)[0]), int(np.ravel(zero)[0])))
    # ops that pass quantized data through (MaxPool, Flatten, Reshape ...) keep their input's parameters
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
                                                               "Unsqueeze", "Identity") and node.input:
            if node.input[0] in found and node.output[0] not in found:
                found[node.output[0]] = found[node.input[0]]
    return found


def _unpack_nchwc(model: Any, reference: Dump, target: Dump) -> Dump:
    """onnxruntime's NCHWc nodes (named ``<reference tensor>_nchwc``) hold blocked data: unpack it to NCHW."""
    nodes = {n.output[0]: n for n in model.graph.node if n.domain == NCHWC_DOMAIN and n.output}
    for name, node in nodes.items():
        base = node.name[: -len("_nchwc")] if node.name.endswith("_nchwc") else None
        if name not in target or base is None or base not in reference or base in target.tensors:
            continue
        tensor, ref = target[name], reference[base]
        if len(tensor.shape) != 4 or tuple(tensor.shape[2:]) != tuple(ref.shape[2:]):
            continue
        raw, expected = np.asarray(tensor.load()), np.asarray(ref.load())
        best = max(((_unblock(raw, b, ref.shape[1]), b) for b in NCHWC_BLOCKS if raw.shape[1] % b == 0),
                   key=lambda p: _cos(p[0], expected), default=None)
        if best is None or best[0] is None:
            continue
        array, block = best
        target.tensors[base] = type(tensor).from_array(
            base, array, op_type=tensor.op_type, order=tensor.order, inputs=tensor.inputs, source=tensor.source,
            meta={**dict(tensor.meta), "nchwc_tensor": name, "nchwc_block": block})
        target.target_only.append(name)
    return target


def _unblock(raw: Any, block: int, channels: int) -> Any:
    n, c, h, w = raw.shape
    out = np.ascontiguousarray(raw).reshape(n, c // block, h, w, block).transpose(0, 1, 4, 2, 3).reshape(n, c, h, w)
    return out[:, :channels] if channels <= c else None


def _cos(a: Any, b: Any) -> float:
    if a is None or np.shape(a) != np.shape(b):
        return -2.0
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    return float(x @ y / (nx * ny)) if nx > 0 and ny > 0 else -1.0


def _mark_internals(model: Any, reference: Dump, target: Dump) -> None:
    """Outputs of helper ops (Cast, Q/DQ, Reorder, NCHWc) that the reference does not name are target-only."""
    internal = set(target.target_only)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)

    def unplaced(name: str) -> bool:
        return name in target.tensors and name not in reference and not target[name].origin_names

    for node in model.graph.node:
        if node.op_type in HELPER_OPS or node.domain == NCHWC_DOMAIN:
            internal.update(o for o in node.output if o and unplaced(o))
    for name in target.names:  # a value only a helper op reads (the float16 result before its Cast back)
        users = consumers.get(name, [])
        if unplaced(name) and users and all(u.op_type in HELPER_OPS for u in users):
            internal.add(name)
    target.target_only = [n for n in target.names if n in internal]


def fused_away(reference: Dump, target: Dump) -> dict[str, str]:
    """Reference tensors the target has no tensor for, computed inside a fused target op.

    A missing reference tensor is fused away when its value flows, through missing tensors only,
    into a tensor the target has and writes with *another op* than the reference (FusedConv for
    Relu, Gemm for Add, QLinearConv for Conv), and comes from tensors the target has (or that are
    fused away too): the converter computed the whole chain in one op and never wrote it.
    """
    fused_ops = {t.origin_names[-1] if t.origin_names else t.name for t in target
                 if t.op_type and t.name not in target.target_only}
    fused_ops = {n for n in fused_ops if n in reference and _producer_op(target, n) != reference[n].op_type}
    present = {t.origin_names[-1] if t.origin_names else t.name for t in target if t.name not in target.target_only}
    present |= set(target.graph_inputs)
    consumers: dict[str, list[str]] = {}
    for t in reference:
        for x in t.inputs:
            consumers.setdefault(x, []).append(t.name)
    reasons: dict[str, str] = {}
    for t in reference:  # topological order
        if t.name in present or t.op_type == "Input" or t.name in reference.graph_outputs:
            continue
        if not t.inputs or not all(x in present or x in reasons or x not in reference for x in t.inputs):
            continue
        into = _first_present(t.name, consumers, fused_ops)
        if into is not None:
            reasons[t.name] = f"fused away: the target computes {into!r} in one op without writing this tensor"
    return reasons


def _producer_op(target: Dump, name: str) -> str | None:
    tensor = target.tensors.get(name)
    if tensor is None:
        tensor = next((t for t in target if t.origin_names and t.origin_names[-1] == name), None)
    return tensor.op_type if tensor is not None else None


def _first_present(name: str, consumers: dict[str, list[str]], present: set[str], depth: int = 4) -> str | None:
    frontier = [name]
    for _ in range(depth):
        following = [c for n in frontier for c in consumers.get(n, [])]
        for c in following:
            if c in present:
                return c
        frontier = following
    return None


#: Ops whose inputs after the first are scales / zero points (recorded in a dump's graph skeleton).
_PARAM_OPS = ("QuantizeLinear", "DequantizeLinear", "QGemm")
#: Largest initializer (elements) a dump's graph skeleton records.
SKELETON_MAX_ELEMENTS = 1 << 16


def graph_skeleton(model: Any) -> dict[str, Any]:
    """What :func:`adapt_target` needs of a converted model, as plain JSON for a dump's manifest
    (``meta["graph"]``): each node's name, op type, domain, inputs and outputs, the graph inputs,
    and the quantization parameters (scales and zero points, from initializers or Constant nodes)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output and n.attribute}
    wanted = {x for n in graph.node if n.op_type in _PARAM_OPS or n.op_type.startswith("QLinear")
              for x in n.input[1:] if x}
    params: dict[str, Any] = {}
    for name in sorted(wanted):
        if name in inits:
            array = numpy_helper.to_array(inits[name])
        elif name in constants and constants[name].attribute[0].HasField("t"):
            array = numpy_helper.to_array(constants[name].attribute[0].t)
        else:
            continue
        if array.size <= SKELETON_MAX_ELEMENTS and array.dtype.kind in "fiu":
            params[name] = {"dtype": array.dtype.name, "shape": list(array.shape), "values": array.ravel().tolist()}
    nodes = [[n.name, n.op_type, n.domain, list(n.input), list(n.output)] for n in graph.node
             if not (n.op_type == "Constant" and n.output and n.output[0] in params)]
    return {"nodes": nodes, "inputs": [v.name for v in graph.input if v.name not in inits],
            "outputs": [v.name for v in graph.output], "initializers": params}


def skeleton_model(data: Any) -> Any:
    """The ModelProto a dump's graph skeleton describes (nodes without attributes: enough to align).

    Raises:
        ValueError, KeyError, TypeError: ``data`` is not a graph skeleton.
    """
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise ValueError("the dump's graph record has no node list")
    nodes = []
    for entry in data["nodes"]:
        name, op, domain, ins, outs = entry
        if not all(isinstance(x, str) for x in (name, op, domain, *ins, *outs)):
            raise TypeError("graph record: node fields must be strings")
        nodes.append(helper.make_node(op, list(ins), list(outs), name=name, domain=domain or None))
    inits = []
    for name, spec in dict(data.get("initializers") or {}).items():
        dtype = np.dtype(str(spec["dtype"]))
        if dtype.kind not in "fiu":
            raise TypeError(f"graph record: initializer {name[:80]!r} is not numeric")
        values = np.asarray(spec["values"], dtype=dtype)
        inits.append(numpy_helper.from_array(values.reshape([int(d) for d in spec["shape"]]), str(name)))
    value = lambda n: helper.make_tensor_value_info(str(n), TensorProto.FLOAT, None)  # noqa: E731
    graph = helper.make_graph(nodes, "skeleton", [value(n) for n in data.get("inputs") or []],
                              [value(n) for n in data.get("outputs") or []], inits)
    return helper.make_model(graph)

