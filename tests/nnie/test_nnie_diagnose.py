"""NNIE diagnosis helpers on constructed (reference, target) pairs."""

from __future__ import annotations

import numpy as np

from netdiff.nnie.cfg import parse_cfg
from netdiff.nnie.diagnose import (check_detection_scores, check_output_scale, check_quantization_range,
                                   check_stride_padding, diagnose_pair)
from netdiff.nnie.logquant import log_quantize

RNG = np.random.default_rng(3)


def test_output_left_in_q12():
    ref = RNG.normal(size=(1, 10))
    f = check_output_scale(ref, np.round(ref * 4096), "prob", None)
    assert f.kind == "output_scale" and f.layer == "prob" and abs(f.evidence["ratio"] - 4096) < 5
    twice = check_output_scale(ref, ref / 4096, "prob", None)
    assert twice.kind == "output_scale" and "twice" in twice.message
    assert check_output_scale(ref, ref * 1.01, "prob", None) is None
    assert check_output_scale(ref, RNG.normal(size=(1, 10)) * 4096, "prob", None) is None


def test_stride_padding_left_in():
    ref = RNG.normal(size=(1, 4, 6, 13))
    padded = np.zeros((1, 4, 6, 16))
    padded[..., :13] = ref
    f = check_stride_padding(ref, padded, "conv5", None)
    assert f.kind == "input_layout" and f.evidence["row_stride_bytes"] == 64
    assert f.evidence["target_shape"] == [1, 4, 6, 16]
    cfg = parse_cfg("[internal_stride] 32\n")
    padded32 = np.zeros((1, 4, 6, 16))  # ALIGN32(13*4) = 64 bytes too
    padded32[..., :13] = ref
    assert check_stride_padding(ref, padded32, "conv5", cfg).evidence["alignment"] == 32
    contiguous = padded.ravel()[:ref.size]
    assert "read as contiguous" in check_stride_padding(ref, contiguous, "conv5", None).message
    assert check_stride_padding(ref, ref, "conv5", None) is None
    assert check_stride_padding(ref, RNG.normal(size=(1, 4, 6, 16)), "conv5", None) is None


def test_input_written_without_stride():
    image = RNG.integers(0, 255, size=(3, 8, 13)).astype(np.float64)
    device = np.zeros((3 * 8, 16))
    device.ravel()[:image.size] = image.ravel()  # the app wrote contiguous rows into a 16-byte-stride U8 blob
    seen = device[:, :13].reshape(3, 8, 13)
    f = check_stride_padding(image, seen, "data", None)
    assert f is not None and f.kind == "input_layout" and "without" in f.message


def test_outlier_flushes_layer_input():
    x = RNG.normal(size=20000)
    x[7] = 2000.0
    f = check_quantization_range(x, log_quantize(x, 2000.0, 8), "conv2", None)
    assert f.kind == "quantization_coarse" and f.layer == "conv2"
    assert f.evidence["flushed_fraction"] > 0.9 and f.evidence["target_zero_fraction"] > 0.9
    assert "conv2_hp" in f.suggestion
    hp = parse_cfg("[compile_mode] 1\n")
    f16 = check_quantization_range(x, None, "conv2", hp)
    assert f16 is None or f16.evidence["flushed_fraction"] < f.evidence["flushed_fraction"]
    assert check_quantization_range(RNG.normal(size=1000), None, "conv2", None) is None


def test_saturation_when_runtime_exceeds_calibration():
    x = RNG.normal(size=5000) * 10
    target = log_quantize(x, 3.0, 8)  # calibrated on data with max 3
    f = check_quantization_range(x, target, "conv4", None, top=3.0)
    assert f.kind == "quantization_saturation" and f.evidence["clipped_fraction"] > 0.5


def test_no_boxes():
    ref = np.array([0.91, 0.02, 0.66, 0.1])
    f = check_detection_scores(ref, np.array([0.2, 0.01, 0.3, 0.0]), "conf", None)
    assert f.kind == "detection_scores_collapsed" and f.evidence["reference_above"] == 2
    dead = check_detection_scores(ref, np.zeros(4), "conf", None)
    assert "constant" in dead.message
    assert check_detection_scores(ref, ref * 0.98, "conf", None) is None
    assert check_detection_scores(ref, ref, "conf", None, threshold=0.95) is None


def test_diagnose_pair():
    ref = RNG.normal(size=(1, 2, 3, 13))
    kinds = [f.kind for f in diagnose_pair(ref, ref * 4096, "out")]
    assert kinds == ["output_scale"]
    assert diagnose_pair(ref, ref, "out") == []
