"""Weight quantization named by re-running the origin with quantized weights."""

from __future__ import annotations

import numpy as np

import netdiff
from netdiff.demo import build_demo
from netdiff.diagnosis.weights import int8_per_channel, int8_per_tensor


def test_demo_outlier_weight_is_named(tmp_path):
    case = build_demo(tmp_path)
    report = netdiff.compare(case.model, case.target, case.input)
    top = report.findings[0]
    assert (top.kind, top.layer) == ("quantization_coarse", case.planted_layer)
    assert top.evidence["hypothesis"] == "int8 per-tensor"
    assert top.evidence["cosine_reproduced"] > 0.9999
    assert top.evidence["outlier_ratio"] > 10
    assert "per channel" in top.suggestion


def test_quantizers():
    w = np.array([[1.0, -0.5, 0.01], [100.0, 2.0, -3.0]], np.float32)
    per_tensor = int8_per_tensor(w, 0)
    assert per_tensor[0, 2] == 0 and np.isclose(per_tensor[1, 0], 100.0)
    per_channel = int8_per_channel(w, 0)
    assert np.allclose(per_channel[0], w[0], atol=1 / 127 / 2 + 1e-6)
    assert np.allclose(per_channel, int8_per_channel(w.T, 1).T)


def test_onnxruntime_suggestions_name_nodes_not_tensors(tmp_path):
    from netdiff.diagnosis._common import node_name
    from netdiff.types import LayerResult

    layer = LayerResult("conv_out", "conv_out", "Conv", 1, "diverged", extra={"node": "/features/conv3/Conv"})
    assert node_name(layer) == "/features/conv3/Conv"
    assert node_name(LayerResult("t", None, None, None, "ok")) == "t"
