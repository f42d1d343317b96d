"""A quantized tensor clips its values to its calibrated range: with an input wider than the
calibration data, the classifier Gemm's 10 outputs exceed their QuantizeLinear range and the target
holds them saturated. The finding names that clip only because quantizing the Gemm re-run on the
target's inputs *with* the clip reproduces the target; a Gemm that is wrong (perturbed weights) keeps
``introduced_error``. QOperator's fused Conv+Relu rows, which inherit the clipped input's error, are
re-aligned to their Relu instead of reading a false cosine 0.7."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import netdiff
from netdiff.converted import adapt_target, output_quantization
from netdiff.pipeline import run_model
from netdiff.runners.base import load_model

from .conftest import MODELS, _quantize, quiet
from .test_input_quantization import out_of_range_input

GEMM = "/classifier/Gemm_output_0"
KINDS = ["qdq-per-tensor", "qdq-per-channel", "qoperator-per-channel"]


def gemm_range(path) -> list[float]:
    """The float range the model's own Gemm-output scale and zero point represent (int8)."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    s, z = float(inits[f"{GEMM}_scale"]), int(inits[f"{GEMM}_zero_point"])
    return [(-128 - z) * s, (127 - z) * s]


@pytest.mark.parametrize("kind", KINDS)
def test_saturated_gemm_output_is_named_with_a_reproducing_clip(converted, kind):
    spec = MODELS["small_cnn"]
    path = converted("small_cnn", kind)
    report = netdiff.compare(spec["path"], path, {"input": out_of_range_input()})
    assert report.first_divergence == "input"
    at_gemm = [f for f in report.findings if f.layer == GEMM]
    assert [f.kind for f in at_gemm] == ["quantization_saturation"], [f.message for f in report.findings]
    ev = at_gemm[0].evidence
    assert ev["fitted_on"] == "isolated" and ev["elements"] == 10
    assert 0 < ev["saturated_fraction"] < 1 and ev["saturated_count"] >= 1
    assert ev["quantized_range"] == pytest.approx(gemm_range(path), rel=1e-5)
    assert ev["value_range"][0] < ev["quantized_range"][0] or ev["value_range"][1] > ev["quantized_range"][1]
    assert ev["clipped"]["cosine"] >= 0.999 and ev["clipped"]["rel_l2"] <= 0.05  # the clip reproduces the target
    assert ev["unclipped"]["cosine"] < 0.999 and ev["unclipped"]["rel_l2"] > 0.05  # without it, it does not
    assert not [f for f in report.findings if f.kind == "introduced_error"], [f.message for f in report.findings]
    for layer in report.layers:  # no false 0.7 rows: every row carries only the inherited input error
        if layer.metrics is not None:
            assert layer.metrics.cosine > 0.98, (layer.name, layer.metrics.cosine)


def test_qoperator_fused_conv_rows_inherit_the_input_error(converted):
    """QLinearConv holds relu(conv): beyond the thresholds (the clipped input's error) but clearly the Relu's."""
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", "qoperator-per-channel"),
                             {"input": out_of_range_input()})
    inherited = report.layer("input").metrics.rel_l2
    for name in ("conv1", "conv2", "conv4"):
        layer = report.layer(f"/features/{name}/Conv_output_0")
        info = layer.extra["fused_activation"]
        assert info["accepted"] == "clearly better" and info["cosine_before"] < 0.8
        assert layer.status == "diverged" and not layer.introduced
        assert layer.metrics.rel_l2 < 2 * inherited  # like its neighbours, not 0.7
        assert layer.match.method == "content"
    assert report.origins == ["input", GEMM]


@pytest.mark.parametrize("kind", KINDS)
def test_in_range_input_has_no_saturation(converted, kind):
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", kind), {"input": spec["test"]()})
    assert not [f for f in report.findings if f.kind == "quantization_saturation"]
    assert report.first_divergence is None


def test_a_wrong_gemm_is_not_explained_by_the_clip(converted, tmp_path):
    """Negative control: the quantized Gemm weights of two output rows swapped. The output still
    saturates, but clipping the float Gemm does not reproduce it: introduced_error, no saturation claim."""
    model = onnx.load(converted("small_cnn", "qdq-per-tensor"))
    for init in model.graph.initializer:
        if init.name == "classifier.weight_quantized":
            w = numpy_helper.to_array(init).copy()
            w[[0, 3]] = w[[3, 0]]
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    broken = tmp_path / "small_cnn.gemm-rows-swapped.onnx"
    onnx.save(model, broken)
    report = netdiff.compare(MODELS["small_cnn"]["path"], broken, {"input": out_of_range_input()})
    at_gemm = [f.kind for f in report.findings if f.layer == GEMM]
    assert "quantization_saturation" not in at_gemm and "introduced_error" in at_gemm, at_gemm


