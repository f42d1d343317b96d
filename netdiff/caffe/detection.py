"""SSD DetectionOutput as a numpy host step after the graph (weiliu89 ``detection_output_layer.cpp``).

There is no faithful ONNX op (ONNX NonMaxSuppression caps and orders differently), so the Caffe
runner executes the translated graph, then this function on the layer's three inputs:

1. decode ``loc`` against the priors (``code_type``: CORNER, CENTER_SIZE or CORNER_SIZE, with the
   prior variances unless ``variance_encoded_in_target``);
2. per class except ``background_label_id``: scores > ``confidence_threshold`` (strict), stable
   sort descending, keep ``nms_param.top_k``; greedy NMS keeping a box whose IoU with every kept
   box is ≤ the threshold (adapted by ``eta`` < 1);
3. keep the global ``keep_top_k`` by score;
4. rows ``[image, label, score, xmin, ymin, xmax, ymax]`` as (1, 1, K, 7), labels ascending, each
   label's boxes by descending score; with no detection, one row per image of −1 (image id first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdiff.errors import ModelError

CODE_TYPES = {"CORNER": 1, "CENTER_SIZE": 2, "CORNER_SIZE": 3}


@dataclass(frozen=True)
class DetectionParams:
    """The DetectionOutputParameter fields that change the result."""

    num_classes: int
    share_location: bool = True
    background_label_id: int = 0
    code_type: int = 1
    variance_encoded_in_target: bool = False
    keep_top_k: int = -1
    confidence_threshold: float = -np.inf
    nms_threshold: float = 0.3
    top_k: int = -1
    eta: float = 1.0

    @classmethod
    def from_layer(cls, layer) -> DetectionParams:
        """Read the parameters of a DetectionOutput layer (raises ModelError when malformed)."""
        p = layer.param("detection_output_param")
        nms = p.sub("nms_param")
        code = p.get("code_type", "CORNER")
        code_type = CODE_TYPES.get(str(code), code if isinstance(code, int) else None)
        if p.get("num_classes") is None or code_type not in (1, 2, 3):
            raise ModelError(f"layer {layer.name!r} (DetectionOutput): needs num_classes and a code_type of "
                             f"{', '.join(CODE_TYPES)}")
        threshold = p.get("confidence_threshold")
        return cls(num_classes=int(p.get("num_classes")), share_location=bool(p.get("share_location", True)),
                   background_label_id=int(p.get("background_label_id", 0)), code_type=int(code_type),
                   variance_encoded_in_target=bool(p.get("variance_encoded_in_target", False)),
                   keep_top_k=int(p.get("keep_top_k", -1)),
                   confidence_threshold=float(threshold) if threshold is not None else -np.inf,
                   nms_threshold=float(nms.get("nms_threshold", 0.3)), top_k=int(nms.get("top_k", -1)),
                   eta=float(nms.get("eta", 1.0)))


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances: np.ndarray, code_type: int,
                 variance_in_target: bool) -> np.ndarray:
    """Decode (P, 4) location offsets against (P, 4) corner priors; returns corner boxes."""
    loc = loc.astype(np.float64)
    var = np.ones_like(variances) if variance_in_target else variances.astype(np.float64)
    pri = priors.astype(np.float64)
    if code_type == 1:  # CORNER
        return pri + var * loc
    pw, ph = pri[:, 2] - pri[:, 0], pri[:, 3] - pri[:, 1]
    if code_type == 3:  # CORNER_SIZE
        scale = np.stack([pw, ph, pw, ph], axis=1)
        return pri + var * loc * scale
    cx, cy = (pri[:, 0] + pri[:, 2]) / 2, (pri[:, 1] + pri[:, 3]) / 2
    dcx = var[:, 0] * loc[:, 0] * pw + cx
    dcy = var[:, 1] * loc[:, 1] * ph + cy
    dw = np.exp(var[:, 2] * loc[:, 2]) * pw
    dh = np.exp(var[:, 3] * loc[:, 3]) * ph
    return np.stack([dcx - dw / 2, dcy - dh / 2, dcx + dw / 2, dcy + dh / 2], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Caffe's JaccardOverlap on normalised boxes (no +1), 0 for disjoint boxes."""
    ix = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    iy = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)

    def size(b: np.ndarray) -> np.ndarray:
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        return np.where((w < 0) | (h < 0), 0.0, w * h)

    union = size(box) + size(others) - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, threshold: float, nms_threshold: float, eta: float,
             top_k: int) -> list[int]:
    """bbox_util.cpp ApplyNMSFast: indices kept, in descending score order."""
    candidates = np.flatnonzero(scores > threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if top_k > -1:
        order = order[:top_k]
    kept: list[int] = []
    adaptive = nms_threshold
    for idx in order:
        keep = True
        if kept:
            keep = bool(np.all(_iou(boxes[idx], boxes[np.asarray(kept)]) <= adaptive))
        if keep:
            kept.append(int(idx))
        if keep and eta < 1 and adaptive > 0.5:
            adaptive *= eta
    return kept


def detection_output(loc: np.ndarray, conf: np.ndarray, prior: np.ndarray, params: DetectionParams) -> np.ndarray:
    """Caffe's DetectionOutput forward pass; returns (1, 1, K, 7) float32.

    Args:
        loc: (N, P*4) location predictions (or any shape with N*P*4 elements).
        conf: (N, P*C) class confidences (after softmax).
        prior: (1, 2, P*4) prior boxes then variances (PriorBox output).
        params: The layer's parameters.
    """
    if not params.share_location:
        raise ModelError("DetectionOutput with share_location: false is not supported")
    num = loc.shape[0]
    priors = prior.reshape(2, -1, 4)
    count = priors.shape[1]
    classes = params.num_classes
    if loc.size != num * count * 4 or conf.size != num * count * classes:
        raise ModelError(f"DetectionOutput: loc {list(loc.shape)} / conf {list(conf.shape)} do not fit "
                         f"{count} priors and {classes} classes")
    rows = []
    for i in range(num):
        boxes = decode_boxes(loc[i].reshape(count, 4), priors[0], priors[1], params.code_type,
                             params.variance_encoded_in_target)
        scores = conf[i].reshape(count, classes).astype(np.float64)
        kept: dict[int, list[int]] = {}
        for c in range(classes):
            if c == params.background_label_id:
                continue
            indices = nms_fast(boxes, scores[:, c], params.confidence_threshold, params.nms_threshold,
                               params.eta, params.top_k)
            if indices:
                kept[c] = indices
        total = sum(len(v) for v in kept.values())
        if params.keep_top_k > -1 and total > params.keep_top_k:
            pairs = sorted(((scores[idx, c], c, idx) for c, v in kept.items() for idx in v),
                           key=lambda t: -t[0])[: params.keep_top_k]
            kept = {}
            for _, c, idx in pairs:
                kept.setdefault(c, []).append(idx)
        for c in sorted(kept):
            for idx in kept[c]:
                rows.append([i, c, scores[idx, c], *boxes[idx]])
    if not rows:
        out = np.full((num, 7), -1.0)
        out[:, 0] = np.arange(num)
        return out.reshape(1, 1, num, 7).astype(np.float32)
    return np.asarray(rows, dtype=np.float32).reshape(1, 1, len(rows), 7)
