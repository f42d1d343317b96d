"""RKNN accuracy_analysis snapshots: sides, map file, internal tensors, detection, corrupt input."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.errors import DumpFormatError
from netdiff.readers import detect_format, read_dump

LAYERS = [
    ("exDataConvert", "images_int8", "0"),
    ("Conv", "/backbone/conv1/Conv_output_0", "1"),
    ("Relu", "_backbone_relu1_Relu_output_0", "2"),
    ("Reshape", "/head/Flatten_output_0-rs_sw", "3"),
    ("Gemm", "/head/fc/Gemm_output_0_conv", "4"),
    ("exDataConvert", "output", "5"),
]


@pytest.fixture
def snapshot(tmp_path, writers, rng):
    arrays = {side: {name: rng.standard_normal((1, 4, 3, 3)).astype(np.float32) for _, name, _ in LAYERS}
              for side in ("golden", "simulator", "runtime")}
    del arrays["runtime"]["output"]  # the board run did not dump this one
    return writers.rknn_snapshot(tmp_path / "snapshot", LAYERS, arrays), arrays


def test_reads_simulator_side_by_default(snapshot):
    root, arrays = snapshot
    assert detect_format(root) == "rknn"
    dump = read_dump(root)
    assert dump.format == "rknn" and dump.meta["rknn_side"] == "simulator"
    assert dump.meta["rknn_sides"] == ["golden", "simulator", "runtime"]
    assert dump.names == [name for _, name, _ in LAYERS]
    for _, name, _ in LAYERS:
        assert np.array_equal(dump[name].load(), arrays["simulator"][name])
    assert dump["/backbone/conv1/Conv_output_0"].op_type == "Conv"
    assert dump["/backbone/conv1/Conv_output_0"].meta["file"] == "simulator/npy/1.npy"


def test_toolkit_internal_tensors_are_target_only(snapshot):
    dump = read_dump(snapshot[0])
    assert dump.target_only == ["images_int8", "/head/Flatten_output_0-rs_sw", "output"]


@pytest.mark.parametrize("side", ["golden", "runtime"])
def test_side_option(snapshot, side):
    root, arrays = snapshot
    dump = read_dump(root, side=side)
    assert dump.meta["rknn_side"] == side
    assert np.array_equal(dump["/backbone/conv1/Conv_output_0"].load(), arrays[side]["/backbone/conv1/Conv_output_0"])
    assert ("output" in dump) == (side == "golden")
    if side == "runtime":
        assert dump.meta["layers_without_file"] == 1


def test_side_folder_given_directly(snapshot):
    root, arrays = snapshot
    assert detect_format(root / "golden") == "rknn"
    dump = read_dump(root / "golden")
    assert dump.meta["rknn_side"] == "golden"
    with pytest.raises(DumpFormatError, match="is the 'golden' folder but option side='simulator'"):
        read_dump(root / "golden", "rknn", side="simulator")


def test_missing_side_lists_present_ones(tmp_path, writers, rng):
    root = writers.rknn_snapshot(tmp_path / "s", LAYERS[:2], {"golden": {"images_int8": np.ones(3, np.float32),
                                                                         "/backbone/conv1/Conv_output_0": np.ones(3)}})
    with pytest.raises(DumpFormatError, match=r"no 'simulator' folder \(present: golden\)"):
        read_dump(root)
    with pytest.raises(DumpFormatError, match="side must be one of golden, simulator, runtime"):
        read_dump(root, side="board")


def test_without_map_file_names_come_from_files_in_analysis_order(tmp_path, writers, rng):
    layers = [("Conv", "conv_b", "conv_b"), ("Relu", "conv_a", "conv_a"), ("Add", "z_out10", "z_out10"),
              ("Add", "z_out9", "z_out9")]
    arrays = {"simulator": {name: np.full(2, i, np.float32) for i, (_, name, _) in enumerate(layers)}}
    root = writers.rknn_snapshot(tmp_path / "s", layers, arrays, with_map=False)
    dump = read_dump(root)
    assert dump.names == ["conv_b", "conv_a", "z_out10", "z_out9"]  # error_analysis.txt order
    (root / "error_analysis.txt").unlink()
    (root / "map_name_to_file.txt").write_text("")  # keeps the snapshot recognisable
    with pytest.raises(DumpFormatError, match="no layers listed"):
        read_dump(root)


def test_plain_npy_dirs_and_other_dirs_are_not_rknn(tmp_path):
    plain = tmp_path / "plain"
    (plain / "golden").mkdir(parents=True)
    np.save(plain / "golden" / "a.npy", np.ones(2))
    assert detect_format(plain) == "npy-dir"


def test_truncated_npy_and_bad_map_line(snapshot):
    root, _ = snapshot
    victim = root / "simulator" / "npy" / "2.npy"
    victim.write_bytes(victim.read_bytes()[:150])
    broken = [t for t in read_dump(root) if t.error]  # one broken file: that layer is unreadable, not the dump
    assert len(broken) == 1
    with pytest.raises(DumpFormatError, match=r"2\.npy: truncated \.npy file"):
        broken[0].load()
    (root / "map_name_to_file.txt").write_text("layer_name file_name\nlonely\n")
    with pytest.raises(DumpFormatError, match=r"map_name_to_file\.txt:2: expected 'layer_name file_name'"):
        read_dump(root)


def test_map_cannot_point_outside_the_snapshot(snapshot, tmp_path):
    root, _ = snapshot
    np.save(tmp_path / "secret.npy", np.ones(1))
    (root / "map_name_to_file.txt").write_text("evil ../../../secret.npy\nok 1.npy\n")
    dump = read_dump(root)
    assert dump.names == ["ok"] and dump.meta["layers_without_file"] == 1
