"""Models written by real converters as targets: what precision they compute in.

A target ONNX model tells its precision: QuantizeLinear/DequantizeLinear pairs (QDQ, from
onnxruntime's quantizer or a TensorRT/QAT export) and QLinear* ops (QOperator) hold the scales and
zero points; float16 initializers mark an fp16 conversion (onnxconverter-common). See
docs/converted-models.md.
"""

from __future__ import annotations

from typing import Any

from netdiff._lazy import lazy_import
from netdiff.types import Precision

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
            if source in inits:  # a quantized weight (or bias) held as an initializer
                if zp_type is None:
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
        elif node.op_type == "QuantizeLinear":
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
