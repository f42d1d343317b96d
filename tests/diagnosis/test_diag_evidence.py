"""Findings claim no more than the evidence shows (issue 21): each over-claim is absent or downgraded, with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import netdiff
from netdiff.runners.onnxrt import OnnxModel
from netdiff.types import Thresholds

from diag_faults import as_target, model_and_input, run

ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)


def _kinds(report) -> list[tuple[str, str | None]]:
    return [(f.kind, f.layer) for f in report.findings]


def _const_model(path: Path, scale: float = 0.5, noise: float = 0.0, op: str = "Mul") -> Path:
    """Conv -> Resize (empty roi Constant, as PyTorch exports it) -> ``op`` with a scalar Constant -> Relu."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    w = w + noise * np.random.default_rng(2).standard_normal(w.shape).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["roi"], value=numpy_helper.from_array(np.zeros((0,), np.float32))),
             helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32))),
             helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(scale, np.float32))),
             helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "roi", "scales"], ["up"], mode="nearest"),
             helper.make_node(op, ["up", "k"], ["m"]),
             helper.make_node("Relu", ["m"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_unchanged_empty_constant_is_no_divergence(tmp_path: Path) -> None:
    """The empty roi Constant has no cosine: it was a diverged origin with "introduced_error ... cosine None"."""
    ref = _const_model(tmp_path / "ref.onnx")
    clean = netdiff.compare(ref, _const_model(tmp_path / "same.onnx"), {"input": X})
    assert clean.layer("roi").status == "ok" and not clean.diverged and clean.findings == []
    broken = netdiff.compare(ref, _const_model(tmp_path / "bad.onnx", noise=0.5), {"input": X})
    assert broken.first_divergence == "c" and _kinds(broken) == [("introduced_error", "c")]
    assert not any("None" in f.message for f in broken.findings)


def test_no_output_scale_fitted_on_a_scalar(tmp_path: Path) -> None:
    """A scalar Constant (an offset) that is 4x the reference's: one value fits any factor, so no output_scale
    (it was "k is 2^2 × the reference"); the divergence still gets a finding, with the facts."""
    report = netdiff.compare(_const_model(tmp_path / "ref.onnx", op="Add"),
                             _const_model(tmp_path / "tgt.onnx", scale=2.0, op="Add"), {"input": X})
    assert report.first_divergence == "k"
    assert "output_scale" not in [k for k, _ in _kinds(report)]
    assert _kinds(report) == [("unexplained_divergence", "k")]
    facts = report.findings[0].evidence
    assert facts["first_divergence"] == facts["at"] == "k" and facts["origins"][0]["layer"] == "k"


def test_output_scale_says_how_many_values_it_fitted() -> None:
    model, x = model_and_input()
    ref = run(model, x)
    gemm = "/classifier/Gemm_output_0"
    report = netdiff.compare(OnnxModel.from_proto(model), as_target(ref, perturb={gemm: lambda v: v * 4096.0}), x)
    found = next(f for f in report.findings if f.kind == "output_scale")
    assert found.evidence["elements"] == int(np.count_nonzero(ref[gemm].load()))
    assert f"({found.evidence['elements']} values fitted)" in found.message


def test_isolated_error_within_fp16_noise_is_not_introduced(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16 (a real fp16 conversion of the model) judged by a cosine threshold stricter than fp16 can meet:
    the first conv's isolated cosine (~0.9999999) is beyond the threshold but within fp16's noise."""
    from netdiff.diagnosis import _common
    from netdiff.simulators.run import simulate

    model, x = ROOT / "fixtures" / "small_cnn.onnx", np.load(ROOT / "fixtures" / "small_cnn_input.npy")
    target = simulate(model, "fp16", {"input": x}).target
    strict = Thresholds(cosine=0.99999999, rel_l2=1e-4, noise_factor=0.0)
    report = netdiff.compare(model, target, {"input": x}, thresholds=strict)
    origin = report.layer(report.first_divergence)
    assert strict.cosine > origin.extra["isolated"]["cosine"] >= _common.NOISE_COSINE
    assert _kinds(report) == [("accumulated_error", origin.name)]
    assert origin.name in report.findings[0].evidence["isolated_within_noise"]
    assert "within the precision's noise" in report.findings[0].message
    # the same report without the noise floor blames the layer: the test can fail
    monkeypatch.setattr(_common, "NOISE_COSINE", 1.0)
    again = netdiff.compare(model, target, {"input": x}, thresholds=strict)
    assert ("introduced_error", origin.name) in _kinds(again)


def test_a_scale_with_cosine_one_is_not_noise() -> None:
    """conv2 computes 1.3x its output (cosine 1, rel_l2 0.3): beyond the thresholds and not noise, so it is still
    introduced_error (the noise floor must not hide a scale that is no named constant)."""
    model, x = model_and_input()
    conv2 = "/features/conv2/Conv_output_0"
    ref = run(model, x)
    target = as_target(ref, perturb={n: (lambda v: v * 1.3) for n in [t.name for t in ref]
                                     if n.startswith(("/features/conv2", "/features/relu2"))})
    report = netdiff.compare(OnnxModel.from_proto(model), target, x)
    assert report.first_divergence == conv2
    found = next(f for f in report.findings if f.layer == conv2)
    assert found.kind == "introduced_error" and found.evidence["isolated_cosine"] > 0.9999


@pytest.mark.parametrize("drop", [(), ("input",)])
def test_channel_swap_is_not_also_a_normalization(drop: tuple[str, ...]) -> None:
    """BGR input with a 1-2 % white-balance gain: the swap alone reproduces the target; the affine fit on top was
    reported as input_normalization (std [1.02, 1, 0.985]). Direct, and through the first conv."""
    model, x = model_and_input()
    fed = (x[:, ::-1] * np.array([1.02, 1.0, 0.985], np.float32).reshape(1, 3, 1, 1) + 0.003).astype(np.float32)
    report = netdiff.compare(OnnxModel.from_proto(model), as_target(run(model, fed), drop=drop), {"input": x})
    assert _kinds(report) == [("input_channel_order", "input")]
    ev = report.findings[0].evidence
    assert ev["r2_permutation_alone"] >= 0.999 and "permutation alone reproduces" in ev["normalization_not_reported"]


def test_channel_swap_with_a_real_normalization_reports_both() -> None:
    """BGR and x/255 instead of ImageNet mean/std: the swap alone leaves most of the error, the affine explains it."""
    model, x = model_and_input()
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    fed = np.ascontiguousarray((x * std + mean)[:, ::-1], dtype=np.float32)
    report = netdiff.compare(OnnxModel.from_proto(model), as_target(run(model, fed)), {"input": x})
    assert _kinds(report)[:2] == [("input_channel_order", "input"), ("input_normalization", "input")]
    assert report.findings[0].evidence["r2_permutation_alone"] < 0.9


def test_diverged_with_nothing_to_re_run_gets_an_unexplained_finding(tmp_path: Path) -> None:
    """Only the output dumped, with an error no rule names: an explicit unexplained_divergence with the facts and
    what to try, never a claim about the inputs that were not dumped."""
    model, x = model_and_input()
    out = run(model, x)
    probs = out.graph_outputs[0]
    rng = np.random.default_rng(3)
    drop = tuple(t.name for t in out if t.name != probs)
    target = as_target(out, drop=drop, perturb={probs: lambda v: v + 0.3 * rng.random(v.shape).astype(v.dtype)})
    report = netdiff.compare(OnnxModel.from_proto(model), target, x)
    assert report.diverged
    assert _kinds(report) == [("unexplained_divergence", probs)]
    found = report.findings[0]
    assert found.severity == "warning" and "dump more tensors before" in found.suggestion
    assert found.evidence["diverged_layers"] == 1 and probs in found.evidence["outputs"]
    assert "inputs match" not in found.message


def test_int8_recurrent_model_that_diverges_gets_a_finding(tmp_path: Path) -> None:
    """An audio-style recurrent net (MatMul front end, LSTM, MatMul head) quantized by onnxruntime's
    quantize_dynamic (int8 weights, DynamicQuantizeLSTM): judged strictly it diverges, and the report names
    its origin in a finding (it used to have none)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    steps, features, inner, hidden = 20, 40, 16, 32
    arrays = {"wi": rng.standard_normal((features, inner)) * 0.2, "W": rng.standard_normal((1, 4 * hidden, inner)) * 0.4,
              "R": rng.standard_normal((1, 4 * hidden, hidden)) * 0.4, "B": rng.standard_normal((1, 8 * hidden)) * 0.1,
              "Wo": rng.standard_normal((hidden, 10)) * 0.3}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis"))
    nodes = [helper.make_node("MatMul", ["x", "wi"], ["feat"], name="frontend"),
             helper.make_node("LSTM", ["feat", "W", "R", "B"], ["y", "yh"], name="lstm", hidden_size=hidden),
             helper.make_node("Squeeze", ["y", "axis"], ["ys"], name="squeeze"),
             helper.make_node("MatMul", ["ys", "Wo"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, features])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "float.onnx")
    quantize_dynamic(str(tmp_path / "float.onnx"), str(tmp_path / "int8.onnx"), weight_type=QuantType.QInt8)
    x = (rng.standard_normal((steps, 1, features)) * 3).astype(np.float32)
    report = netdiff.compare(tmp_path / "float.onnx", tmp_path / "int8.onnx", {"x": x},
                             thresholds=Thresholds(cosine=0.99995, rel_l2=0.005))
    assert report.diverged and report.findings
    named = {f.layer for f in report.findings} | {o for f in report.findings for o in f.evidence.get("origins", [])
                                                   if isinstance(o, str)}
    assert set(report.origins) <= named | {o.get("layer") for f in report.findings
                                           for o in f.evidence.get("origins", []) if isinstance(o, dict)}
