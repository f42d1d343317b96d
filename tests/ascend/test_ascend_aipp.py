"""AIPP: config parsing (real msit file), device-order simulation and preprocessing checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from netdiff.ascend.aipp import (AippConfigError, compare_preprocessing, load_aipp_config, output_channel_order,
                                 parse_aipp_configs, simulate_aipp)
from netdiff.errors import InputError, UnsupportedOpError

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
RNG = np.random.default_rng(3)


def _fixture(name: str) -> Path:
    env = os.environ.get("NETDIFF_SHARED")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared"
    path = base / "fixtures" / "ascend" / name
    if not path.is_file():
        pytest.skip(f"shared fixture {name} not available")
    return path


def test_real_config_parses_and_matches_imagenet_rgb():
    cfg = load_aipp_config(_fixture("aipp.config"))
    assert cfg.aipp_mode == "static" and cfg.input_format == "RGB888_U8"
    assert (cfg.src_image_size_w, cfg.src_image_size_h, cfg.crop) == (32, 32, False)
    assert cfg.min_chn[:3] == (123.675, 116.28, 103.53)
    assert cfg.var_reci_chn[0] == pytest.approx(1 / 58.395)
    assert compare_preprocessing(cfg, IMAGENET_MEAN, IMAGENET_STD, "RGB") == []
    # the same normalisation given for [0, 1] images
    assert compare_preprocessing(cfg, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "RGB", scale=1 / 255) == []


def test_real_config_simulation_matches_formula():
    cfg = load_aipp_config(_fixture("aipp.config"))
    img = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = simulate_aipp(img, cfg)
    assert out.shape == (1, 3, 32, 32) and out.dtype == np.float32
    expected = (img.astype(np.float32).transpose(2, 0, 1) - np.array(IMAGENET_MEAN, np.float32)[:, None, None]) \
        * np.array([0.0171247538316637, 0.0175070028011204, 0.0174291938997821], np.float32)[:, None, None]
    np.testing.assert_allclose(out[0], expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="32x32"):
        simulate_aipp(np.zeros((16, 16, 3), np.uint8), cfg)


def test_bgr_model_needs_swap():
    cfg = load_aipp_config(_fixture("aipp.config"))
    findings = compare_preprocessing(cfg, IMAGENET_MEAN[::-1], IMAGENET_STD[::-1], "BGR")
    kinds = {f.kind: f for f in findings}
    assert kinds["input_channel_order"].suggestion == "set rbuv_swap_switch : true"
    assert "reversed channel order" in kinds["input_normalization"].message
    assert "min_chn_0 should be 103.53" in kinds["input_normalization"].suggestion
    assert "var_reci_chn_0 should be 0.017429 (=1/57.375)" in kinds["input_scale"].suggestion


def test_wrong_scale_and_mean_suggest_aipp_fields():
    text = """aipp_op {  # comment
        aipp_mode : static
        input_format : RGB888_U8
        rbuv_swap_switch : true
        mean_chn_0 : 100
        min_chn_0 : 23.675
        min_chn_1 : 116.28
        min_chn_2 : 0
        var_reci_chn_0 : 57.375
        var_reci_chn_1 : 57.12
        var_reci_chn_2 : 58.395
    }"""
    findings = compare_preprocessing(text, IMAGENET_MEAN[::-1], IMAGENET_STD[::-1], "BGR")
    kinds = {f.kind: f for f in findings}
    assert "input_channel_order" not in kinds  # swap on: RGB888 -> BGR, as wanted
    assert kinds["input_normalization"].evidence["channels"] == [0, 2]
    assert "min_chn_2 should be 123.675" in kinds["input_normalization"].suggestion
    assert "var_reci_chn_0 should be 0.017429 (=1/57.375)" in kinds["input_scale"].suggestion
    assert "std itself" in kinds["input_scale"].message
    assert all(f.severity == "error" for f in findings)


def test_swap_crop_and_padding_follow_device_order():
    cfg = parse_aipp_configs("""aipp_op { input_format : RGB888_U8 rbuv_swap_switch : true crop : true
        load_start_pos_w : 2 load_start_pos_h : 1 crop_size_w : 4 crop_size_h : 3
        mean_chn_0 : 10 min_chn_1 : 0.5 var_reci_chn_2 : 2.0
        padding : true left_padding_size : 1 top_padding_size : 2 }""")[0]
    img = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    out = simulate_aipp(img, cfg)
    crop = img[1:4, 2:6, ::-1].astype(np.float32)
    assert out.shape == (1, 3, 3 + 2, 4 + 1)
    np.testing.assert_allclose(out[0, 0, 2:, 1:], crop[..., 0] - 10)
    np.testing.assert_allclose(out[0, 1, 2:, 1:], crop[..., 1] - 0.5)
    np.testing.assert_allclose(out[0, 2, 2:, 1:], crop[..., 2] * 2.0)
    assert not out[0, :, :2].any() and not out[0, :, :, :1].any()


BT601 = """aipp_op {
    input_format : YUV420SP_U8
    src_image_size_w : 4
    src_image_size_h : 4
    csc_switch : true
    rbuv_swap_switch : false
    matrix_r0c0 : 298
    matrix_r0c1 : 0
    matrix_r0c2 : 409
    matrix_r1c0 : 298
    matrix_r1c1 : -100
    matrix_r1c2 : -208
    matrix_r2c0 : 298
    matrix_r2c1 : 516
    matrix_r2c2 : 0
    input_bias_0 : 16
    input_bias_1 : 128
    input_bias_2 : 128
}"""


def test_csc_yuv420sp_to_rgb():
    y = RNG.integers(16, 236, (4, 4), dtype=np.uint8)
    uv = RNG.integers(16, 241, (2, 2, 2), dtype=np.uint8)
    nv12 = np.concatenate([y, uv.reshape(2, 4)], axis=0)
    out = simulate_aipp(nv12, BT601)
    assert output_channel_order(BT601) == "RGB"
    for r in range(4):
        for c in range(4):
            yy, u, v = int(y[r, c]) - 16, int(uv[r // 2, c // 2, 0]) - 128, int(uv[r // 2, c // 2, 1]) - 128
            rgb = [(298 * yy + 409 * v) >> 8, (298 * yy - 100 * u - 208 * v) >> 8, (298 * yy + 516 * u) >> 8]
            assert out[0, :, r, c].tolist() == [float(min(max(x, 0), 255)) for x in rgb]
    findings = compare_preprocessing(BT601, [0, 0, 0], [1, 1, 1], "BGR")
    assert findings[0].kind == "input_channel_order" and "rbuv_swap_switch : true" in findings[0].suggestion
    assert output_channel_order(BT601.replace("rbuv_swap_switch : false", "rbuv_swap_switch : true")) == "BGR"


def test_aipp_embedded_in_om_json(tmp_path):
    text = _fixture("aipp.config").read_text()
    om = {"name": "m", "attr": [], "graph": [{"name": "g", "op": [
        {"name": "aipp0", "type": "Aipp", "attr": [{"key": "aipp_config_path", "value": {"s": text}}]}]}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(om))
    assert load_aipp_config(path).min_chn[0] == 123.675
    om["graph"][0]["op"][0]["attr"] = []
    path.write_text(json.dumps(om))
    with pytest.raises(AippConfigError, match="no embedded AIPP"):
        load_aipp_config(path)


def test_bad_configs():
    with pytest.raises(AippConfigError, match="not closed"):
        parse_aipp_configs("aipp_op { input_format : RGB888_U8")
    with pytest.raises(AippConfigError, match="not supported"):
        parse_aipp_configs("aipp_op { input_format : RAW16 }")
    with pytest.raises(UnsupportedOpError):
        simulate_aipp(np.zeros((2, 2, 3), np.uint8), "aipp_op { input_format : RGB888_U8 resize : true }")
    with pytest.raises(InputError, match="uint8"):
        simulate_aipp(np.zeros((2, 2, 3), np.float32), "aipp_op { input_format : RGB888_U8 }")
