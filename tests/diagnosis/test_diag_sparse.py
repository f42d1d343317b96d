"""Sparse device dumps (the input, two feature maps and the outputs): causes named from the nearest dumped tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import netdiff
from netdiff.runners.onnxrt import OnnxModel

INPUT = np.random.default_rng(5).standard_normal((1, 3, 12, 12)).astype(np.float32)
HALF_PIXEL = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
ALIGN_CORNERS = {"mode": "linear", "coordinate_transformation_mode": "align_corners"}
#: What the board dumped: the graph input, two intermediates and the output.
SPARSE = ("input", "r1", "c2", "prob")


def _model(path: Path, resize: dict = HALF_PIXEL, axis: int = 1, noise: float = 0.0) -> Path:
    """input -> Conv -> Relu (r1) -> Resize x2 (up) -> Conv (c2) -> Relu -> Conv (logits) -> Softmax (prob)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.4
    w2 = rng.standard_normal((6, 6, 3, 3)).astype(np.float32) * 0.3
    w3 = rng.standard_normal((5, 6, 1, 1)).astype(np.float32) * 0.6
    w3 = w3 + noise * np.random.default_rng(1).standard_normal(w3.shape).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(w3, "w3"),
             numpy_helper.from_array(np.array([1, 6, 24, 24], np.int64), "sizes")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Resize", ["r1", "", "", "sizes"], ["up"], name="up", **resize),
             helper.make_node("Conv", ["up", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3"], ["logits"], name="conv3"),
             helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=axis)]
    graph = helper.make_graph(nodes, "sparse", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _board_dump(model: Path, out: Path, keep: tuple[str, ...] = SPARSE) -> Path:
    """Run the target model and keep only ``keep``, as a plain .npy directory (a board dump)."""
    out.mkdir()
    for tensor in OnnxModel(model).run({"input": INPUT}):
        if tensor.name in keep:
            np.save(out / f"{tensor.name}.npy", np.ascontiguousarray(tensor.load()))
    return out


def _kinds(report) -> list[tuple[str, str | None]]:
    return [(f.kind, f.layer) for f in report.findings]


def test_resize_convention_named_from_the_nearest_dumped_feature_map(tmp_path: Path) -> None:
    """The Resize's input and output are not dumped: the reference from r1 (Resize, Conv) is re-run with each
    convention and compared at c2."""
    dump = _board_dump(_model(tmp_path / "device.onnx", resize=ALIGN_CORNERS), tmp_path / "dump")
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), dump, {"input": INPUT})
    assert report.first_divergence == "c2"
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("resize_semantics", "c2", "error")
    assert top.evidence["target_matches"] == ALIGN_CORNERS
    assert top.evidence["started_from"] == ["r1"] and top.evidence["op_tensor"] == "up"
    assert top.evidence["cosine_reproduced"] > 0.9999 > top.evidence["cosine_reference_convention"]
    assert "re-run from r1" in top.message and "up was not dumped" in top.message
    assert "introduced_error" not in [k for k, _ in _kinds(report)]


def test_softmax_axis_named_when_its_input_was_not_dumped(tmp_path: Path) -> None:
    """The final Softmax's input (logits) is not dumped: recomputed from c2 through Relu and Conv."""
    dump = _board_dump(_model(tmp_path / "device.onnx", axis=3), tmp_path / "dump")
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), dump, {"input": INPUT})
    assert report.first_divergence == "prob"
    top = next(f for f in report.findings if f.kind == "axis_semantics")
    assert top.layer == "prob" and top.severity == "error"
    assert top.evidence["target_axis"] == 3 and top.evidence["model_axis"] == 1
    assert top.evidence["started_from"] == ["c2"] and "re-run from c2" in top.message


def test_resize_origin_whose_input_was_not_dumped(tmp_path: Path) -> None:
    """The board dumped the Resize's output but not its input: its input is recomputed from the graph input."""
    keep = ("input", "up", "c2", "prob")
    dump = _board_dump(_model(tmp_path / "device.onnx", resize=ALIGN_CORNERS), tmp_path / "dump", keep)
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), dump, {"input": INPUT})
    found = next(f for f in report.findings if f.kind == "resize_semantics")
    assert found.layer == "up" and found.evidence["started_from"] == ["input"]
    assert "op_tensor" not in found.evidence


def test_sparse_clean_and_upstream_errors_name_no_semantics(tmp_path: Path) -> None:
    """A clean sparse dump reads clean; an error in the last Conv's weights is not blamed on the Softmax axis."""
    ref = _model(tmp_path / "ref.onnx")
    clean = netdiff.compare(ref, _board_dump(_model(tmp_path / "same.onnx"), tmp_path / "clean"), {"input": INPUT})
    assert not clean.diverged and clean.findings == []
    report = netdiff.compare(ref, _board_dump(_model(tmp_path / "bad.onnx", noise=0.5), tmp_path / "bad"),
                             {"input": INPUT})
    assert report.first_divergence == "prob"
    assert not [f for f in report.findings if f.kind in ("axis_semantics", "resize_semantics")]
    intro = next(f for f in report.findings if f.kind == "introduced_error")
    # the isolated re-run started from c2: the segment (Relu, Conv, Softmax) is wrong, not "its inputs match"
    assert "inputs match" not in intro.message and "c2" in intro.message
    assert intro.evidence["recomputed_from"] == ["c2"]