def test_output_quantization_meta(converted):
    """The adapter puts each quantized tensor's scale, zero point, type and range on its target tensor."""
    spec = MODELS["small_cnn"]
    for kind in ("qdq-per-tensor", "qoperator-per-channel"):
        path = converted("small_cnn", kind)
        ref, tgt = run_model(load_model(spec["path"]), spec["test"]()), run_model(load_model(path), spec["test"]())
        dump = adapt_target(onnx.load(spec["path"]), onnx.load(path), ref.dump, tgt.dump)
        q = dump[GEMM].meta["output_quantization"]
        assert q["type"] == "int8" and q["range"] == pytest.approx(gemm_range(path), rel=1e-6)
        values = np.asarray(dump[GEMM].load())
        assert q["range"][0] - 1e-6 <= values.min() and values.max() <= q["range"][1] + 1e-6
        assert "output_quantization" not in dump["input"].meta and "input_quantization" in dump["input"].meta
    table = output_quantization(onnx.load(converted("small_cnn", "qdq-per-channel")))
    assert f"{GEMM}_DequantizeLinear_Output" in table
    assert "classifier.weight_DequantizeLinear_Output" not in table  # per-channel weights: left out


def test_a_wrong_fused_conv_is_still_blamed(converted, tmp_path):
    """Negative control for the fused re-alignment beyond the thresholds: QLinearConv conv2 with two
    output channels' weights swapped (in-range input). Its row is re-aligned to relu2 (cosine 0.99, not
    0.64 by name) but stays diverged, is the origin, and its re-run through the Relu blames it."""
    model = onnx.load(converted("small_cnn", "qoperator-per-channel"))
    for init in model.graph.initializer:
        if init.name == "/features/conv2.weight_quantized":
            w = numpy_helper.to_array(init).copy()
            w[[0, 3]] = w[[3, 0]]
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    broken = tmp_path / "small_cnn.conv2-swapped.onnx"
    onnx.save(model, broken)
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], broken, {"input": spec["test"]()})
    conv2 = report.layer("/features/conv2/Conv_output_0")
    assert conv2.extra["fused_activation"]["accepted"] == "clearly better" and conv2.status == "diverged"
    assert report.first_divergence == conv2.name
    assert conv2.extra["isolated_through"] == "/features/relu2/Relu_output_0"
    kinds = [f.kind for f in report.findings if f.layer == conv2.name]
    assert "introduced_error" in kinds and "quantization_saturation" not in kinds, kinds


def test_the_suggested_overrides_make_it_clean(converted, tmp_path):
    """The fix the findings give (TensorQuantOverrides covering the values seen, for the input and the
    Gemm), applied with the real quantizer, leaves no saturation and no diverged layer."""
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", "qdq-per-tensor"), {"input": out_of_range_input()})
    found = {f.layer: f for f in report.findings if f.kind == "quantization_saturation"}
    assert set(found) == {"input", GEMM}
    lo, hi = found["input"].evidence["input_range"]
    overrides = {"input": [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]}
    ev = found[GEMM].evidence
    assert "np.float32(" in found[GEMM].suggestion and ev["quantized_tensor_of"] in found[GEMM].suggestion
    overrides[ev["quantized_tensor_of"]] = [{"rmin": np.float32(min(ev["value_range"][0], ev["quantized_range"][0])),
                                             "rmax": np.float32(max(ev["value_range"][1], ev["quantized_range"][1]))}]
    fixed = tmp_path / "small_cnn.qdq-overrides.onnx"
    with quiet():
        _quantize(spec, fixed, tmp_path, fmt="qdq", per_channel=False, extra={"TensorQuantOverrides": overrides})
    again = netdiff.compare(spec["path"], fixed, {"input": out_of_range_input()})
    assert not [f for f in again.findings if f.kind == "quantization_saturation"]
    assert again.first_divergence is None and again.summary()["counts"]["diverged"] == 0


@pytest.mark.parametrize("kind", ["qdq-per-tensor", "qoperator-per-channel"])
def test_a_quantized_transpose_of_the_input_is_named(converted, kind):
    """The R-Net transposes its NHWC input, then quantizes it: a wide input is clipped there. QOperator
    quantizes the float Transpose output (QuantizeLinear -> QLinearConv): its quantized copy stands for it,
    so the clip is named at the Transpose, not blamed on the first Conv."""
    spec = MODELS["rnet"]
    x = (1.5 * np.random.default_rng(5).standard_normal(spec["test"]().shape)).astype(np.float32)
    report = netdiff.compare(spec["path"], converted("rnet", kind), {spec["input"]: x})
    assert report.first_divergence == "adjusted_input2"
    found = [f for f in report.findings if f.layer == "adjusted_input2"]
    assert [f.kind for f in found] == ["quantization_saturation"]
    assert found[0].evidence["clipped"]["cosine"] > 0.9999 and found[0].evidence["unclipped"]["cosine"] < 0.95
    assert not [f for f in report.findings if f.kind == "introduced_error"], [f.message for f in report.findings]
