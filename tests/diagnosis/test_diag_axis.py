"""A Softmax-like op computed along another axis (a layout conversion kept the axis number)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import netdiff
from netdiff.diagnosis.axis import node_axis
from netdiff.dumping import dump_model

INPUT = np.random.default_rng(3).standard_normal((1, 3, 6, 6)).astype(np.float32)


def _model(path: Path, axis: int, op: str = "Softmax", opset: int = 13, noise: float = 0.0) -> Path:
    """Conv -> Softmax(axis) -> Conv; ``noise`` perturbs the first Conv's weights."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5
    w1 = w1 + noise * np.random.default_rng(1).standard_normal(w1.shape).astype(np.float32)
    w2 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c1"], ["prob"], name="/head/Softmax", axis=axis),
             helper.make_node("Conv", ["prob", "w2"], ["out"], name="/conv2/Conv")]
    graph = helper.make_graph(nodes, "axis", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _finding(report):
    return next((f for f in report.findings if f.kind == "axis_semantics"), None)


def test_softmax_over_width_instead_of_channels_is_named(tmp_path: Path) -> None:
    """The model normalises over the channels (axis 1); the device, after an NHWC conversion that kept
    the number 3, over the width. The target is a plain dump, as a device's would be."""
    dump_model(_model(tmp_path / "device.onnx", axis=3), tmp_path / "dump", {"input": INPUT})
    report = netdiff.compare(_model(tmp_path / "ref.onnx", axis=1), tmp_path / "dump", {"input": INPUT})
    assert report.first_divergence == "prob"
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("axis_semantics", "prob", "error")
    assert top.evidence["model_axis"] == 1 and top.evidence["target_axis"] == 3
    assert top.evidence["cosine_reproduced"] > 0.9999 > top.evidence["cosine_model_axis"]
    assert "axis 3" in top.message and "layout" in top.suggestion


def test_lp_normalization_axis(tmp_path: Path) -> None:
    report = netdiff.compare(_model(tmp_path / "ref.onnx", axis=1, op="LpNormalization"),
                             _model(tmp_path / "tgt.onnx", axis=2, op="LpNormalization"), {"input": INPUT})
    found = _finding(report)
    assert found is not None and found.evidence["target_axis"] == 2


def test_same_axis_with_upstream_error_and_old_opset_are_left_alone(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx", axis=1)
    report = netdiff.compare(ref, _model(tmp_path / "tgt.onnx", axis=1, noise=0.3), {"input": INPUT})
    assert report.diverged and report.first_divergence != "prob" and _finding(report) is None
    # before opset 13 Softmax(axis=k) normalises over every axis from k on: not a single-axis question
    old = netdiff.compare(_model(tmp_path / "ref11.onnx", axis=1, opset=11),
                          _model(tmp_path / "tgt11.onnx", axis=3, opset=11), {"input": INPUT})
    assert old.diverged and _finding(old) is None


def test_node_axis_default_and_negative() -> None:
    assert node_axis(helper.make_node("Softmax", ["x"], ["y"]), 4) == 3
    assert node_axis(helper.make_node("Softmax", ["x"], ["y"], axis=-3), 4) == 1
