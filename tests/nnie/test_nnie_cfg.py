"""Mapper cfg parsing, mean files, preprocessing simulation and the cfg-vs-training check."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.errors import InputError
from netdiff.nnie.binaryproto import decode_blob_proto, encode_blob_proto
from netdiff.nnie.cfg import DEFAULT_DATA_SCALE, MapperConfigError, parse_cfg, read_cfg
from netdiff.nnie.preprocess import check_cfg, preprocess, yuv_to_rgb

IMAGENET = {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375), "channel_order": "RGB"}


def write_cfg(tmp_path, text, mean_lines=None):
    if mean_lines is not None:
        (tmp_path / "mean.txt").write_text("".join(f"{m}\n" for m in mean_lines))
    path = tmp_path / "net.cfg"
    path.write_text(text)
    return path


def test_real_style_cfg(tmp_path):
    path = write_cfg(tmp_path, """[prototxt_file] ./mark_prototxt/yolov3_mark_nnie_20190101.prototxt
[caffemodel_file] ./yolov3.caffemodel   # trained weights
[batch_num] 256
[net_type] 0
[sparse_rate] 0
[compile_mode] 1
[is_simulation] 0
[log_level] 3
[instructions_name] ./yolov3_inst
[RGB_order] RGB
[data_scale] 0.0039215
[internal_stride] 32
[image_list] ./images.txt
[image_type] 3
[mean_file] null
[norm_type] 3
""")
    cfg = read_cfg(path)
    assert cfg.instruction_name == "./yolov3_inst" and cfg.compile_mode == 1 and cfg.internal_stride == 32
    assert cfg.caffemodel_file == str(tmp_path / "yolov3.caffemodel")
    (inp,) = cfg.inputs
    assert (inp.image_type, inp.norm_type, inp.rgb_order, inp.mean_file) == (3, 3, "RGB", None)
    assert inp.data_scale == 0.0039215 and inp.scale == 0.0039215
    assert cfg.bits_for("conv") == 16
    head = cfg.header()
    assert head["image_type"].startswith("3 (YVU420SP") and head["RGB_order"] == "RGB"


def test_multi_input_and_defaults(tmp_path):
    path = write_cfg(tmp_path, """[compile_mode] 2
