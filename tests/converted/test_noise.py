"""The precision-aware verdict: expected noise per layer, ok / noisy / diverged (netdiff/noise.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import netdiff
from netdiff.cli import main
from netdiff.noise import precision_hint
from netdiff.reports.json import report_from_json
from netdiff.samples import natural_image
from netdiff.simulators.run import run_simulated, simulate
from netdiff.types import LayerMetrics, Thresholds
from netdiff.verdict import status_of

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RNET = FIXTURES / "mtcnn" / "rnet.onnx"


def face_crop(seed: int) -> np.ndarray:
    return ((natural_image(24, 24, seed=seed).astype(np.float32) - 127.5) / 128.0)[None]


@pytest.fixture(scope="module")
def rnet_nnie8():
    x = face_crop(1)
    return x, run_simulated(RNET, "nnie8", {"input_2": x})


def test_clean_nnie8_of_a_small_classifier_is_not_diverged(rnet_nnie8):
    x, report = rnet_nnie8
    probs = report.layer("softmax_1")
    assert probs.metrics.cosine > 0.999
    assert report.summary()["verdict"] != "diverged" and report.first_divergence is None
    noisy = [layer for layer in report.layers if layer.status == "noisy"]
    # the box regression head is beyond rel_l2 0.05, as NNIE's 8-bit log format predicts: noisy, not diverged
    assert noisy and all(layer.metrics.rel_l2 > 0.05 for layer in noisy)
    assert all(layer.metrics.rel_l2 <= 4.0 * layer.expected_rel_l2 for layer in noisy)
    # (the NNIE lint's structural findings, e.g. an unsupported Transpose, are about the graph, not the numbers)
    numeric = [f for f in report.findings if f.severity == "error" and f.kind not in ("unsupported_layer", "semantic_mismatch")]
    assert not numeric
    assert report.meta["precision"]["kind"] == "nnie8"


def test_the_same_classifier_with_one_broken_layer_names_it(tmp_path, rnet_nnie8):
    x, _ = rnet_nnie8
    model = onnx.load(RNET)
    conv = next(n for n in model.graph.node if n.name == "conv2d_6")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(init)
    rng = np.random.default_rng(0)
    broken = (w * (1 + 0.3 * rng.standard_normal(w.shape))).astype(np.float32)  # a layer that really broke
    init.CopyFrom(numpy_helper.from_array(broken, init.name))
    path = tmp_path / "rnet_broken.onnx"
    onnx.save(model, path)
    target = simulate(path, "nnie8", {"input_2": x}).target
    report = netdiff.compare(RNET, target, {"input_2": x}, precision="nnie8")
    assert report.first_divergence == conv.output[0]
    layer = report.layer(conv.output[0])
    assert layer.status == "diverged" and layer.metrics.rel_l2 > 4.0 * layer.expected_rel_l2


def test_noisy_needs_a_known_precision_and_stays_within_the_factor():
    m = LayerMetrics.from_dict({"cosine": 0.985, "rel_l2": 0.08, "target_nan": 0, "target_inf": 0,
                                "ref_nan": 0, "ref_inf": 0})
    th = Thresholds()
    assert status_of(th, m) == "diverged"
    assert status_of(th, m, expected_rel_l2=0.03) == "noisy"
    assert status_of(th, m, expected_rel_l2=0.01) == "diverged"
    assert status_of(Thresholds(noise_factor=10.0), m, expected_rel_l2=0.01) == "noisy"
    nan = LayerMetrics.from_dict({"cosine": 0.985, "rel_l2": 0.08, "target_nan": 3, "target_inf": 0,
                                  "ref_nan": 0, "ref_inf": 0})
    assert status_of(th, nan, expected_rel_l2=1.0) == "diverged"


def test_precision_hint_and_json_contract(tmp_path, rnet_nnie8):
    x, _ = rnet_nnie8
    target = simulate(RNET, "nnie8", {"input_2": x}).target
    report = netdiff.compare(RNET, target, {"input_2": x}, precision=precision_hint("nnie8"))
    data = report.to_dict() if hasattr(report, "to_dict") else report.to_json()
    assert data["thresholds"]["noise_factor"] == 4.0
    layer = next(x for x in data["layers"] if x["name"] == "dense_2")
    assert layer["status"] == "noisy" and layer["expected_rel_l2"] > 0
    back = report_from_json(json.loads(json.dumps(data)))
    assert back.layer("dense_2").expected_rel_l2 == pytest.approx(layer["expected_rel_l2"])
    plain = netdiff.compare(RNET, target, {"input_2": x})
    assert plain.layer("dense_2").status == "diverged" and plain.layer("dense_2").expected_rel_l2 is None


def test_cli_precision_option(tmp_path, capsys):
    x = face_crop(2)
    np.save(tmp_path / "x.npy", x)
    assert main(["compare", str(RNET), str(RNET), "--input", str(tmp_path / "x.npy"), "--precision", "int7"]) == 2
    assert "unknown precision 'int7'" in capsys.readouterr().err
    code = main(["compare", str(RNET), str(RNET), "--input", str(tmp_path / "x.npy"), "--precision", "int8",
                 "--noise-factor", "3", "--json", str(tmp_path / "r.json")])
    assert code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    precision = data["meta"]["precision"]
    assert {k: v for k, v in precision.items() if not k.startswith(("noisy", "worst"))} == {
        "kind": "int8", "source": "hint", "activation_bits": 8, "weight_bits": 8, "per_channel": False}
    assert precision["noisy"] == 0 and precision["worst_noise_ratio"] == 0.0  # the model against itself
    assert data["thresholds"]["noise_factor"] == 3.0


def test_run_int8_judges_by_the_simulated_models_own_precision():
    x = face_crop(4)
    report = run_simulated(RNET, "int8", {"input_2": x}, options={"per_channel": "true"})
    precision = report.meta["precision"]
    assert {k: precision[k] for k in ("kind", "source", "activation_bits", "weight_bits", "per_channel")} == {
        "kind": "int8", "source": "simulator", "activation_bits": 8, "weight_bits": 8, "per_channel": True}
    assert precision["quantized_weights"] >= 6  # 3 Conv + 3 MatMul (and the PRelu slopes)
    compared = [x for x in report.layers if x.metrics is not None and x.op_type != "Input"]
    assert all(x.expected_rel_l2 is not None for x in compared)
    # a clean int8 simulation: every layer within its expected noise, the verdict clean
    assert all(x.metrics.rel_l2 <= 4.0 * x.expected_rel_l2 for x in compared)
    assert report.first_divergence is None and not report.failed


def test_fp16_hint_on_a_device_dump(tmp_path):
    """A dump (no model) carries no precision: --precision fp16 gives each layer its fp16 noise."""
    x = face_crop(5)
    target = simulate(RNET, "fp16", {"input_2": x}).target
    report = netdiff.compare(RNET, target, {"input_2": x}, precision="fp16")
    assert {k: report.meta["precision"][k] for k in ("kind", "source", "noisy")} == {
        "kind": "fp16", "source": "hint", "noisy": 0}
    assert 0 < report.meta["precision"]["worst_noise_ratio"] < 4
    conv = report.layer("convolution_output2")
    assert 1e-5 < conv.expected_rel_l2 < 1e-2 and conv.status == "ok"
