"""Resize converted with another sampling convention: named by re-running the op under each one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import netdiff
from netdiff.diagnosis.resample import conventions, resize_attributes
from netdiff.dumping import dump_model

INPUT = np.random.default_rng(7).standard_normal((1, 3, 16, 16)).astype(np.float32)


def _model(path: Path, resize: dict, size: int = 32, noise: float = 0.0) -> Path:
    """Conv -> Relu -> Resize(to size x size) -> Conv; ``noise`` perturbs the first Conv's weights."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    w1 = w1 + noise * np.random.default_rng(1).standard_normal(w1.shape).astype(np.float32)
    w2 = rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([1, 4, size, size], np.int64), "sizes")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="/relu1/Relu"),
             helper.make_node("Resize", ["r1", "", "", "sizes"], ["up"], name="/up/Resize", **resize),
             helper.make_node("Conv", ["up", "w2"], ["out"], name="/conv2/Conv", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


HALF_PIXEL = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
ALIGN_CORNERS = {"mode": "linear", "coordinate_transformation_mode": "align_corners"}


def _finding(report, kind="resize_semantics"):
    return next((f for f in report.findings if f.kind == kind), None)


def test_align_corners_target_is_named(tmp_path: Path) -> None:
    report = netdiff.compare(_model(tmp_path / "ref.onnx", HALF_PIXEL), _model(tmp_path / "tgt.onnx", ALIGN_CORNERS),
                             {"input": INPUT})
    assert report.first_divergence == "up"
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("resize_semantics", "up", "error")
    assert top.evidence["target_matches"] == ALIGN_CORNERS and top.evidence["reference"] == HALF_PIXEL
    assert top.evidence["cosine_reproduced"] > 0.9999 > top.evidence["cosine_reference_convention"]
    assert "align_corners" in top.message and "align" in top.suggestion


def test_nearest_rounding_convention_from_a_device_style_dump(tmp_path: Path) -> None:
    """PyTorch's nearest (asymmetric, floor) converted by a tool that ignores nearest_mode (ONNX's default
    round_prefer_floor), 16 -> 24 pixels; the target is a dump directory, as a device dump would be."""
    pytorch = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    device = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "round_prefer_floor"}
    ref = _model(tmp_path / "ref.onnx", pytorch, size=24)
    dump_model(_model(tmp_path / "tgt.onnx", device, size=24), tmp_path / "dump", {"input": INPUT})
    report = netdiff.compare(ref, tmp_path / "dump", {"input": INPUT})
    found = _finding(report)
    assert found is not None and found.layer == "up"
    # several conventions sample identically at 1.5x: the one closest to the reference is named
    assert found.evidence["target_matches"] == device
    assert "nearest / half_pixel / round_prefer_ceil" in found.evidence["equivalent"]
    assert found.evidence["cosine_reproduced"] > 0.9999
    assert "round_prefer_floor" in found.suggestion


def test_same_convention_with_upstream_error_is_not_blamed_on_the_resize(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx", HALF_PIXEL)
    report = netdiff.compare(ref, _model(tmp_path / "tgt.onnx", HALF_PIXEL, noise=0.2), {"input": INPUT})
    assert report.diverged and report.first_divergence != "up"
    assert _finding(report) is None
    clean = netdiff.compare(ref, _model(tmp_path / "same.onnx", HALF_PIXEL), {"input": INPUT})
    assert not clean.diverged and clean.findings == []


def test_bilinear_converted_to_nearest_is_named(tmp_path: Path) -> None:
    """A converter that only has a nearest upsample (NNIE's Upsample layer) in place of bilinear."""
    nearest = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    report = netdiff.compare(_model(tmp_path / "ref.onnx", HALF_PIXEL), _model(tmp_path / "tgt.onnx", nearest),
                             {"input": INPUT})
    found = _finding(report)
    assert found is not None and found.layer == "up" and found.evidence["target_matches"]["mode"] == "nearest"
    assert "interpolates nearest" in found.suggestion


@pytest.mark.parametrize("attrs, expected", [
    ({}, {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor"}),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, ALIGN_CORNERS),
    ({"mode": "cubic"}, {"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "cubic_coeff_a": -0.75}),
])
def test_resize_attributes_fill_onnx_defaults(attrs: dict, expected: dict) -> None:
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], **attrs)
    assert resize_attributes(node) == expected
    assert expected in conventions(expected["mode"])


def test_upsample_samples_like_asymmetric_floor() -> None:
    node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")
    assert resize_attributes(node) == {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                       "nearest_mode": "floor"}
    assert resize_attributes(helper.make_node("Upsample", ["x", "s"], ["y"], mode="bilinear"))["mode"] == "linear"


def test_all_zero_target_is_a_dead_output_not_a_convention(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A target Resize that outputs zeros has no cosine with any convention: named dead, no rule fails."""
    from netdiff.manifest import write_dump
    from netdiff.runners.onnxrt import OnnxModel
    from netdiff.types import Dump, Tensor

    ref = _model(tmp_path / "ref.onnx", HALF_PIXEL)
    dump = OnnxModel(ref).run({"input": INPUT})
    tensors = {n: (Tensor.from_array(n, np.zeros(t.shape, np.float32)) if n in ("up", "out")
                   else Tensor.from_array(n, t.load())) for n, t in dump.tensors.items()}
    write_dump(Dump(tensors), tmp_path / "zeros")
    report = netdiff.compare(ref, tmp_path / "zeros", {"input": INPUT})
    assert report.first_divergence == "up" and _finding(report) is None
    assert [(f.kind, f.layer) for f in report.findings] == [("dead_output", "up")]
    assert not [r for r in caplog.records if "rule" in r.getMessage() and "failed" in r.getMessage()]
