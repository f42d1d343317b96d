"""SSD DetectionOutput (numpy host step) against OpenCV's Caffe importer and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from caffe_testkit import write_model
from netdiff.caffe.detection import DetectionParams, detection_output, nms_fast
from netdiff.errors import ModelError

PROTOTXT = """name: "tiny_ssd"
input: "data"
input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 4 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "loc" type: "Convolution" bottom: "conv" top: "loc"
  convolution_param { num_output: 12 kernel_size: 3 pad: 1 } }
layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat" flatten_param { axis: 1 } }
layer { name: "conf" type: "Convolution" bottom: "conv" top: "conf"
  convolution_param { num_output: 9 kernel_size: 3 pad: 1 } }
layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" flatten_param { axis: 1 } }
layer { name: "prior" type: "PriorBox" bottom: "conv" bottom: "data" top: "prior"
  prior_box_param { min_size: 8 max_size: 16 aspect_ratio: 2 flip: false clip: false
                    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "conf_reshape" type: "Reshape" bottom: "conf_flat" top: "conf_reshape"
  reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "conf_softmax" type: "Softmax" bottom: "conf_reshape" top: "conf_softmax" softmax_param { axis: 2 } }
layer { name: "conf_out" type: "Flatten" bottom: "conf_softmax" top: "conf_out" flatten_param { axis: 1 } }
layer { name: "det" type: "DetectionOutput" bottom: "loc_flat" bottom: "conf_out" bottom: "prior" top: "det"
  detection_output_param { num_classes: 3 share_location: true background_label_id: 0
    nms_param { nms_threshold: 0.45 top_k: 50 } code_type: CENTER_SIZE keep_top_k: 20 confidence_threshold: 0.35 } }
"""


def _weights(seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)

    def conv(cout, cin):
        return [(rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32),
                (rng.standard_normal(cout) * 0.1).astype(np.float32)]

    return {"conv": conv(8, 3), "loc": conv(12, 8), "conf": conv(9, 8)}


def test_tiny_ssd_matches_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    from netdiff.runners.caffe import CaffeModel

    proto = write_model(tmp_path, PROTOTXT, _weights())
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    dump = CaffeModel(proto).run({"data": x})
    ours = dump["det"].load()
    assert ours.shape[:2] == (1, 1) and ours.shape[3] == 7
    assert dump["det"].op_type == "DetectionOutput" and dump.graph_outputs == ["det"]
    net = cv2.dnn.readNetFromCaffe(str(proto), str(proto.with_suffix(".caffemodel")))
    net.setInput(x)
    theirs = net.forward("det")
    assert ours.shape[2] >= 2, "the fixture should produce detections"
    key = lambda rows: sorted(map(tuple, np.round(rows[0, 0, :, :3], 4)))  # noqa: E731
    assert key(ours) == key(theirs)
    order = np.lexsort((ours[0, 0, :, 2], ours[0, 0, :, 1]))
    order_cv = np.lexsort((theirs[0, 0, :, 2], theirs[0, 0, :, 1]))
    assert np.allclose(ours[0, 0, order, 3:], theirs[0, 0, order_cv, 3:], atol=1e-5)


def test_nms_and_keep_top_k_by_hand():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.9], [2, 2, 3, 3], [0, 0, 0.2, 0.2]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert nms_fast(boxes, scores, 0.05, 0.5, 1.0, -1) == [0, 2, 3]  # box 1 overlaps box 0 (IoU 0.9)
    assert nms_fast(boxes, scores, 0.5, 0.5, 1.0, -1) == [0, 2]  # strict score threshold
    assert nms_fast(boxes, scores, 0.05, 0.5, 1.0, 1) == [0]  # top_k before NMS
    priors = np.concatenate([boxes.reshape(-1), np.full(16, 0.1)]).reshape(1, 2, 16)
    loc = np.zeros((1, 16))
    conf = np.stack([1 - scores, scores], axis=1).reshape(1, -1)
    params = DetectionParams(num_classes=2, code_type=1, keep_top_k=2, confidence_threshold=0.05)
    out = detection_output(loc, conf, priors, params)
    assert out.shape == (1, 1, 2, 7)
    assert np.allclose(out[0, 0, :, :3], [[0, 1, 0.9], [0, 1, 0.7]], atol=1e-6)
    assert np.allclose(out[0, 0, 1, 3:], [2, 2, 3, 3])


def test_no_detection_gives_minus_one_row():
    priors = np.concatenate([np.array([0, 0, 1, 1.0]), np.full(4, 0.1)]).reshape(1, 2, 4)
    out = detection_output(np.zeros((1, 4)), np.array([[0.99, 0.01]]), priors,
                           DetectionParams(num_classes=2, confidence_threshold=0.5))
    assert out.tolist() == [[[[0, -1, -1, -1, -1, -1, -1]]]]


def test_consumer_of_detection_output_is_an_error(tmp_path):
    from netdiff.runners.caffe import CaffeModel

    text = PROTOTXT + 'layer { name: "after" type: "ReLU" bottom: "det" top: "after" }\n'
    proto = write_model(tmp_path, text, _weights())
    with pytest.raises(ModelError, match="after the graph"):
        CaffeModel(proto).run({"data": np.zeros((1, 3, 32, 32), np.float32)})