[image_list] a.txt
[image_type] 1
[mean_file] ./mean.txt
[norm_type] 5
[image_list] b.txt
[image_type] 0
[mean_file] null
[norm_type] 0
""", mean_lines=[104, 117, 123])
    cfg = read_cfg(path)
    assert len(cfg.inputs) == 2
    first, second = cfg.inputs
    assert first.mean == (104.0, 117.0, 123.0) and first.rgb_order == "BGR"
    assert first.data_scale == DEFAULT_DATA_SCALE == 1 / 256 and not first.data_scale_set
    assert second.image_type == 0 and second.image_list.endswith("b.txt")
    assert cfg.bits_for("conv5_hp") == 16 and cfg.bits_for("conv5") == 8
    assert "input1.image_type" in cfg.header()


def test_value_on_next_line_and_comments():
    cfg = parse_cfg("# comment\n[compile_mode]\n1\n; other\n[image_type] 1\n[norm_type] 0\n")
    assert cfg.compile_mode == 1


@pytest.mark.parametrize("text,message", [
    ("image_type 1\n", "expected '\\[key\\] value'"),
    ("[image_type] 2\n", "image_type\\] 2 is not one of 0, 1, 3, 5"),
    ("[norm_type] x\n", "must be an integer"),
    ("[RGB_order] GBR\n", "must be RGB or BGR"),
    ("[data_scale] abc\n", "must be a number"),
    ("[internal_stride] 64\n", "not one of 16, 32"),
])
def test_bad_cfg(text, message):
    with pytest.raises(MapperConfigError, match=message) as err:
        parse_cfg(text, "x.cfg")
    assert str(err.value).startswith("x.cfg:") and "\n" not in str(err.value)


def test_missing_mean_file_is_reported_not_raised(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] ./nope.txt\n"))
    assert cfg.inputs[0].mean is None and "cannot read the mean file" in cfg.inputs[0].mean_error
    findings = check_cfg(cfg, {"mean": (104, 117, 123), "scale": 1 / 256, "channel_order": "BGR"})
    assert [f.kind for f in findings] == ["input_normalization"] and findings[0].severity == "warning"


def test_binaryproto_mean(tmp_path):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    # an independent BlobProto encoder built from caffe.proto's field numbers
    fdp = descriptor_pb2.FileDescriptorProto(name="blob_test.proto", package="t")
    shape = fdp.message_type.add(name="BlobShape")
    shape.field.add(name="dim", number=1, type=3, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    blob = fdp.message_type.add(name="BlobProto")
    blob.field.add(name="shape", number=7, type=11, label=1, type_name=".t.BlobShape")
    blob.field.add(name="data", number=5, type=2, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    blob.field.add(name="num", number=1, type=5, label=1)
    blob.field.add(name="channels", number=2, type=5, label=1)
    blob.field.add(name="height", number=3, type=5, label=1)
    blob.field.add(name="width", number=4, type=5, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.BlobProto"))
    image = np.stack([np.full((2, 3), v, np.float32) for v in (104.0, 117.0, 123.0)])[None]
    msg = cls()
    msg.shape.dim.extend([1, 3, 2, 3])
    msg.data.extend(image.ravel().tolist())
    decoded = decode_blob_proto(msg.SerializeToString())
    np.testing.assert_array_equal(decoded, image)
    legacy = cls(num=1, channels=3, height=2, width=3)
    legacy.data.extend(image.ravel().tolist())
    np.testing.assert_array_equal(decode_blob_proto(legacy.SerializeToString()), image)
    parsed = cls.FromString(encode_blob_proto(image))
    assert list(parsed.shape.dim) == [1, 3, 2, 3] and list(parsed.data) == image.ravel().tolist()
    with pytest.raises(InputError, match="needs 18 values"):
        bad = cls()
        bad.shape.dim.extend([1, 3, 2, 3])
        bad.data.extend([1.0])
        decode_blob_proto(bad.SerializeToString())
    (tmp_path / "mean.binaryproto").write_bytes(msg.SerializeToString())
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 4\n[mean_file] mean.binaryproto\n[data_scale] 0.5\n"))
    assert cfg.inputs[0].mean == (104.0, 117.0, 123.0)
    pixels = np.full((2, 3, 3), 200, np.uint8)
    out = preprocess(pixels, cfg, image_order="BGR")
    np.testing.assert_allclose(out[0, :, 0, 0], [(200 - 104) * 0.5, (200 - 117) * 0.5, (200 - 123) * 0.5])


def test_preprocess_order_mean_then_scale(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] mean.txt\n[RGB_order] RGB\n"
                             "[data_scale] 0.017\n", mean_lines=[123.675, 116.28, 103.53]))
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 250, 100, 10
    out = preprocess(rgb, cfg, image_order="RGB")
    assert out.shape == (1, 3, 4, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 2, 3], [(250 - 123.675) * 0.017, (100 - 116.28) * 0.017, (10 - 103.53) * 0.017],
                               rtol=1e-6)
    np.testing.assert_allclose(preprocess(rgb[..., ::-1], cfg, image_order="BGR"), out)


def test_yuv_input():
    h, w = 4, 6
    y = np.full((h, w), 128, np.uint8)
    vu = np.tile(np.array([128, 128], np.uint8), (h // 2, w // 2))  # neutral chroma: gray
    rgb = yuv_to_rgb(np.concatenate([y.ravel(), vu.ravel()]), h, w, "420sp", matrix="bt601-full")
    assert rgb.shape == (h, w, 3) and np.all(rgb == 128)
    red_vu = np.tile(np.array([255, 128], np.uint8), (h // 2, w // 2))  # V first (NV21): strong V -> red
    rgb = yuv_to_rgb(np.concatenate([y.ravel(), red_vu.ravel()]), h, w, "420sp", matrix="bt601-full")
    assert rgb[0, 0, 0] == 255 and rgb[0, 0, 2] < 140
    cfg = parse_cfg("[image_type] 3\n[norm_type] 3\n[data_scale] 0.00390625\n[RGB_order] BGR\n")
    out = preprocess(np.concatenate([y.ravel(), red_vu.ravel()]), cfg, yuv_size=(h, w), yuv_matrix="bt601-full")
    assert out.shape == (1, 3, h, w) and out[0, 2, 0, 0] == pytest.approx(255 / 256)  # R is the last plane in BGR
    with pytest.raises(InputError, match="needs"):
        yuv_to_rgb(np.zeros(10, np.uint8), h, w)


def test_check_cfg_agrees(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] mean.txt\n[RGB_order] RGB\n"
                             "[data_scale] 0.0039215\n", mean_lines=[123.675, 116.28, 103.53]))
    findings = check_cfg(cfg, {"mean": IMAGENET["mean"], "scale": 1 / 255, "channel_order": "RGB"})
    assert [f.severity for f in findings] == ["info"]  # the old-mapper BGR note only


def test_check_cfg_swapped_order(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] mean.txt\n[RGB_order] BGR\n"
                             "[data_scale] 0.0171\n", mean_lines=[123.675, 116.28, 103.53]))
    findings = check_cfg(cfg, IMAGENET)
    order = [f for f in findings if f.kind == "input_channel_order"]
    assert order and order[0].severity == "error" and "[RGB_order] RGB" in order[0].suggestion
    scale = [f for f in findings if f.kind == "input_scale"]
    assert scale and "[data_scale]" in scale[0].suggestion  # per-channel std cannot be one scalar


def test_check_cfg_default_scale_is_1_over_256(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 3\n[RGB_order] RGB\n[mean_file] null\n"))
    (finding,) = check_cfg(cfg, {"scale": 1 / 255, "channel_order": "RGB"})[1:]
    assert finding.kind == "input_scale" and finding.severity == "warning"
    assert finding.suggestion.startswith("data_scale should be 0.0039215 for /255")
    assert "not set" in finding.message


def test_check_cfg_mean_problems(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] mean.txt\n[RGB_order] RGB\n"
                             "[data_scale] 0.0039215686\n", mean_lines=[103.53, 116.28, 123.675]))
    findings = check_cfg(cfg, {"mean": IMAGENET["mean"], "scale": 1 / 255, "channel_order": "RGB"})
    norm = [f for f in findings if f.kind == "input_normalization"]
    assert norm and "reverse channel order" in norm[0].message
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 3\n[mean_file] null\n[RGB_order] RGB\n"
                             "[data_scale] 0.0039215686\n"))
    norm = [f for f in check_cfg(cfg, {"mean": IMAGENET["mean"], "scale": 1 / 255}) if f.kind == "input_normalization"]
    assert norm and "[norm_type] 5" in norm[0].suggestion


def test_check_cfg_unit_means(tmp_path):
    cfg = read_cfg(write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] mean.txt\n[RGB_order] RGB\n"
                             "[data_scale] 0.0039215686\n", mean_lines=[127.5, 127.5, 127.5]))
    assert [f.severity for f in check_cfg(cfg, {"mean": (0.5, 0.5, 0.5), "std": (1.0, 1.0, 1.0)})] == ["info"]


def test_cli(tmp_path, capsys):
    from netdiff.cli import main

    path = write_cfg(tmp_path, "[image_type] 1\n[norm_type] 5\n[mean_file] mean.txt\n[RGB_order] BGR\n"
                     "[data_scale] 0.017\n", mean_lines=[123.675, 116.28, 103.53])
    code = main(["nnie-cfg-check", str(path), "--mean", "123.675,116.28,103.53", "--std", "58.395,57.12,57.375",
                 "--channel-order", "RGB"])
    out = capsys.readouterr().out
    assert code == 1 and "input_channel_order" in out and "[RGB_order] RGB" in out
    assert main(["nnie-cfg-check", str(path), "--mean", "123.675,116.28,103.53", "--scale", "0.017",
                 "--channel-order", "BGR"]) == 0
    assert main(["nnie-cfg-check", str(path), "--mean", "12x"]) == 2
    assert main(["nnie-cfg-check", str(tmp_path / "missing.cfg")]) == 2
    assert main(["nnie-cfg-check", str(path), "--std", "1", "--scale", "2"]) == 2
