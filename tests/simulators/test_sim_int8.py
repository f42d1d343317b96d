"""int8 (QDQ) simulator: placement of float tensors in the QDQ model, isolated error, options, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from netdiff.cli import main
from netdiff.errors import NetdiffError
from netdiff.runners.onnxrt import OnnxModel, node_outputs
from netdiff.simulators.int8 import Int8Config, Int8Quantizer
from netdiff.simulators.run import run_simulated

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CALIB = FIXTURES / "sim_calib"
CALIB_SAMPLES = [{"input": np.load(p)} for p in sorted(CALIB.glob("*.npy"))]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def cnn_int8(cnn_path: Path, cnn_input_path: Path):
    model = onnx.load(str(cnn_path))
    feeds = {"input": np.load(cnn_input_path)}
    target = Int8Quantizer(model, CALIB_SAMPLES, Int8Config()).prepare()
    reference = OnnxModel(cnn_path).run(feeds)
    return target, feeds, reference


def test_relu_renamed_output_is_placed_by_content(cnn_int8) -> None:
    target, feeds, reference = cnn_int8
    qdq_nodes = {n.name: n for n in target.model.graph.node}
    # the trap is there: the quantizer removed Relu and gave Conv's output the Relu's name
    assert "/features/relu1/Relu" not in qdq_nodes
    assert qdq_nodes["/features/conv1/Conv"].output[0] == "/features/relu1/Relu_output_0"
    dump = target.dump(feeds, reference)
    conv = "/features/conv1/Conv_output_0"
    relu = "/features/relu1/Relu_output_0"
    held = {t.origin_names[-1] if t.origin_names else t.name: t for t in dump}
    assert held[conv].name == relu and held[conv].meta["placed_by"] == "content"
    assert held[relu].meta["simulated_tensor"] == relu + "_DequantizeLinear_Output"
    # each holds the value its float name means (Conv has negatives, Relu none)
    assert held[conv].load().min() < 0 <= held[relu].load().min()
    assert _cos(held[conv].load(), reference[conv].load()) > 0.999
    assert _cos(held[conv].load(), reference[relu].load()) < 0.95
    assert "cosine" in held[conv].meta["note"]


def test_symmetric_keeps_relu_and_places_by_name(cnn_path: Path, cnn_input_path: Path) -> None:
    model = onnx.load(str(cnn_path))
    feeds = {"input": np.load(cnn_input_path)}
    target = Int8Quantizer(model, CALIB_SAMPLES[:2], Int8Config(symmetric=True)).prepare()
    assert "/features/relu1/Relu" in {n.name for n in target.model.graph.node}
    dump = target.dump(feeds, OnnxModel(cnn_path).run(feeds))
    assert dump.meta["content_checked"] == 0
    assert dump.meta["placed"] == dump.meta["float_tensors"] == len(node_outputs(model))


def test_run_aligns_every_float_tensor_with_isolated(cnn_path: Path, cnn_input_path: Path) -> None:
    report = run_simulated(cnn_path, "int8", cnn_input_path, calibration=CALIB)
    sim = report.meta["simulator"]
    assert sim["aligned"] == sim["in_target"] == sim["float_tensors"] == 14
    assert sim["calibration"]["samples"] == 8 and sim["content_checked"] == 8
    compared = [layer for layer in report.layers if layer.op_type != "Input"]
    assert all(layer.metrics is not None for layer in compared)
    assert all("isolated" in layer.extra for layer in compared)
    assert report.layer("/features/conv1/Conv_output_0").match.method == "content"
    # the isolated error of a deep layer is its own: smaller than the accumulated one
    gemm = report.layer("/classifier/Gemm_output_0")
    assert gemm.extra["isolated"]["rel_l2"] < gemm.metrics.rel_l2


def test_per_channel_repairs_the_outlier_layer() -> None:
    model = FIXTURES / "sim_outlier.onnx"
    conv = "/features/conv3/Conv_output_0"
    per_tensor = run_simulated(model, "int8", FIXTURES / "sim_input.npy", calibration=CALIB, diagnose=False)
    per_channel = run_simulated(model, "int8", FIXTURES / "sim_input.npy", calibration=CALIB, diagnose=False,
                                options={"per_channel": "true"})
    # per tensor, the outlier's step wipes out the layer's other weights (its own error, not inherited)
    assert per_tensor.layer(conv).extra["isolated"]["cosine"] < 0.5
    assert per_tensor.first_divergence == conv
    # per channel, only the outlier's output channel (1 of 32) suffers
    assert per_channel.layer(conv).extra["isolated"]["cosine"] > 0.9
    out = "/classifier/Gemm_output_0"
    assert per_channel.layer(out).metrics.cosine > 0.9999 > 0.95 > per_tensor.layer(out).metrics.cosine


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(NetdiffError, match="calibrate"):
        Int8Config.from_options({"calibrate": "kl"})
    with pytest.raises(NetdiffError, match="per_channel"):
        Int8Config.from_options({"per_channel": "maybe"})
    assert Int8Config.from_options({"exclude": "a, b", "percentile": "99.9"}).exclude == ("a", "b")


def test_cli_run_shows_accumulated_and_isolated(cnn_path: Path, cnn_input_path: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main(["run", str(cnn_path), "--target", "int8", "--calib", str(CALIB), "--input", str(cnn_input_path),
                 "-O", "calibrate=percentile", "--json", str(out), "--all"])
    text = capsys.readouterr().out
    assert code == 0
    assert "isolated cos" in text and "cosine" in text and "14 of 14 target tensors aligned" in text
    data = json.loads(out.read_text())
    assert data["meta"]["simulator"]["aligned"] == 14
    assert main(["run", str(cnn_path), "--target", "int9", "--input", str(cnn_input_path)]) == 2
    assert main(["run", str(cnn_path), "--target", "int8", "-O", "nope=1", "--input", str(cnn_input_path)]) == 2


def test_cli_simulate_writes_a_comparable_dump(cnn_path: Path, cnn_input_path: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int8"
    assert main(["simulate", str(cnn_path), "-t", "int8", "--calib", str(CALIB), "--input", str(cnn_input_path),
                 "--out", str(out)]) == 0
    assert (out / "manifest.json").is_file()
    from netdiff.pipeline import compare

    report = compare(cnn_path, out, cnn_input_path)
    conv = report.layer("/features/conv1/Conv_output_0")
    assert conv.target_name == "/features/relu1/Relu_output_0" and conv.status == "ok"
    assert report.meta["aligned"] == 15
