"""netdiff.boxes: IoU matching of two scored box sets."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.boxes import BoxAgreement, iou_matrix, match_boxes

BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 30]], dtype=np.float64)


def test_iou_matrix_known_values():
    iou = iou_matrix(BOXES[:1], np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [3, 3, 3, 9]]))
    assert iou[0, 0] == 1.0
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[0, 2] == 0.0 and iou[0, 3] == 0.0  # touching corner, degenerate box


def test_identical_sets_agree():
    scores = np.array([0.9, 0.8, 0.3])
    a = match_boxes(BOXES, scores, BOXES, scores)
    assert (a.reference_kept, a.target_kept, a.matched, a.lost, a.extra) == (2, 2, 2, 0, 0)
    assert a.agrees and a.max_score_delta == 0.0 and a.max_offset == 0.0 and a.min_iou == 1.0


def test_lost_extra_and_deltas():
    ref_scores = np.array([0.9, 0.8, 0.3])
    shifted = BOXES + np.array([1, 0, 1, 0])
    tgt_scores = np.array([0.7, 0.1, 0.6])  # box 1 lost, box 2 extra
    a = match_boxes(BOXES, ref_scores, shifted, tgt_scores)
    assert (a.reference_kept, a.target_kept, a.matched, a.lost, a.extra) == (2, 2, 1, 1, 1)
    assert a.pairs == ((0, 0),)
    assert a.score_deltas[0] == pytest.approx(-0.2)
    assert a.max_offset == 1.0 and a.max_relative_offset == pytest.approx(0.1)
    assert not a.agrees


def test_target_with_no_boxes_loses_all():
    a = match_boxes(BOXES, np.array([0.9, 0.95, 0.99]), BOXES, np.array([0.15, 0.1, 0.0]))
    assert (a.reference_kept, a.target_kept, a.lost, a.extra) == (3, 0, 3, 0)
    assert a.max_score_delta is None and a.summary()["lost"] == 3


def test_greedy_by_reference_score_and_one_to_one():
    ref = np.array([[0, 0, 10, 10], [1, 0, 11, 10]])
    tgt = np.array([[1, 0, 11, 10]])
    a = match_boxes(ref, [0.6, 0.9], tgt, [0.9])
    assert a.pairs == ((1, 0),) and a.lost == 1 and a.extra == 0


def test_labels_must_match():
    a = match_boxes(BOXES[:1], [0.9], BOXES[:1], [0.9], reference_labels=[1], target_labels=[2])
    assert (a.matched, a.lost, a.extra) == (0, 1, 1)
    with pytest.raises(ValueError, match="both sides"):
        match_boxes(BOXES[:1], [0.9], BOXES[:1], [0.9], reference_labels=[1])


def test_empty_and_malformed():
    empty = np.zeros((0, 4))
    a = match_boxes(empty, [], empty, [])
    assert (a.reference_kept, a.target_kept, a.matched) == (0, 0, 0) and a.agrees
    with pytest.raises(ValueError, match="scores need"):
        match_boxes(BOXES, [0.9], BOXES, [0.9, 0.9, 0.9])


def test_combine_sums_counts():
    one = match_boxes(BOXES, [0.9, 0.9, 0.9], BOXES, [0.9, 0.1, 0.9])
    two = match_boxes(BOXES, [0.1, 0.1, 0.9], BOXES, [0.9, 0.1, 0.9])
    total = BoxAgreement.combine([one, two])
    assert (total.reference_kept, total.target_kept, total.matched, total.lost, total.extra) == (4, 4, 3, 1, 1)
    assert len(total.score_deltas) == 3
    with pytest.raises(ValueError):
        BoxAgreement.combine([one, match_boxes(BOXES, [0.9] * 3, BOXES, [0.9] * 3, score_threshold=0.3)])


def test_match_indexed_pairs_same_slots():
    from netdiff.boxes import match_indexed

    ref_boxes = BOXES
    tgt_boxes = BOXES + 2.0
    a = match_indexed([0, 1, 2], [0.9, 0.8, 0.2], [0, 1, 2], [0.6, 0.1, 0.7], ref_boxes, tgt_boxes)
    assert (a.reference_kept, a.target_kept, a.matched, a.lost, a.extra) == (2, 2, 1, 1, 1)
    assert a.pairs == ((0, 0),) and a.max_offset == 2.0 and a.min_iou == pytest.approx(64 / 136)
    raw = match_indexed([5], [0.9], [5], [0.9], [[0.1, -0.2, 0.3, 0.0]], [[0.1, -0.1, 0.3, 0.0]], corners=False)
    assert raw.matched == 1 and raw.ious == () and raw.max_offset == pytest.approx(0.1)
