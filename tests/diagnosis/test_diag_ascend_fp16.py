"""Ascend force_fp16: a divergence that is only fp16 rounding is named as such."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import netdiff
from netdiff.runners.onnxrt import OnnxModel
from netdiff.types import Dump, Tensor


def _model() -> onnx.ModelProto:
    k = numpy_helper.from_array(np.array(1.0001, np.float32), "k")
    nodes = [helper.make_node("Mul", ["x", "k"], ["b"], name="near"),
             helper.make_node("Sub", ["x", "b"], ["c"], name="cancel")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 64])], initializer=[k])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _device(reference: Dump, fmt: str, meta: dict) -> Dump:
    """What an fp16 device computes: every tensor rounded to fp16, the Sub done on fp16 operands."""
    x = reference["x"].load().astype(np.float16)
    b = reference["b"].load().astype(np.float16)
    values = {"x": x, "b": b, "c": (x - b)}
    tensors = {n: Tensor.from_array(n, v.astype(np.float32)) for n, v in values.items()}
    return Dump(tensors, source="dump", format=fmt, meta=meta)


def test_force_fp16_cancellation_is_called_fp16_precision():
    x = np.random.default_rng(0).uniform(50, 100, (1, 64)).astype(np.float32)
    reference = OnnxModel.from_proto(_model()).run({"x": x})
    report = netdiff.compare(reference, _device(reference, "ascend", {"precision_mode": "force_fp16"}))
    assert report.first_divergence == "c"
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("fp16_precision", "c", "warning")
    assert top.evidence["fp16_ulps"] <= 16 and "must_keep_origin_dtype" in top.suggestion


def test_not_claimed_without_force_fp16():
    x = np.random.default_rng(0).uniform(50, 100, (1, 64)).astype(np.float32)
    reference = OnnxModel.from_proto(_model()).run({"x": x})
    report = netdiff.compare(reference, _device(reference, "ascend", {"precision_mode": "must_keep_origin_dtype"}))
    assert all(f.kind != "fp16_precision" for f in report.findings)
