"""A synthetic SSD (PriorBox, Permute, Softmax, DetectionOutput): detections compared as box sets."""

from __future__ import annotations

import numpy as np

import netdiff
from caffe_testkit import write_model
from netdiff.detection import find_heads
from netdiff.runners.caffe import CaffeModel
from test_caffe_detection import PROTOTXT, _weights
from tests.conftest import save_target


def _ssd(tmp_path, stem, weights):
    folder = tmp_path / stem
    folder.mkdir()
    return CaffeModel(write_model(folder, PROTOTXT, weights))


def test_detection_output_of_other_length_is_a_box_set(tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    reference = _ssd(tmp_path, "ref", _weights())
    weights = _weights()
    weights["conf"][1] = weights["conf"][1] - np.tile([0.0, 4.0, 4.0], 3).astype(np.float32)  # classes fade
    target = save_target(_ssd(tmp_path, "tgt", weights).run({"data": x}), tmp_path / "dump")
    ref_rows = reference.run({"data": x})["det"].load()
    tgt_rows = np.load(target / "det.npy")
    assert ref_rows.shape[2] != tgt_rows.shape[2]

    heads = {h.scores: h for h in find_heads(reference.run({"data": x}))}
    assert heads["det"].kind == "detection_output"
    assert heads["conf_softmax"].feeds == "det" and heads["conf_softmax"].boxes == "loc_flat"

    report = netdiff.compare(reference, target, {"data": x})
    det = report.layer("det")
    assert det.status == "diverged" and "compared as box sets" in det.reason
    entry = next(e for e in report.meta["detection"] if e["scores"] == "det")
    assert entry["matched_by"] == "iou" and entry["reference_kept"] + entry["target_kept"] > 0
    kinds = {(f.kind, f.layer) for f in report.findings}
    assert kinds & {("detection_scores_collapsed", "det"), ("detection_mismatch", "det")}
    assert not any(f.layer == "conf_softmax" and f.kind.startswith("detection") for f in report.findings)
    assert not any(layer.status == "shape_mismatch" for layer in report.layers)


def test_same_detections_in_another_order_are_ok(tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    reference = _ssd(tmp_path, "ref", _weights())
    dump = reference.run({"data": x})
    target = save_target(dump, tmp_path / "dump")
    rows = np.load(target / "det.npy")
    assert rows.shape[2] >= 2
    np.save(target / "det.npy", np.concatenate([rows[:, :, ::-1], rows[:, :, :1]], axis=2))  # reordered + a duplicate
    report = netdiff.compare(reference, target, {"data": x})
    entry = next(e for e in report.meta["detection"] if e["scores"] == "det")
    assert entry["lost"] == 0 and entry["matched"] == entry["reference_kept"]
