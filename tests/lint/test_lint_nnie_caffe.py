"""NNIE lint rules on Caffe prototxt fixtures, and the exact rewrites they suggest."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lint_testkit import by_rule, header, layer, rules, run_caffe, write  # noqa: E402

from netdiff.lint import lint  # noqa: E402
from netdiff.lint._rewrite import replace_layer  # noqa: E402

CONV = 'convolution_param { num_output: 4 kernel_size: 3 pad: 1 }'


def _clean_net() -> str:
    return (header() + layer("conv1", "Convolution", body=CONV) + layer("relu1", "ReLU", ("conv1",), ("conv1",))
            + layer("pool1", "Pooling", ("conv1",), body="pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
            + layer("fc", "InnerProduct", ("pool1",), body="inner_product_param { num_output: 5 }")
            + layer("prob", "Softmax", ("fc",)))


def test_clean_caffe_net_has_no_findings(tmp_path):
    result = lint(write(tmp_path, _clean_net()), "nnie")
    assert result.findings == []
    assert result and not result.failed
    assert result.layers == 5


def test_tile_rewrite_as_concat_is_exact(tmp_path):
    text = (header(shape=(1, 1, 1, 128)) + layer("tile1", "Tile", body="tile_param { axis: 2 tiles: 94 }")
            + layer("conv", "Convolution", ("tile1",), body="convolution_param { num_output: 2 kernel_size: 3 }"))
    rng = np.random.default_rng(0)
    weights = {"conv": [rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2)]}
    proto = write(tmp_path / "orig", text, weights=weights)
    result = lint(proto, "nnie")
    (finding,) = by_rule(result, "unsupported-layer")
    assert finding.layer == "tile1" and finding.severity == "error" and finding.kind == "unsupported_layer"
    assert finding.evidence["in_shape"] == (1, 1, 1, 128) and finding.evidence["out_shape"] == (1, 1, 94, 128)
    assert "Concat of 94 copies" in finding.suggestion and "Deconvolution" in finding.suggestion

    fixed = replace_layer(text, "tile1", finding.evidence["rewrite"])
    fixed_proto = write(tmp_path / "fixed", fixed, weights=weights)
    x = {"data": rng.normal(size=(1, 1, 1, 128))}
    before, after = run_caffe(proto, x), run_caffe(fixed_proto, x)
    assert after["tile1"].op_type == "Concat"
    for name in ("tile1", "conv"):
        assert np.array_equal(before[name].load(), after[name].load()), name
    assert before["tile1"].shape == (1, 1, 94, 128)
    assert "unsupported-layer" not in rules(lint(fixed_proto, "nnie"))


def test_relu6_rewrite_is_exact(tmp_path):
    text = header(shape=(1, 2, 4, 4)) + layer("act", "ReLU6", body="") + layer("out", "Sigmoid", ("act",))
    proto = write(tmp_path / "orig", text)
    (finding,) = by_rule(lint(proto, "nnie"), "unsupported-layer")
    fixed = write(tmp_path / "fixed", replace_layer(text, "act", finding.evidence["rewrite"]))
    x = {"data": np.linspace(-10, 10, 32).reshape(1, 2, 4, 4)}
    assert np.array_equal(run_caffe(proto, x)["out"].load(), run_caffe(fixed, x)["out"].load())
    assert lint(fixed, "nnie").findings == []


def test_floor_pooling_is_flagged_and_slice_rewrite_restores_floor(tmp_path):
    pool = "pooling_param {{ pool: MAX kernel_size: 2 stride: 2 {} }}"
    text = (header(shape=(1, 2, 7, 9)) + layer("pool", "Pooling", body=pool.format("round_mode: FLOOR"))
            + layer("out", "Sigmoid", ("pool",)))
    proto = write(tmp_path / "orig", text)
    (finding,) = by_rule(lint(proto, "nnie"), "pooling-rounding")
    assert finding.kind == "semantic_mismatch" and finding.severity == "error"
    assert finding.evidence["source_size"] == [3, 4] and finding.evidence["nnie_size"] == [4, 5]
    # NNIE pools with ceil: the layer with its top renamed, then the suggested Slices, equals the floor pooling
    ceil_layer = layer("pool", "Pooling", tops=("pool_ceil",), body=pool.format(""))
    fixed = write(tmp_path / "fixed", replace_layer(text, "pool", ceil_layer + finding.evidence["rewrite"]))
    x = {"data": np.random.default_rng(1).normal(size=(1, 2, 7, 9))}
    want, got = run_caffe(proto, x), run_caffe(fixed, x)
    assert got["pool"].shape == (1, 2, 4, 5) and want["pool"].shape == (1, 2, 3, 4)
    assert np.array_equal(want["out"].load(), got["out"].load())


def test_default_ceil_pooling_gets_heuristic_info_only(tmp_path):
    text = header(shape=(1, 2, 7, 7)) + layer("pool", "Pooling", body="pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    result = lint(write(tmp_path, text), "nnie")
    (finding,) = by_rule(result, "pooling-rounding")
    assert finding.severity == "info" and finding.evidence["heuristic"] is True
    assert finding.evidence["floor_size"] == [3, 3] and finding.evidence["nnie_size"] == [4, 4]
    assert not result.failed


@pytest.mark.parametrize("type_,body", [
    ("Interp", "interp_param { zoom_factor: 2 }"),
    ("PriorBox", "prior_box_param { min_size: 4 aspect_ratio: 2 }"),
    ("DetectionOutput", "detection_output_param { num_classes: 2 }"),
    ("Crop", ""),
])
def test_unsupported_types_with_specific_fixes(tmp_path, type_, body):
    bottoms = ("data", "ref") if type_ in ("Crop", "PriorBox") else ("data",)
    text = header() + header("ref", (1, 3, 6, 6)) + layer("odd", type_, bottoms, body=body)
    (finding,) = by_rule(lint(write(tmp_path, text), "nnie"), "unsupported-layer")
    assert finding.layer == "odd" and type_ in finding.message
    assert {"Interp": "Upsample", "PriorBox": "CPU", "DetectionOutput": "NMS", "Crop": "Slice"}[type_] in finding.suggestion


def test_permute_reshape_slice_power_group(tmp_path):
    text = (header(shape=(2, 4, 6, 6))
            + layer("perm_ok", "Permute", body="permute_param { order: 0 order: 2 order: 3 order: 1 }")
            + layer("perm_bad", "Permute", body="permute_param { order: 0 order: 3 order: 1 order: 2 }")
            + layer("rs_batch", "Reshape", body="reshape_param { shape { dim: 1 dim: -1 dim: 6 dim: 6 } }")
            + layer("rs_2d", "Reshape", body="reshape_param { shape { dim: 0 dim: -1 } }")
            + layer("sl", "Slice", tops=("a", "b"), body="slice_param { axis: 0 slice_point: 1 }")
            + layer("sl_ok", "Slice", tops=("c", "d"), body="slice_param { axis: 1 slice_point: 2 }")
            + layer("pw", "Power", body="power_param { power: 4 }")
            + layer("pw_ok", "Power", body="power_param { power: 0.5 }"))
    result = lint(write(tmp_path, text), "nnie")
    assert [f.layer for f in by_rule(result, "permute-order")] == ["perm_bad"]
    reshape = {f.layer: f.severity for f in by_rule(result, "reshape-batch")}
    assert reshape == {"rs_batch": "error", "rs_2d": "warning"}
    assert [f.layer for f in by_rule(result, "slice-axis0")] == ["sl"]
    assert [f.layer for f in by_rule(result, "power-exponent")] == ["pw"]


def test_group_limit(tmp_path):
    text = header(shape=(1, 4096, 2, 2)) + layer("dw", "Convolution",
                                                 body="convolution_param { num_output: 4096 group: 4096 kernel_size: 1 }")
    (finding,) = by_rule(lint(write(tmp_path, text), "nnie"), "conv-group")
    assert finding.evidence["group"] == 4096


def test_long_names_suffixes_and_cpu_layers(tmp_path):
    long_a = "backbone_stage4_block3_conv2_output_a"
    long_b = "backbone_stage4_block3_conv2_output_b"
    text = (header() + layer(long_a, "Convolution", body=CONV) + layer(long_b, "Convolution", body=CONV)
            + layer("head_hp", "Convolution", ("data",), ("head_report",), body=CONV)
            + layer("act", "ReLU", ("head_report",), ("head_report",))
            + layer("prop", "Proposal", (long_a, long_b), ("rois",))
            + layer("cust", "Custom", ("rois",), ("cust_report",))
            + layer("named_report", "Sigmoid", ("cust_report",), ("sig",)))
    result = lint(write(tmp_path, text), "nnie")
    (collision,) = by_rule(result, "name-length")
    assert collision.severity == "error" and collision.evidence["truncated"] == long_a[:31]
    report = {(f.layer, f.severity) for f in by_rule(result, "report-suffix")}
    assert ("cust", "error") in report and ("named_report", "warning") in report and ("act", "info") in report
    assert [f.layer for f in by_rule(result, "hp-suffix")] == ["head_hp"]
    assert {f.layer for f in by_rule(result, "cpu-layer")} == {"prop", "cust"}
    assert "unsupported-layer" not in rules(result)  # Proposal and Custom are legal CPU layers


def test_segment_limits(tmp_path):
    text = "".join(header(f"in{i}", (1, 1, 4, 4)) for i in range(17))
    text += "".join(layer(f"s{i}", "Sigmoid", (f"in{i}",)) for i in range(17))
    result = lint(write(tmp_path, text), "nnie")
    messages = [f.message for f in by_rule(result, "segment-limits")]
    assert any("17 net inputs" in m for m in messages) and any("17 reported outputs" in m for m in messages)
