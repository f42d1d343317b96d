"""``netdiff aipp-check``: the AIPP config against the training preprocessing."""

from __future__ import annotations

from netdiff.cli import main

AIPP = """aipp_op {
    aipp_mode : static
    input_format : RGB888_U8
    src_image_size_w : 32
    src_image_size_h : 32
    min_chn_0 : 123.675
    min_chn_1 : 116.28
    min_chn_2 : 103.53
    var_reci_chn_0 : 0.0171247538316637
    var_reci_chn_1 : 0.0175070028011204
    var_reci_chn_2 : 0.0174291938997821
}
"""
IMAGENET = ["--mean", "123.675,116.28,103.53", "--std", "58.395,57.12,57.375"]


def test_matching_config_exits_0(tmp_path, capsys):
    cfg = tmp_path / "aipp.cfg"
    cfg.write_text(AIPP)
    assert main(["aipp-check", str(cfg), *IMAGENET]) == 0
    assert "OK" in capsys.readouterr().out


def test_swapped_channels_and_wrong_scale_exit_1(tmp_path, capsys):
    cfg = tmp_path / "aipp.cfg"
    cfg.write_text(AIPP.replace("0.0171247538316637", "0.00392156862745098"))
    assert main(["aipp-check", str(cfg), *IMAGENET, "--channel-order", "BGR"]) == 1
    out = capsys.readouterr().out
    assert "rbuv_swap_switch" in out and "var_reci_chn_0" in out


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["aipp-check", str(tmp_path / "missing.cfg"), *IMAGENET]) == 2
    cfg = tmp_path / "aipp.cfg"
    cfg.write_text(AIPP)
    assert main(["aipp-check", str(cfg), "--mean", "a,b", "--std", "1,2,3"]) == 2
    assert "Traceback" not in capsys.readouterr().err
