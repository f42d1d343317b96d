"""Detector outputs: "no boxes" (every box lost) and boxes lost or gained, from netdiff.detection.

The detection comparison (``report.meta["detection"]``) is filled before the rules run; it only
exists for detector heads (a score tensor with a class axis at several anchors and a box tensor,
a DetectionOutput, YOLO rows), so classifiers never get these findings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from netdiff.diagnosis._common import pick
from netdiff.diagnosis.base import Context, register_rule
from netdiff.nnie.logquant import Q12
from netdiff.types import Finding

#: "No boxes" when the target keeps at most this fraction of the reference's boxes.
COLLAPSED_FRACTION = 0.1


@register_rule("detection")
def detections(context: Context) -> Iterator[Finding]:
    """One finding per detector head whose kept boxes differ (a head feeding a compared
    DetectionOutput is left to that one)."""
    entries = [e for e in context.report.meta.get("detection") or [] if isinstance(e, dict) and e.get("compared")]
    compared_outputs = {e["scores"] for e in entries if e.get("kind") == "detection_output"}
    for entry in entries:
        if entry.get("feeds") in compared_outputs or entry["scores"] in context.explained:
            continue
        finding = _collapsed(context, entry) or _mismatch(context, entry)
        if finding is not None:
            yield finding


def _evidence(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "scores", "boxes", "classes", "background", "matched_by", "score_threshold", "reference_kept",
            "target_kept", "matched", "lost", "extra", "reference_max", "target_max", "max_score_delta",
            "max_offset", "box_offsets")
    return {k: entry.get(k) for k in keys if entry.get(k) is not None}


def _what(entry: dict[str, Any]) -> str:
    if entry.get("kind") == "detection_output":
        return "detections"
    return "boxes (anchors before NMS)" if entry.get("kind") == "anchors" else "boxes (rows before NMS)"


def _collapsed(context: Context, entry: dict[str, Any]) -> Finding | None:
    ref, tgt = int(entry["reference_kept"]), int(entry["target_kept"])
    if ref == 0 or tgt > ref * COLLAPSED_FRACTION:
        return None
    r_max, t_max = entry.get("reference_max"), entry.get("target_max")
    threshold = entry["score_threshold"]
    background = entry.get("background")
    column = f", background column {background} excluded" if background is not None else ""
    best = f"; the target's best score is {t_max:.3f} vs {r_max:.3f}" if r_max is not None and t_max is not None else ""
    suggestion = "find the first divergence before the head (input preprocessing, quantization of the head)"
    if r_max and t_max and t_max > 0 and abs(r_max / t_max / Q12 - 1) < 0.05:
        best = f"; the target's scores are 4096x too small ({t_max:.3g} vs {r_max:.3g}): divided by 4096 twice"
        suggestion = "divide by 4096 once (the nnie readers already convert Q20.12)"
    message = (f"no boxes: the reference keeps {ref} {_what(entry)} at score ≥ {threshold:g} in {entry['scores']!r}"
               f"{column}, the target {tgt}{best}")
    return Finding("detection_scores_collapsed", entry["scores"], "error", message, _evidence(entry),
                   pick(context, nnie=suggestion + "; NNIE thresholds are in Q12 (0.5*4096)", generic=suggestion))


def _mismatch(context: Context, entry: dict[str, Any]) -> Finding | None:
    lost, extra = int(entry["lost"]), int(entry["extra"])
    if lost + extra == 0:
        return None
    layer = next((x for x in context.report.layers if x.name == entry["scores"]), None)
    if layer is None or layer.status != "diverged":
        return None  # scores within the thresholds: a box at the threshold flipping is not a conversion error
    message = (f"{entry['scores']!r} keeps other {_what(entry)} at score ≥ {entry['score_threshold']:g}: "
               f"{entry['reference_kept']} in the reference, {entry['target_kept']} in the target, "
               f"{entry['matched']} matched, {lost} lost, {extra} extra")
    return Finding("detection_mismatch", entry["scores"], "warning", message, _evidence(entry),
                   "find the first divergence before the head; compare at the application's own threshold "
                   "(--score-threshold)")
