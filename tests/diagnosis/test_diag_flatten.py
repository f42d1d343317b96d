"""A feature map flattened in HWC order before the first fully connected layer (NHWC target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import netdiff

INPUT = np.random.default_rng(4).standard_normal((1, 3, 6, 6)).astype(np.float32)


def _model(path: Path, nhwc: bool = False, noise: float = 0.0) -> Path:
    """Conv -> Flatten -> Gemm; ``nhwc`` flattens the feature map as N,H,W,C (a Transpose first)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    w1 = w1 + noise * np.random.default_rng(1).standard_normal(w1.shape).astype(np.float32)
    fc = rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1])]
    flat_in = "c1"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["c1"], ["c1_nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]))
        flat_in = "c1_nhwc"
    nodes += [helper.make_node("Flatten", [flat_in], ["flat"], name="/Flatten", axis=1),
              helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="/fc/Gemm", transB=1)]
    graph = helper.make_graph(nodes, "flatten", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(fc, "fc")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _finding(report):
    return next((f for f in report.findings if f.kind == "flatten_order"), None)


def test_hwc_flatten_is_named(tmp_path: Path) -> None:
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), _model(tmp_path / "tgt.onnx", nhwc=True), {"input": INPUT})
    assert report.first_divergence == "flat"
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("flatten_order", "flat", "error")
    assert top.evidence["target_order"] == "HWC" and top.evidence["cosine_reproduced"] > 0.9999
    assert "HWC" in top.message and "transpose" in top.suggestion


def test_same_order_with_upstream_error_is_left_alone(tmp_path: Path) -> None:
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), _model(tmp_path / "tgt.onnx", noise=0.3), {"input": INPUT})
    assert report.diverged and report.first_divergence != "flat" and _finding(report) is None


def test_hwc_flatten_named_from_a_dump_of_input_and_logits(tmp_path: Path) -> None:
    """A board dump with only the input and the logits: the reference from the input (Conv, Flatten, Gemm) is
    re-run with each flattening order and compared at the logits."""
    from netdiff.runners.onnxrt import OnnxModel

    dump = tmp_path / "dump"
    dump.mkdir()
    for tensor in OnnxModel(_model(tmp_path / "tgt.onnx", nhwc=True)).run({"input": INPUT}):
        if tensor.name in ("input", "logits"):
            np.save(dump / f"{tensor.name}.npy", np.ascontiguousarray(tensor.load()))
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), dump, {"input": INPUT})
    found = _finding(report)
    assert found is not None and found.layer == "logits" and found.evidence["target_order"] == "HWC"
    assert found.evidence["started_from"] == ["input"] and found.evidence["op_tensor"] == "flat"
