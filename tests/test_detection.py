"""Detector heads: "no boxes" on the real slim-320 face detector, never on classifiers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import netdiff
from netdiff.detection import find_heads
from netdiff.runners.onnxrt import OnnxModel
from netdiff.types import Dump, Tensor
from tests.conftest import FIXTURES, save_target, shared_dir

FACE = FIXTURES / "images" / "astronaut_face_320x240.png"  # fixtures/images/SOURCE.md


def _slim320() -> Path:
    shared = shared_dir()
    path = shared / "fixtures" / "caffe" / "slim320" / "slim-320.prototxt" if shared else None
    if path is None or not path.is_file():
        pytest.skip("../shared/fixtures/caffe/slim320 is absent")
    return path


def _face_rgb() -> np.ndarray:
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    bgr = cv2.imread(str(FACE))
    return np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32))


@pytest.fixture(scope="module")
def slim_raw_input(tmp_path_factory):
    """slim-320 run on raw 0–255 pixels (a target that forgot (x − 127) / 128), dumped by blob name."""
    from netdiff.runners.caffe import CaffeModel

    model = CaffeModel(_slim320())
    raw = _face_rgb()
    normalized = (raw - 127.0) / 128.0
    out = save_target(model.run({"input": raw}), tmp_path_factory.mktemp("slim_raw"))
    return model, normalized, out


def test_slim320_raw_input_loses_every_face(slim_raw_input, tmp_path):
    model, normalized, target = slim_raw_input
    report = netdiff.compare(model, target, {"input": normalized})
    assert report.first_divergence == "input"
    kinds = [f.kind for f in report.findings]
    assert "input_normalization" in kinds and "detection_scores_collapsed" in kinds
    finding = next(f for f in report.findings if f.kind == "detection_scores_collapsed")
    assert finding.layer == "scores" and finding.evidence["background"] == 0
    assert finding.evidence["reference_kept"] >= 3 and finding.evidence["target_kept"] == 0
    assert finding.evidence["reference_max"] > 0.99 and finding.evidence["target_max"] < 0.5
    [entry] = report.meta["detection"]
    assert (entry["kind"], entry["boxes"], entry["decoded"]) == ("anchors", "boxes", False)
    data = json.loads(report.to_json())
    assert data["meta"]["detection"][0]["lost"] == entry["reference_kept"]
    from netdiff.reports.html import render_html
    from netdiff.reports.terminal import render_text

    summary = f"reference {entry['reference_kept']}, target 0; matched 0, lost {entry['lost']}"
    assert "detections" in render_text(report, width=250) and summary in render_text(report, width=250)
    page = render_html(report)
    assert 'id="detections"' in page and summary in page


def test_slim320_threshold_option_and_clean_target(slim_raw_input, tmp_path):
    model, normalized, _ = slim_raw_input
    clean = save_target(model.run({"input": normalized}), tmp_path / "clean")
    report = netdiff.compare(model, clean, {"input": normalized}, score_threshold=0.9)
    [entry] = report.meta["detection"]
    assert entry["score_threshold"] == 0.9 and entry["lost"] == 0 and entry["extra"] == 0
    assert entry["matched"] == entry["reference_kept"] > 0 and entry["max_score_delta"] < 1e-5
    assert not report.failed and report.findings == []


def _collapse(reference: Dump, name: str) -> Dump:
    tensors = {}
    for t in reference:
        value = np.asarray(t.load())
        if t.name == name:
            value = np.full_like(value, 1.0 / value.shape[-1])  # every class equally (un)likely
        tensors[t.name] = Tensor.from_array(t.name, value)
    return Dump(tensors, source="device", format="npy-dir")


def test_no_detection_finding_on_classifiers(cnn_reference):
    rnet = OnnxModel(FIXTURES / "mtcnn" / "rnet.onnx")
    rnet_ref = rnet.run({"input_2": np.random.default_rng(0).uniform(-1, 1, (1, 24, 24, 3)).astype(np.float32)})
    for reference, prob in ((cnn_reference, "probs"), (rnet_ref, "softmax_1")):
        assert find_heads(reference) == []
        report = netdiff.compare(reference, _collapse(reference, prob))
        assert report.layer(prob).status == "diverged"
        assert not {f.kind for f in report.findings} & {"detection_scores_collapsed", "detection_mismatch"}
        assert "detection" not in report.meta


def test_dense_sigmoid_head_without_background():
    from netdiff.samples import detection_head, natural_image, preprocess

    ref = OnnxModel.from_proto(detection_head()).run({"images": preprocess(natural_image(64, 64, seed=1))})
    [head] = find_heads(ref)
    assert (head.scores, head.boxes, head.class_axis, head.background, head.box_axis) == ("scores", "boxes", 1, None, 1)


def _dump(name: str, value: np.ndarray, op: str) -> Dump:
    return Dump({name: Tensor.from_array(name, value.astype(np.float32), op_type=op, order=1)},
                source="test", format="npy-dir", graph_outputs=[name])


def test_yolo_rows_objectness_times_class():
    rng = np.random.default_rng(0)
    rows = np.zeros((1, 300, 7))
    rows[0, :, :2] = rng.uniform(0, 320, (300, 2))
    rows[0, :, 2:4] = rng.uniform(10, 60, (300, 2))
    rows[0, :, 4] = rng.uniform(0, 0.3, 300)
    rows[0, :5, 4] = 0.95  # five confident objects
    rows[0, :, 5:] = rng.dirichlet([1, 1], 300)
    rows[0, :5, 5:] = [0.9, 0.1]
    [head] = find_heads(_dump("output", rows, "Concat"))
    assert (head.kind, head.classes) == ("yolo", 2)
    dead = rows.copy()
    dead[0, :, 4] *= 0.2  # objectness collapsed
    report = netdiff.compare(_dump("output", rows, "Concat"), _dump("output", dead, "Concat"))
    finding = next(f for f in report.findings if f.kind == "detection_scores_collapsed")
    assert finding.evidence["reference_kept"] == 5 and finding.evidence["target_kept"] == 0


def test_a_score_map_without_box_tensor_is_no_head():
    probs = np.random.default_rng(0).dirichlet(np.ones(21), (1, 64 * 64)).reshape(1, 64, 64, 21).transpose(0, 3, 1, 2)
    assert find_heads(_dump("seg", probs, "Softmax")) == []  # segmentation: classes per pixel, no boxes
    assert find_heads(_dump("prob", probs[:, :, :1, :1], "Softmax")) == []  # one position: a classifier
