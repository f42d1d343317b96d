"""NNIE rule wiring: stride padding left in a blob, and the detector "no boxes" pattern."""

from __future__ import annotations

import numpy as np

import netdiff
from netdiff.runners.onnxrt import OnnxModel
from netdiff.samples import detection_head, natural_image, preprocess
from netdiff.types import Dump, Tensor


def _reference() -> Dump:
    return OnnxModel.from_proto(detection_head()).run({"images": preprocess(natural_image(64, 64, seed=1))})


def _target(reference: Dump, replace: dict[str, np.ndarray], fmt: str) -> Dump:
    tensors = {}
    for t in reference:
        value = replace.get(t.name, t.load())
        tensors[t.name] = Tensor.from_array(t.name, np.asarray(value))
    return Dump(tensors, source="device", format=fmt)


def test_collapsed_detection_scores_are_named():
    ref = _reference()
    scores = ref["scores"].load()
    assert (scores >= 0.5).sum() > 10
    logits = np.log(scores / (1 - scores))
    collapsed = 1 / (1 + np.exp(-(logits - 4.0)))  # a head bias lost in conversion
    report = netdiff.compare(ref, _target(ref, {"scores": collapsed.astype(np.float32)}, "npy-dir"))
    kinds = {(f.kind, f.layer) for f in report.findings}
    assert ("detection_scores_collapsed", "scores") in kinds


def test_stride_padding_left_in_nnie_blob():
    ref = _reference()
    boxes = ref["boxes"].load()  # 1x4x8x8: 8 floats per row, stored at a 16-element row stride
    padded = np.zeros((1, 4, 8, 16), np.float32)
    padded[..., :8] = boxes
    report = netdiff.compare(ref, _target(ref, {"boxes": padded}, "nnie-blob"))
    layer = report.layer("boxes")
    assert layer.status == "shape_mismatch"
    finding = next(f for f in report.findings if f.layer == "boxes")
    assert finding.kind == "input_layout" and finding.evidence["row_stride_elements"] == 16
