"""Real converters' models as `compare` targets (issue #17): each model is written by the converter
during the test run (conftest.py) and compared with its float original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import netdiff

from .conftest import MODELS

#: Finding kinds that would be false alarms on a clean conversion.
FALSE_ALARMS = ("introduced_error", "output_scale", "dead_output", "nan_inf")


def run(name: str, target):
    spec = MODELS[name]
    return netdiff.compare(spec["path"], target, {spec["input"]: spec["test"]()})


def false_alarms(report) -> list:
    return [f for f in report.findings if f.severity == "error"
            and (f.kind in FALSE_ALARMS or f.kind.startswith("input_"))]


def float_tensors(report) -> list:
    return [x for x in report.layers if x.status != "missing_in_reference"]


def aligned_share(report) -> float:
    layers = float_tensors(report)
    ok = [x for x in layers if x.metrics is not None or (x.status == "not_observable" and x.reason)]
    return len(ok) / len(layers)


@pytest.mark.parametrize("name", ["small_cnn", "rnet"])
@pytest.mark.parametrize("kind", ["qdq-per-tensor", "qdq-per-channel", "qdq-tensorrt"])
def test_qdq_models_are_clean_and_aligned(converted, name, kind):
    path = converted(name, kind)
    report = run(name, path)
    assert not false_alarms(report), [f.message for f in report.findings]
    assert report.first_divergence is None and not report.diverged
    assert report.summary()["counts"]["missing_in_reference"] == 0
    # the Q/DQ outputs are the target's internals, listed but never compared or counted missing
    quantized = {o for n in onnx.load(path).graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    assert quantized and quantized <= set(report.meta["target_only"])
    assert aligned_share(report) >= 0.95
    assert report.meta["precision"]["kind"] == "int8"
    assert report.meta["precision"]["per_channel"] is (kind != "qdq-per-tensor")


def test_qdq_relu_removal_trap_is_content_checked(converted):
    """The quantizer names the Conv output after the Relu it removed: compared where the value is."""
    report = run("small_cnn", converted("small_cnn", "qdq-per-tensor"))
    conv = report.layer("/features/conv1/Conv_output_0")
    relu = report.layer("/features/relu1/Relu_output_0")
    assert conv.target_name == "/features/relu1/Relu_output_0" and conv.match.method == "content"
    assert relu.target_name == "/features/relu1/Relu_output_0_DequantizeLinear_Output"
    assert conv.status == relu.status == "ok"
    assert relu.metrics.target_min >= 0 and conv.metrics.target_min < 0


@pytest.mark.parametrize("name,weight,layer", [
    ("small_cnn", "/features/conv3.weight", "/features/conv3/Conv_output_0"),
    ("rnet", "conv2d_6/kernel:0", "convolution_output1"),
])
def test_a_weight_scale_16x_coarser_is_the_first_divergence(converted, tmp_path, name, weight, layer):
    model = onnx.load(converted(name, "qdq-per-tensor"))
    inits = {i.name: i for i in model.graph.initializer}
    q, scale = (numpy_helper.to_array(inits[weight + s]) for s in ("_quantized", "_scale"))
    coarse = np.clip(np.round(q.astype(np.float64) / 16), -127, 127).astype(q.dtype)
    inits[weight + "_quantized"].CopyFrom(numpy_helper.from_array(coarse, weight + "_quantized"))
    inits[weight + "_scale"].CopyFrom(numpy_helper.from_array((scale * 16).astype(scale.dtype), weight + "_scale"))
    onnx.save(model, tmp_path / "coarse.onnx")
    report = run(name, tmp_path / "coarse.onnx")
    assert report.first_divergence == layer
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("quantization_scale", layer, "error")
    assert top.evidence["ratio"] == pytest.approx(16.0, rel=0.05)
    assert report.layer(layer).metrics.rel_l2 > 4 * report.layer(layer).expected_rel_l2


@pytest.mark.parametrize("name", ["small_cnn", "rnet"])
def test_qoperator_outputs_are_dequantized_and_aligned(converted, name):
    report = run(name, converted(name, "qoperator-per-channel"))
    assert not [f for f in report.findings if f.severity == "error"], [f.message for f in report.findings]
    assert report.first_divergence is None and not report.diverged
    layers = float_tensors(report)
    compared = [x for x in layers if x.metrics is not None]
    assert len(compared) / len(layers) >= 0.90
    # tensors the QOperator graph holds only as X_quantized (uint8/int8) are compared, dequantized
    graph = onnx.load(converted(name, "qoperator-per-channel")).graph
    produced = {o for n in graph.node for o in n.output}
    only_quantized = [x for x in layers if x.name not in produced and f"{x.name}_quantized" in produced]
    assert len(only_quantized) >= 3 and all(x.metrics is not None for x in only_quantized)
    assert report.summary()["counts"]["missing_in_reference"] == 0
    assert {f"{x.name}_quantized" for x in only_quantized} <= set(report.meta["target_only"])


@pytest.mark.parametrize("name", ["small_cnn", "rnet"])
@pytest.mark.parametrize("kind", ["fp16-keep-io", "fp16", "ort-extended", "ort-all", "onnxsim"])
def test_fp16_and_optimized_models_of_a_clean_net_are_clean(converted, name, kind):
    report = run(name, converted(name, kind))
    assert report.first_divergence is None and not report.diverged
    assert not [f for f in report.findings if f.severity == "error"], [f.message for f in report.findings]
    counts = report.summary()["counts"]
    assert counts["missing_in_reference"] == 0 and counts["missing_in_target"] == 0
    assert aligned_share(report) == 1.0


def test_fused_conv_relu_outputs_are_not_observable_with_a_reason(converted):
    report = run("small_cnn", converted("small_cnn", "ort-extended"))
    conv = report.layer("/features/conv1/Conv_output_0")
    assert conv.status == "not_observable" and "fused" in conv.reason
    assert report.layer("/features/relu1/Relu_output_0").status == "ok"
    bn = report.layer("/features/bn3/BatchNormalization_output_0")
    assert bn.status == "not_observable"


def test_nchwc_blocked_tensors_are_unpacked(converted):
    """ORT_ENABLE_ALL writes NCHWc nodes (named <tensor>_nchwc): their blocked outputs are compared."""
    report = run("small_cnn", converted("small_cnn", "ort-all"))
    relu = report.layer("/features/relu1/Relu_output_0")
    assert relu.status == "ok" and relu.metrics.cosine > 0.99999
    assert any(t.startswith("reorder_token") for t in report.meta["target_only"])


def test_fp16_models_carry_their_precision(converted):
    report = run("rnet", converted("rnet", "fp16"))
    assert (report.meta["precision"]["kind"], report.meta["precision"]["source"]) == ("fp16", "model")
    assert all(x.expected_rel_l2 is not None for x in report.layers if x.metrics is not None and x.op_type != "Input")


def test_qoperator_add_and_concat_use_their_own_output_scales(residual):
    ops = {n.op_type for n in onnx.load(residual["target"]).graph.node}
    assert {"QLinearAdd", "QLinearConcat"} <= ops
    report = netdiff.compare(residual["path"], residual["target"], {"x": residual["test"]()})
    assert report.first_divergence is None and not report.failed
    assert not [f for f in report.findings if f.severity == "error"], [f.message for f in report.findings]
    for name in ("res", "cat"):
        assert report.layer(name).status == "ok"
