"""Place the float model's tensors in an onnxruntime QDQ model.

The quantizer keeps node names, inserts ``X -> QuantizeLinear -> DequantizeLinear`` after each
quantized tensor (``X_QuantizeLinear_Output``, ``X_DequantizeLinear_Output``) and makes the
consumers read the dequantized copy. Two traps:

* With asymmetric activations it removes a Relu/Clip after a quantized node and gives that
  node's output the *activation's* name: the QDQ tensor ``relu_out`` then holds the Conv's
  pre-activation value, while ``relu_out_DequantizeLinear_Output`` holds the activation's
  (clipping happens in QuantizeLinear). Same name, different meaning.
* A graph output keeps its name on the final DequantizeLinear; the producer's raw output becomes
  ``out_QuantizeLinear_Input``.

Placement is structural (node names), then checked by content: where a raw tensor's name is
another float tensor's name, the value is compared with both float candidates and kept where it
matches (method "content").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netdiff._lazy import lazy_import
from netdiff.simulators._prepared import Placement

np = lazy_import("numpy")

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    if np.shape(a) != np.shape(b):
        return -2.0
    x = np.nan_to_num(np.asarray(a, np.float64).ravel())
    y = np.nan_to_num(np.asarray(b, np.float64).ravel())
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0 or ny == 0:
        return 1.0 if nx == ny else 0.0
    return float(np.dot(x, y) / (nx * ny))


def dequantized_copies(qdq_model: Any) -> dict[str, str]:
    """Tensor -> the DequantizeLinear output of its QuantizeLinear -> DequantizeLinear pair."""
    consumers: dict[str, list[Any]] = {}
    for node in qdq_model.graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    result = {}
    for node in qdq_model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        for user in consumers.get(node.output[0], []):
            if user.op_type == "DequantizeLinear":
                result.setdefault(node.input[0], user.output[0])
                break
    return result


def raw_outputs(float_model: Any, qdq_model: Any) -> dict[str, str]:
    """QDQ tensor -> float tensor, for outputs of nodes the float model has (same name and type)."""
    float_nodes = {n.name: n for n in float_model.graph.node if n.name}
    by_output = {o: n for n in float_model.graph.node for o in n.output if o}
    result = {}
    for node in qdq_model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        original = float_nodes.get(node.name)
        if original is None or original.op_type != node.op_type:
            # a node the converter named otherwise: the same output name from the same op type
            result.update({o: o for o in node.output if o in by_output and by_output[o].op_type == node.op_type})
            continue
        for out, orig in zip(node.output, original.output):
            if out and orig:
                result[out] = orig
    return result


def place_qdq(float_model: Any, qdq_model: Any, values: Mapping[str, np.ndarray],
              reference: Mapping[str, np.ndarray] | None = None, tolerance: float = 1e-6) -> Placement:
    """Where each float tensor's value is in the QDQ model (content-checked with ``reference``)."""
    placement = Placement()
    initializers = {i.name for i in float_model.graph.initializer}
    for value in float_model.graph.input:
        if value.name not in initializers:
            placement.boundaries[value.name] = value.name
    float_tensors = {o for n in float_model.graph.node for o in n.output if o}
    qdq_produced = {o for n in qdq_model.graph.node if n.op_type not in QDQ_OPS for o in n.output}
    dq = dequantized_copies(qdq_model)
    raw = raw_outputs(float_model, qdq_model)
    placement.boundaries.update(raw)
    for tensor, float_name in raw.items():
        renamed_over = tensor != float_name and tensor in float_tensors and tensor not in raw.values()
        if renamed_over:
            # The quantizer removed the activation ``tensor`` and named this output after it.
            _place(placement, float_name, tensor, "content")
            if tensor in dq:
                _place(placement, tensor, dq[tensor], "content")
            elif tensor not in qdq_produced:
                continue
        else:
            holder = dq.get(tensor, tensor)
            _place(placement, float_name, holder, "name" if holder in (float_name, dq.get(float_name)) else "node")
    if reference is not None:
        _check_content(placement, values, reference, tolerance)
    return placement


def _place(placement: Placement, float_name: str, tensor: str, method: str) -> None:
    placement.targets[float_name] = tensor
    placement.methods[float_name] = method


def _check_content(placement: Placement, values: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                   tolerance: float) -> None:
    """For each content-placed tensor, keep it only where its value matches better than its name says."""
    by_target = {t: f for f, t in placement.targets.items()}
    for float_name, tensor in list(placement.targets.items()):
        if placement.methods.get(float_name) != "content" or tensor not in values:
            continue
        named = _named_float(tensor, reference)
        if named is None or named == float_name or float_name not in reference:
            continue
        placed = _cosine(values[tensor], reference[float_name])
        other = _cosine(values[tensor], reference[named])
        placement.notes[float_name] = (f"QDQ tensor {tensor!r}: cosine {placed:.6f} with {float_name!r}, "
                                       f"{other:.6f} with {named!r}")
        if other > placed + tolerance and by_target.get(tensor) == float_name \
                and not _negative_where_named_is_not(values[tensor], reference[named]):
            # The content says the name was right after all: follow it.
            del placement.targets[float_name]
            placement.methods.pop(float_name, None)
            if named not in placement.targets:
                _place(placement, named, tensor, "content")


def _negative_where_named_is_not(value: np.ndarray, named: np.ndarray, share: float = 0.01) -> bool:
    """True when the tensor has many negative values and the float tensor of its name has none (a
    Relu output): it cannot hold that activation, however noisy the cosines are."""
    v, n = np.asarray(value), np.asarray(named)
    return bool(v.size and n.size and float(np.min(n)) >= 0 and float(np.mean(v < 0)) > share)


def _named_float(tensor: str, reference: Mapping[str, np.ndarray]) -> str | None:
    """The float tensor a QDQ tensor's name points to (its own name, or the name before a Q/DQ suffix)."""
    if tensor in reference:
        return tensor
    for suffix in ("_DequantizeLinear_Output", "_QuantizeLinear_Input"):
        if tensor.endswith(suffix) and tensor[: -len(suffix)] in reference:
            return tensor[: -len(suffix)]
    return None
