"""Sensitivity: the outlier layer tops the ranking and the suggested exclusion really helps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netdiff.cli import main
from netdiff.sensitivity import analyze_sensitivity, output_cosine

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MODEL = FIXTURES / "sim_outlier.onnx"
CALIB = FIXTURES / "sim_calib"
OUTLIER = "/features/conv3/Conv"


def _quantized_cosine(tmp_path: Path, exclude: list[str]) -> float:
    """Quantize with onnxruntime directly (no netdiff code) and score the output on the eval input."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    samples = [{"input": np.load(p)} for p in sorted(CALIB.glob("*.npy"))]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    out = tmp_path / f"q{len(exclude)}.onnx"
    quantize_static(str(MODEL), str(out), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=exclude)
    x = {"input": np.load(FIXTURES / "sim_input.npy")}
    # The QDQ graph as written: onnxruntime's own graph optimizations would re-quantize the float
    # weights of an excluded Conv fed by DequantizeLinear (see docs/simulators.md).
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"]).run(None, x)[0]
    got = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"]).run(None, x)[0]
    return output_cosine([{"y": ref}], [{"y": got}])


def test_outlier_layer_tops_both_rankings_and_exclusion_helps(tmp_path: Path) -> None:
    result = analyze_sensitivity(MODEL, FIXTURES / "sim_input.npy", calibration=CALIB, target_cosine=0.999)
    assert result.layers[0].node == OUTLIER
    assert result.by_recovery()[0].node == OUTLIER
    assert result.baseline_cosine < 0.99
    assert result.reached and result.exclude == [OUTLIER]
    assert result.final_cosine >= 0.999
    assert result.snippet() == f"nodes_to_exclude=['{OUTLIER}']"
    # checked independently with onnxruntime's own quantize_static and the pasted list
    before, after = _quantized_cosine(tmp_path, []), _quantized_cosine(tmp_path, result.exclude)
    assert after > before + 0.05
    assert after == pytest.approx(result.final_cosine, abs=1e-6)
    assert before == pytest.approx(result.baseline_cosine, abs=1e-6)


def test_unreachable_target_and_limits() -> None:
    result = analyze_sensitivity(MODEL, FIXTURES / "sim_input.npy", calibration=CALIB, target_cosine=1.0,
                                 max_exclude=2)
    assert not result.reached and len(result.exclude) <= 2
    assert result.final_cosine > result.baseline_cosine


def test_cli_sensitivity_prints_paste_ready_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    code = main(["sensitivity", str(MODEL), "--target", "int8", "--calib", str(CALIB), "--target-cosine", "0.999",
                 "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert f"nodes_to_exclude=['{OUTLIER}']" in text
    data = json.loads(out.read_text())
    assert data["nodes_to_exclude"] == [OUTLIER] and data["inputs"] == 4
    assert main(["sensitivity", str(MODEL), "--target", "fp16", "--calib", str(CALIB)]) == 2


def test_nnie8_sensitivity_names_the_layer_to_run_at_16_bits(tmp_path):
    """On NNIE there is no float: the fix for an outlier-heavy layer is 16 bits (an _hp layer)."""
    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    result = analyze_sensitivity(fixtures / "sim_outlier.onnx", kind="nnie8", calibration=fixtures / "sim_calib",
                                 target_cosine=0.999)
    assert result.layers[0].node == "/features/conv3/Conv"
    assert result.reached and result.exclude == ["/features/conv3/Conv"]
    assert result.final_cosine > result.baseline_cosine + 0.02
    assert "_hp" in result.snippet() and "[compile_mode] 2" in result.snippet()
    out = tmp_path / "s.json"
    assert main(["sensitivity", str(fixtures / "sim_outlier.onnx"), "--target", "nnie8", "--calib",
                 str(fixtures / "sim_calib"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["hp_layers"] == ["/features/conv3/Conv"]