@pytest.mark.parametrize("keep", [("input", "prob"), ("prob",)])
def test_very_sparse_dumps(tmp_path: Path, keep: tuple[str, ...]) -> None:
    """Only the input and the output (the whole net re-run from the input), or the output alone (nothing to
    re-run from: no claim about inputs that were not dumped)."""
    dump = _board_dump(_model(tmp_path / "device.onnx", axis=3), tmp_path / "dump", keep)
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), dump, {"input": INPUT})
    assert report.diverged and report.findings
    assert not any("inputs match" in f.message for f in report.findings)
    if "input" in keep:
        assert ("axis_semantics", "prob") in _kinds(report)


def test_slim320_with_only_boxes_and_scores_dumped():
    """A real face detector (../shared slim-320, Caffe) whose board dump holds only boxes and scores, the scores
    left in Q20.12 (x4096), the boxes noisy: output_scale at scores; about boxes only the measured facts, no
    claim about the inputs that were not dumped (issue 18)."""
    from tests.conftest import FIXTURES, shared_dir

    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    shared = shared_dir()
    proto = shared / "fixtures" / "caffe" / "slim320" / "slim-320.prototxt" if shared else None
    if proto is None or not proto.is_file():
        pytest.skip("../shared/fixtures/caffe/slim320 is absent")
    from netdiff.runners.caffe import CaffeModel
    from netdiff.types import Dump, Tensor

    model = CaffeModel(proto)
    bgr = cv2.imread(str(FIXTURES / "images" / "astronaut_face_320x240.png"))
    x = (np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)) - 127.0) / 128.0
    out = model.run({"input": x})
    scores = np.array(out["scores"].load()) * 4096.0
    boxes = np.array(out["boxes"].load())
    noisy = boxes + 0.2 * np.abs(boxes).mean() * np.random.default_rng(0).standard_normal(boxes.shape).astype(np.float32)
    for name, kept in (("scores only", {"boxes": boxes}), ("noisy boxes", {"boxes": noisy})):
        tensors = {"scores": Tensor.from_array("scores", scores.astype(np.float32))}
        tensors.update({n: Tensor.from_array(n, v) for n, v in kept.items()})
        report = netdiff.compare(model, Dump(tensors, source="board", format="npy-dir"), {"input": x})
        assert report.findings[0].kind == "output_scale" and report.findings[0].layer == "scores", name
        assert report.findings[0].evidence["factor_named"] == "4096 (Q12)"
        assert not any("inputs match" in f.message or f.kind == "introduced_error" for f in report.findings), name
    assert _kinds(report)[1:] == [("unexplained_divergence", "boxes")]
    assert "dump more tensors before boxes" in report.findings[1].suggestion


@pytest.mark.parametrize("isolated", ["origins", "all"])
def test_two_faults_in_a_sparse_dump_both_named(tmp_path: Path, isolated: str) -> None:
    """A Resize with align_corners and a final Softmax on axis 3, the board dumping input, r1, c2 and prob: the
    Resize is named at the origin c2, and prob, whose input already diverges but whose re-run from c2 is itself
    wrong, is a second introduction point: the axis rule runs on it too (issue 21 audit)."""
    device = _model(tmp_path / "device.onnx", resize=ALIGN_CORNERS, axis=3)
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), _board_dump(device, tmp_path / "dump"), {"input": INPUT},
                             isolated=isolated)
    assert report.origins == ["c2"]
    kinds = _kinds(report)
    assert ("resize_semantics", "c2") in kinds and ("axis_semantics", "prob") in kinds
    assert "introduced_error" not in [k for k, _ in kinds]
    axis = next(f for f in report.findings if f.kind == "axis_semantics")
    assert axis.evidence["target_axis"] == 3 and axis.evidence["started_from"] == ["c2"]
    assert report.layers[[x.name for x in report.layers].index("prob")].extra["isolated"]["cosine"] < 0.9


def test_second_fault_no_rule_names_is_an_introduced_error(tmp_path: Path) -> None:
    """The Resize fault plus wrong weights in the last Conv (no semantic variant reproduces them): prob gets
    introduced_error as a second introduction point, saying its inputs already diverge."""
    device = _model(tmp_path / "device.onnx", resize=ALIGN_CORNERS, noise=0.5)
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), _board_dump(device, tmp_path / "dump"), {"input": INPUT})
    assert ("resize_semantics", "c2") in _kinds(report)
    intro = next(f for f in report.findings if f.kind == "introduced_error")
    assert intro.layer == "prob" and intro.evidence["after_origins"] == ["c2"]
    assert intro.evidence["recomputed_from"] == ["c2"] and "second introduction point" in intro.message
    assert not [f for f in report.findings if f.kind == "axis_semantics"]


@pytest.mark.parametrize("isolated", ["origins", "all"])
def test_layer_that_only_inherits_is_no_second_introduction(tmp_path: Path, isolated: str) -> None:
    """Only the Resize is wrong: prob diverges too (it inherits c2's error), but its re-run from c2 reproduces the
    target, so it gets no finding of its own."""
    device = _model(tmp_path / "device.onnx", resize=ALIGN_CORNERS)
    report = netdiff.compare(_model(tmp_path / "ref.onnx"), _board_dump(device, tmp_path / "dump"), {"input": INPUT},
                             isolated=isolated)
    prob = report.layers[[x.name for x in report.layers].index("prob")]
    assert prob.status == "diverged" and not prob.introduced
    if "isolated" in prob.extra:
        assert prob.extra["isolated"]["cosine"] > 0.9999
    assert _kinds(report) == [("resize_semantics", "c2")]

