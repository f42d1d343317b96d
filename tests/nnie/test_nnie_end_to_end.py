"""End to end: simulated NNIE dumps, cfg mistakes, Q12 blobs and in-place chains through netdiff.compare."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from nnie_models import feeds, small_cnn  # noqa: E402

pipeline = pytest.importorskip("netdiff.pipeline", reason="netdiff/pipeline.py has not landed")

import netdiff  # noqa: E402
from netdiff.manifest import write_dump  # noqa: E402
from netdiff.simulators import get_simulator  # noqa: E402


def _shared() -> Path | None:
    env = os.environ.get("NETDIFF_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared"
    return path if path.is_dir() else None


def _simulate(tmp_path, model, kind, sample):
    import onnx

    onnx.save(model, tmp_path / "model.onnx")
    dump = get_simulator(kind).simulate(model, sample, feeds(seed=7, count=4) + [sample])
    return tmp_path / "model.onnx", write_dump(dump, tmp_path / kind)


def test_nnie8_outlier_layer_is_first_divergence(tmp_path):
    sample = feeds()[0]
    model_path, sim = _simulate(tmp_path, small_cnn(outlier=True), "nnie8", sample)
    report = netdiff.compare(model_path, sim, inputs=sample)
    assert report.first_divergence == "c2"
    assert report.layer("r1").status == "ok"
    assert report.layer("c1").status == "not_observable"  # folded into bn1 (BN merged into the conv)
    assert report.layer("bn1").match.method == "fusion-map"


def test_nnie8_without_outlier_stays_within_thresholds(tmp_path):
    sample = feeds()[0]
    model_path, sim = _simulate(tmp_path, small_cnn(outlier=False), "nnie8", sample)
    report = netdiff.compare(model_path, sim, inputs=sample)
    assert not report.diverged, [(x.name, x.metrics.cosine) for x in report.layers if x.status == "diverged"]
    prob = report.layer("prob").metrics
    assert 0 < prob.max_abs < 0.05  # quantization noise is present but small


def test_nnie16_is_closer_than_nnie8(tmp_path):
    sample = feeds()[0]
    model = small_cnn(outlier=True)
    cos = {}
    for kind in ("nnie8", "nnie16"):
        dump = get_simulator(kind).simulate(model, sample, [sample])
        cos[kind] = dump
    from netdiff.runners.onnxrt import OnnxModel

    ref = OnnxModel.from_proto(model).run(sample)["c2"].load().ravel()

    def cosine(d):
        t = d["c2"].load().ravel()
        return float(ref @ t / np.linalg.norm(ref) / np.linalg.norm(t))

    assert cosine(cos["nnie16"]) > 0.999 > cosine(cos["nnie8"])
    q = cos["nnie8"]["prob"].load()
    np.testing.assert_array_equal(q, np.floor(q * 4096 + 0.5) / 4096)  # outputs are Q20.12


def test_swapped_rgb_order_is_found(tmp_path):
    from netdiff.nnie.cfg import read_cfg
    from netdiff.nnie.preprocess import check_cfg, preprocess
    from netdiff.runners.onnxrt import OnnxModel

    (tmp_path / "mean.txt").write_text("123.675\n116.28\n103.53\n")
    cfg_path = tmp_path / "mapper.cfg"
    cfg_path.write_text("[image_type] 1\n[norm_type] 5\n[mean_file] ./mean.txt\n[RGB_order] BGR\n[data_scale] 0.017\n")
    cfg = read_cfg(cfg_path)
    findings = check_cfg(cfg, {"mean": (123.675, 116.28, 103.53), "scale": 0.017, "channel_order": "RGB"})
    assert [f.kind for f in findings] == ["input_channel_order"]
    assert "[RGB_order] RGB" in findings[0].suggestion

    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, 16)[None, :]  # a red gradient
    image[..., 2] = 30
    training = ((image.astype(np.float32) - np.array([123.675, 116.28, 103.53], np.float32)) * 0.017)
    reference_input = np.ascontiguousarray(training.transpose(2, 0, 1)[None])
    device_input = preprocess(image, cfg, image_order="RGB")
    model = small_cnn()
    import onnx

    onnx.save(model, tmp_path / "m.onnx")
    write_dump(OnnxModel.from_proto(model).run({"x": device_input}), tmp_path / "device")
    report = netdiff.compare(tmp_path / "m.onnx", tmp_path / "device", inputs={"x": reference_input})
    assert report.first_divergence == "x"  # the input itself differs: preprocessing, not a layer
    fixed = preprocess(image, read_cfg(_rewrite(cfg_path, "BGR", "RGB")), image_order="RGB")
    np.testing.assert_allclose(fixed, reference_input, rtol=1e-5, atol=1e-5)


def _rewrite(path: Path, old: str, new: str) -> Path:
    text = path.read_text().replace(f"[RGB_order] {old}", f"[RGB_order] {new}")
    out = path.with_name("fixed.cfg")
    out.write_text(text)
    return out


def test_board_blob_left_in_q12(tmp_path):
    from netdiff.nnie.diagnose import check_output_scale
    from netdiff.readers import read_dump
    from netdiff.runners.onnxrt import OnnxModel
    import onnx

    sample = feeds()[0]
    model = small_cnn()
    onnx.save(model, tmp_path / "m.onnx")
    prob = OnnxModel.from_proto(model).run(sample)["prob"].load()  # (1, 5)
    ints = np.floor(prob * 4096 + 0.5).astype(np.int64).reshape(1, 1, 1, 5)
    blob = tmp_path / "prob.s32"
    with open(blob, "wb") as f:  # VEC_S32 1x5, 16-byte aligned row stride -> 32 bytes
        f.write(struct.pack("<5i", *ints.ravel().tolist()) + b"\0" * 12)
    options = {"shape": "1,1,5", "q12": False, "name": "prob"}
    report = netdiff.compare(tmp_path / "m.onnx", blob, inputs=sample, target_format="nnie-blob",
                             target_options=options)
    layer = report.layer("prob")
    assert layer.target_name == "prob" and layer.status == "diverged"
    target = read_dump(blob, format="nnie-blob", **options)["prob"].load()
    finding = check_output_scale(prob, target, "prob", None)
    assert finding.kind == "output_scale" and abs(finding.evidence["ratio"] - 4096) < 10
    converted = netdiff.compare(tmp_path / "m.onnx", blob, inputs=sample, target_format="nnie-blob",
                                target_options={"shape": "1,1,5", "name": "prob"})
    assert converted.layer("prob").status == "ok"


def test_mapper_dump_of_caffe_inplace_chain(tmp_path):
    shared = _shared()
    lenet = shared / "fixtures" / "caffe" / "lenet" / "lenet.prototxt" if shared else None
    if lenet is None or not lenet.is_file():
        pytest.skip("shared Caffe fixtures not available")
    pytest.importorskip("netdiff.runners.caffe", reason="Caffe runner has not landed")
    from netdiff.runners import load_model

    model = load_model(lenet)
    spec = model.input_specs()[0]
    data = np.random.default_rng(0).random(spec.shape).astype(np.float32)
    ref = model.run({spec.name: data})
    blobs = ref.meta["blobs"]
    out = tmp_path / "mapper_quant"
    out.mkdir()
    for blob, writers in blobs.items():
        if blob == spec.name:
            continue
        value = ref[writers[-1]].load()  # the mapper fuses the in-place chain: the blob holds the tail
        dims = "_".join(str(d) for d in value.shape[1:])
        ints = np.floor(value.astype(np.float64) * 4096 + 0.5).astype(np.int64)
        (out / f"{blob}_output0_{dims}_quant.linear.hex").write_text(
            "".join(f"{v & 0xFFFFFFFF:08x}\n" for v in ints.ravel()))
    report = netdiff.compare(lenet, tmp_path, inputs={spec.name: data})
    assert report.layer("relu1").target_name == "ip1" and report.layer("relu1").status == "ok"
    assert report.layer("ip1").status == "not_observable"
    assert not report.diverged
