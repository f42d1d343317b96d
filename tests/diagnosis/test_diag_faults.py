"""Fault injection: each planted fault is named by the top finding, at the planted layer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import netdiff
from netdiff.runners.onnxrt import OnnxModel
from netdiff.samples import preprocess
from tests.diagnosis.diag_faults import (CONV1, CONV2, CONV3, GEMM, POOL, RELU1, as_target, image, int8_noise,
                                         model_and_input, noisy_weights, run, scaled_weights)


@pytest.fixture(scope="module")
def base():
    model, x = model_and_input()
    return model, x, run(model, x)


def compare(model, target, x, **kw):
    return netdiff.compare(OnnxModel.from_proto(model), target, x, **kw)


def from_input(base, xt, **kw):
    model, x, _ = base
    return compare(model, as_target(run(model, xt), **kw), x)


def top(report):
    assert report.findings, "no finding"
    f = report.findings[0]
    return f.kind, f.layer


def nhwc_bytes(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(x.shape)


@pytest.mark.parametrize("dropped", [False, True], ids=["dumped", "via-first-conv"])
def test_bgr_input_is_named_channel_order(base, dropped):
    report = from_input(base, base[1][:, ::-1], drop=("input",) if dropped else ())
    assert top(report) == ("input_channel_order", "input")
    f = report.findings[0]
    assert f.evidence["channel_permutation"] == [2, 1, 0] and f.severity == "error"
    assert "R and B" in f.message
    if dropped:
        assert f.evidence["observed_at"] == CONV1 and report.first_divergence == CONV1


def test_channel_order_suggestion_names_the_toolchain_setting(base):
    model, x, _ = base
    target = run(model, x[:, ::-1])
    nnie = compare(model, as_target(target, "nnie-sim"), x).findings[0]
    ascend = compare(model, as_target(target, "ascend"), x).findings[0]
    assert "[RGB_order]" in nnie.suggestion
    assert "rbuv_swap_switch" in ascend.suggestion


@pytest.mark.parametrize("dropped", [False, True], ids=["dumped", "via-first-conv"])
def test_input_times_255_is_input_scale(base, dropped):
    report = from_input(base, base[1] * 255, drop=("input",) if dropped else ())
    assert top(report) == ("input_scale", "input")
    assert report.findings[0].evidence["factor_named"] == "255"


@pytest.mark.parametrize("dropped", [False, True], ids=["dumped", "via-first-conv"])
def test_missing_mean_std_is_input_normalization_with_fitted_values(base, dropped):
    raw = preprocess(image(), mean=(0, 0, 0), std=(1, 1, 1))  # /255 only: the target skipped mean/std
    report = from_input(base, raw, drop=("input",) if dropped else ())
    assert top(report) == ("input_normalization", "input")
    ev = report.findings[0].evidence
    np.testing.assert_allclose(ev["mean"], [0.485, 0.456, 0.406], atol=2e-3)
    np.testing.assert_allclose(ev["std"], [0.229, 0.224, 0.225], atol=2e-3)


def test_normalization_suggestion_in_aipp_terms(base):
    model, x, _ = base
    raw = preprocess(image(), mean=(0, 0, 0), std=(1, 1, 1))
    f = compare(model, as_target(run(model, raw), "ascend"), x).findings[0]
    assert "var_reci_chn" in f.suggestion and "mean_chn" in f.suggestion


@pytest.mark.parametrize("dropped", [False, True], ids=["dumped", "via-first-conv"])
def test_hwc_data_read_as_chw_is_input_layout(base, dropped):
    report = from_input(base, nhwc_bytes(base[1]), drop=("input",) if dropped else ())
    assert top(report) == ("input_layout", "input")
    assert report.findings[0].evidence["axis_order"] == [0, 2, 3, 1]
    assert "NHWC" in report.findings[0].message


def test_unexplained_input_difference_is_a_warning(base):
    model, x, _ = base
    other = preprocess(image(seed=5))
    report = compare(model, as_target(run(model, other)), x)
    assert top(report) == ("input_mismatch", "input") and report.findings[0].severity == "warning"


@pytest.mark.parametrize("factor,fmt,named", [(4096.0, "npy-dir", "4096 (Q12)"), (4096.0, "nnie-blob", None),
                                              (8.0, "npy-dir", "2^3")])
def test_constant_multiple_is_output_scale(base, factor, fmt, named):
    model, x, ref = base
    report = compare(model, as_target(ref, fmt, perturb={GEMM: lambda v: v * factor}), x)
    assert top(report) == ("output_scale", GEMM)
    f = report.findings[0]
    if named:
        assert f.evidence["factor_named"] == named
    if fmt == "nnie-blob":
        assert "4096" in f.message and "Q20.12" in f.message


def test_clipped_plateau_is_quantization_saturation(base):
    model, x, ref = base
    clip = lambda v: np.clip(v, -0.4 * np.abs(v).max(), 0.4 * np.abs(v).max())  # noqa: E731
    report = compare(model, as_target(ref, perturb={CONV2: clip}), x)
    assert top(report) == ("quantization_saturation", CONV2)
    ev = report.findings[0].evidence
    r = ref[CONV2].load()
    assert abs(ev["clip_value"]) == pytest.approx(0.4 * np.abs(r).max(), rel=1e-5)
    assert 0.001 < ev["saturated_fraction"] < 0.5
    assert ev["reference_range"] == pytest.approx([float(r.min()), float(r.max())], rel=1e-5)


def test_coarse_rounding_is_quantization_coarse(base):
    model, x, ref = base

    def coarse(v):
        step = float(np.ptp(v)) / 12
        return np.round(v / step) * step

    report = compare(model, as_target(ref, perturb={CONV3: coarse}), x)
    assert top(report) == ("quantization_coarse", CONV3)
    ev = report.findings[0].evidence
    assert ev["distinct_values"] <= 13 and 3 < ev["effective_bits"] < 4.5
    assert 0.5 < ev["error_std"] / ev["expected_error_std"] < 1.6


def test_fp16_overflow_is_named_at_the_overflowing_layer(base):
    model, x, _ = base
    big = scaled_weights(model, "/features/conv1.weight", 3e4)
    ref = run(big, x)
    f16 = lambda v: v.astype(np.float16).astype(np.float32)  # noqa: E731
    with np.errstate(over="ignore"):
        report = compare(big, as_target(ref, perturb={n: f16 for n in ref.names}), x)
    assert top(report) == ("fp16_overflow", CONV1)
    assert report.findings[0].evidence["reference_absmax"] > 65504
    assert [f.kind for f in report.findings].count("nan_inf") == 0  # the Inf downstream is the same cause


def test_nan_in_target_is_nan_inf(base):
    model, x, ref = base
    holes = lambda v: np.where(np.arange(v.size).reshape(v.shape) % 97 == 0, np.nan, v)  # noqa: E731
    report = compare(model, as_target(ref, perturb={CONV2: holes}), x)
    assert top(report) == ("nan_inf", CONV2)
    assert report.findings[0].evidence["nonfinite"] == int(np.ceil(ref[CONV2].size / 97))


def test_all_zero_target_is_dead_output(base):
    model, x, ref = base
    report = compare(model, as_target(ref, perturb={CONV3: np.zeros_like}), x)
    assert top(report) == ("dead_output", CONV3)


def test_fused_relu_is_realigned_not_a_divergence(base):
    model, x, ref = base
    report = compare(model, as_target(ref, drop=(RELU1,), perturb={CONV1: lambda v: np.maximum(v, 0)}), x)
    assert report.first_divergence is None and not report.diverged
    conv1 = report.layer(CONV1)
    assert conv1.status == "ok" and conv1.match.method == "content" and conv1.metrics.cosine > 0.9999
    relu1 = report.layer(RELU1)
    assert relu1.status == "ok" and relu1.target_name == CONV1
    assert top(report) == ("fused_activation", CONV1) and report.findings[0].severity == "info"


def test_fused_relu_without_reference_activation_tensor(base):
    """The reference has no separate activation tensor: the target is compared with relu(reference)."""
    model, x, ref = base
    report = compare(model, as_target(ref, perturb={CONV3: lambda v: np.maximum(v, 0)}), x)
    assert report.layer(CONV3).status == "ok" and report.first_divergence is None
    assert top(report) == ("fused_activation", CONV3)
    assert report.findings[0].evidence["measured_against"] == f"relu({CONV3})"


def test_swapped_output_channels_are_channel_mismatch(base):
    model, x, ref = base

    def swap(v):
        v = v.copy()
        v[:, [3, 7]] = v[:, [7, 3]]
        return v

    report = compare(model, as_target(ref, perturb={CONV3: swap}), x)
    assert top(report) == ("channel_mismatch", CONV3)
    ev = report.findings[0].evidence
    assert sorted(ev["bad_channels"]) == [3, 7] and ev["permutation"] == {3: 7, 7: 3}


def test_some_corrupted_channels_are_channel_mismatch(base):
    model, x, ref = base

    def corrupt(v):
        v = v.copy()
        v[:, 5] *= -0.3
        v[:, 9] += 1.0
        return v

    report = compare(model, as_target(ref, perturb={CONV3: corrupt}), x)
    assert top(report) == ("channel_mismatch", CONV3)
    assert sorted(report.findings[0].evidence["bad_channels"]) == [5, 9]
    assert "permutation" not in report.findings[0].evidence


def test_shifted_feature_map_is_spatial_offset(base):
    model, x, ref = base
    report = compare(model, as_target(ref, perturb={CONV2: lambda v: np.roll(v, 1, axis=3)}), x)
    assert top(report) == ("spatial_offset", CONV2)
    assert report.findings[0].evidence["shift"] == [0, 1]


def test_one_pixel_larger_pool_is_spatial_offset(base):
    model, x, ref = base
    pad = lambda v: np.pad(v, ((0, 0), (0, 0), (0, 1), (0, 1)), mode="edge")  # noqa: E731
    report = compare(model, as_target(ref, perturb={POOL: pad}), x)
    assert report.layer(POOL).status == "shape_mismatch"
    assert top(report) == ("spatial_offset", POOL)
    f = report.findings[0]
    assert f.evidence["spatial_difference"] == [1, 1] and "ceil" in f.suggestion
    assert f.evidence["best_crop_offset"] == [0, 0] and f.evidence["cosine_after_crop"] > 0.9999


def test_wrong_weights_are_introduced_error_by_isolated_rerun(tmp_path):
    """Weights that no quantization hypothesis explains (here: one conv's weights mangled by noise)."""
    from onnx import numpy_helper

    from netdiff.demo import build_demo

    case = build_demo(tmp_path)
    model = onnx.load(str(case.model))
    rng = np.random.default_rng(7)
    for init in model.graph.initializer:
        if init.name == "/features/conv3.weight":
            w = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array((w + 0.5 * w.std() * rng.standard_normal(w.shape)).astype(np.float32),
                                                  init.name))
    x = np.load(case.input)
    report = netdiff.compare(case.model, run(model, x), x)
    assert top(report) == ("introduced_error", case.planted_layer)
    ev = report.findings[0].evidence
    assert ev["isolated_cosine"] < 0.99 and report.layer(case.planted_layer).extra["isolated"]["cosine"] < 0.99


def test_small_errors_everywhere_are_accumulated_error(base):
    model, x, _ = base
    report = compare(model, as_target(run(noisy_weights(model, 0.03), x)), x)
    assert report.diverged
    kinds = [f.kind for f in report.findings]
    assert top(report) == ("accumulated_error", report.first_divergence)
    assert "introduced_error" not in kinds and report.findings[0].severity == "info"


def test_nhwc_storage_is_an_info_layout_finding_only(base):
    model, x, ref = base
    report = compare(model, as_target(ref, nhwc=True), x)
    assert [(f.kind, f.severity) for f in report.findings] == [("layout", "info")]
    assert report.findings[0].evidence["transposed"]["NHWC->NCHW"] >= 8


@pytest.mark.parametrize("clean", ["fp32", "int8-noise"])
def test_clean_targets_have_no_error_finding(base, clean):
    model, x, ref = base
    if clean == "fp32":
        target = as_target(run(model, x))
    else:
        target = as_target(ref, perturb={n: int8_noise for n in ref.names if n != "input"})
    report = compare(model, target, x)
    assert not report.diverged
    assert [f for f in report.findings if f.severity != "info"] == []
