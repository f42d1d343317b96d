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
    assert main(["sensitivity", str(MODEL), "--target", "int4", "--calib", str(CALIB)]) == 2
    assert main(["sensitivity", str(MODEL), "--target", "int8", "--calib", str(CALIB), "--keep-dtype",
                 str(tmp_path / "k.cfg")]) == 2
    assert "--target fp16" in capsys.readouterr().err
    assert not (tmp_path / "k.cfg").exists()


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


OVERFLOW_MODEL = FIXTURES / "sim_overflow.onnx"
SUM, DIV = "/body/norm/ReduceSum", "/body/norm/Div"


def _fp16_features(keep: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reference and float16 outputs of the overflow model, through the fp16 simulator with ``keep`` in float32."""
    import onnx

    from netdiff.runners.onnxrt import OnnxModel
    from netdiff.simulators.fp16 import prepare_fp16

    feeds = {"input": np.load(FIXTURES / "sim_input.npy")}
    reference = OnnxModel(OVERFLOW_MODEL).run(feeds)["features"].load()
    target = prepare_fp16(onnx.load(str(OVERFLOW_MODEL)), keep).dump(feeds)["features"].load()
    return reference, target


def test_fp16_sensitivity_keeps_the_overflowing_sum_and_its_consumer() -> None:
    """The sum exceeds 65504: kept in float32 alone, its float16 consumer's input overflows again
    (as on the device, where a Cast to float16 feeds the Div), so the pair must stay in float32."""
    result = analyze_sensitivity(OVERFLOW_MODEL, FIXTURES / "sim_input.npy", kind="fp16", target_cosine=0.999)
    # either one alone in float16 overflows (the Div through its float16 copy of the sum)
    assert {s.node for s in result.layers[:2]} == {SUM, DIV} and all(s.alone_cosine < 0.01 for s in result.layers[:2])
    assert all(s.cost < 1e-3 for s in result.layers[2:])
    assert result.baseline_cosine < 0.01
    assert result.reached and sorted(result.exclude) == [DIV, SUM]
    assert result.final_cosine >= 0.999
    assert result.keep_dtype_cfg() == "".join(f"{n}\n" for n in result.exclude)
    assert "--keep_dtype" in result.snippet() and "force_fp16" in result.snippet()
    # the simulator agrees: the sum alone in float32 leaves the features at 0, the pair repairs them
    reference, alone = _fp16_features([SUM])
    assert not np.any(alone) and np.any(reference)
    reference, both = _fp16_features(result.exclude)
    assert output_cosine([{"y": reference}], [{"y": both}]) == pytest.approx(result.final_cosine, abs=1e-6)


def test_fp16_sensitivity_of_a_healthy_model_keeps_nothing(tmp_path: Path) -> None:
    result = analyze_sensitivity(FIXTURES / "small_cnn.onnx", FIXTURES / "small_cnn_input.npy", kind="fp16")
    assert result.reached and result.exclude == [] and result.baseline_cosine > 0.999
    assert {s.op_type for s in result.layers} >= {"Conv", "Gemm"}
    assert all(s.cost < 1e-3 for s in result.layers)


def test_cli_fp16_sensitivity_writes_the_keep_dtype_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, out = tmp_path / "keep_dtype.cfg", tmp_path / "s.json"
    code = main(["sensitivity", str(OVERFLOW_MODEL), "--target", "fp16", "--input", str(FIXTURES / "sim_input.npy"),
                 "--keep-dtype", str(cfg), "--json", str(out)])
    assert code == 0
    assert "atc --keep_dtype" in capsys.readouterr().out
    assert sorted(cfg.read_text().splitlines()) == [DIV, SUM]
    data = json.loads(out.read_text())
    assert sorted(data["keep_dtype"]) == [DIV, SUM] and data["kind"] == "fp16"
    assert main(["sensitivity", str(OVERFLOW_MODEL), "--target", "fp16", "--option", "per_channel=1"]) == 2
