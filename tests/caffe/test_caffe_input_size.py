"""Fully convolutional Caffe nets run at the input's spatial size (MTCNN P-Net on an image pyramid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffe_testkit import shared_dir
from netdiff.cli import main
from netdiff.errors import ModelError
from netdiff.runners.caffe import CaffeModel

FACE = Path(__file__).resolve().parents[2] / "fixtures" / "images" / "astronaut_face_320x240.png"


def _mtcnn(name: str) -> Path:
    path = shared_dir() / "fixtures" / "caffe" / "mtcnn_v2" / f"{name}.prototxt"
    if not path.is_file():
        pytest.skip("../shared/fixtures/caffe/mtcnn_v2 is absent")
    return path


def _pnet_input(cv2, size: int = 160) -> np.ndarray:
    """The face photo resized to size x size, preprocessed as MTCNN does ((x - 127.5) / 128, W and H swapped)."""
    rgb = cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)
    img = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.ascontiguousarray(((img - 127.5) * 0.0078125).transpose(2, 1, 0)[None])


def test_pnet_at_160_matches_opencv_per_layer():
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    proto = _mtcnn("det1")
    x = _pnet_input(cv2)
    dump = CaffeModel(proto).run({"data": x})
    net = cv2.dnn.readNetFromCaffe(str(proto), str(proto.with_suffix(".caffemodel")))
    net.enableFusion(False)
    net.setInput(x)
    names = list(net.getLayerNames())
    assert names == [n for n in dump.names if n != "data"]
    for name, theirs in zip(names, net.forward(names)):
        ours = dump[name].load().astype(np.float64)
        theirs = np.asarray(theirs, np.float64)
        assert ours.shape == theirs.shape, name
        cosine = ours.ravel() @ theirs.ravel() / (np.linalg.norm(ours) * np.linalg.norm(theirs))
        assert cosine >= 0.99999, (name, cosine)
    assert dump["prob1"].shape == (1, 2, 75, 75)


def test_pnet_dump_cli_at_160(tmp_path, capsys):
    proto = _mtcnn("det1")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 160, 160), np.float32))
    assert main(["dump", str(proto), "--input", str(x), "--out", str(tmp_path / "out")]) == 0
    assert np.load(tmp_path / "out" / "prob1.npy").shape == (1, 2, 75, 75)


def test_rnet_at_another_size_is_refused_clearly(tmp_path, capsys):
    proto = _mtcnn("det2")
    with pytest.raises(ModelError, match=r"does not run at input data \[1, 3, 48, 48\] \(declared data \[1, 3, 24, 24\]\)"):
        CaffeModel(proto).run({"data": np.zeros((1, 3, 48, 48), np.float32)})
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 48, 48), np.float32))
    assert main(["dump", str(proto), "--input", str(x), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "InnerProduct" in err and "Traceback" not in err


def test_onnx_side_runs_at_the_input_size_too(tmp_path):
    from netdiff.caffe.export import caffe_to_onnx
    from netdiff.runners.onnxrt import OnnxModel

    pnet, rnet = _mtcnn("det1"), _mtcnn("det2")
    caffe_to_onnx(pnet, tmp_path / "pnet.onnx")  # declares [1, 3, 12, 12]
    caffe_to_onnx(rnet, tmp_path / "rnet.onnx")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 160, 160)).astype(np.float32)
    ours = OnnxModel(tmp_path / "pnet.onnx").run({"data": x})
    caffe = CaffeModel(pnet).run({"data": x})
    for name in ("prob1", "conv4-2"):
        np.testing.assert_allclose(ours[name].load(), caffe[name].load(), atol=1e-6)
    with pytest.raises(ModelError, match=r"does not run at input data \[1, 3, 48, 48\]"):
        OnnxModel(tmp_path / "rnet.onnx").run({"data": np.zeros((1, 3, 48, 48), np.float32)})
    with pytest.raises(Exception, match="does not fit"):  # the channel axis is never flexible
        OnnxModel(tmp_path / "pnet.onnx").run({"data": np.zeros((1, 4, 12, 12), np.float32)})
