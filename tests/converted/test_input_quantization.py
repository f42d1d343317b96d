"""A QDQ model clips its graph input to the calibrated range: the input row shows it, the finding
names the input's quantization saturation, and no layer after it is blamed (audit of issue #17)."""

from __future__ import annotations

import numpy as np

import netdiff

from .conftest import MODELS


def out_of_range_input() -> np.ndarray:
    """A standard-normal input: wider than the fixture calibration images (about 2.7 % clipped)."""
    return np.random.default_rng(949).standard_normal((1, 3, 32, 32)).astype(np.float32)


def test_clipped_input_is_named_not_the_first_conv(converted):
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", "qdq-per-tensor"), {"input": out_of_range_input()})
    first = report.layer("input")
    assert first.target_name == "input" and first.status == "diverged" and first.metrics.rel_l2 > 0.05
    assert report.first_divergence == "input"
    found = [f for f in report.findings if f.layer == "input"]
    assert [f.kind for f in found] == ["quantization_saturation"]
    ev = found[0].evidence
    assert 0.01 < ev["saturated_fraction"] < 0.05
    lo, hi = ev["calibrated_range"]
    assert ev["input_range"][0] < lo < 0 < hi < ev["input_range"][1]
    conv1 = "/features/conv1/Conv_output_0"
    assert not [f for f in report.findings if f.layer == conv1], [f.message for f in report.findings]
    assert conv1 not in report.origins
    # the target's DequantizeLinear output stands for the input: not counted as target-only
    assert "input_DequantizeLinear_Output" not in report.meta["target_only"]


def test_conv1_isolated_on_the_clipped_input_is_clean(converted):
    """conv1 re-run on the target's (clipped) input matches the target: it adds no error of its own."""
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", "qdq-per-tensor"), {"input": out_of_range_input()},
                             isolated="all")
    conv1 = report.layer("/features/conv1/Conv_output_0")
    assert conv1.extra["isolated"]["cosine"] > 0.9999, conv1.extra["isolated"]


def test_in_range_input_stays_clean(converted):
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", "qdq-per-tensor"), {"input": spec["test"]()})
    assert report.layer("input").status == "ok"
    assert not [f for f in report.findings if f.kind == "quantization_saturation"]
    assert report.layer("input").target_name == "input"


def test_qoperator_clipped_input_is_named(converted):
    """QOperator: the input's QuantizeLinear output, dequantized, stands for the input."""
    spec = MODELS["small_cnn"]
    report = netdiff.compare(spec["path"], converted("small_cnn", "qoperator-per-channel"),
                             {"input": out_of_range_input()})
    assert report.first_divergence == "input"
    assert [f.kind for f in report.findings if f.layer == "input"] == ["quantization_saturation"]
    # conv1 is not blamed: only the fusion (QLinearConv holds its Relu) is reported there
    assert [f.kind for f in report.findings if f.layer == "/features/conv1/Conv_output_0"] == ["fused_activation"]
