"""msit / ait golden directories: naming, timestamps, inputs, mapping.csv, detection, alignment."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.align import align_dumps
from netdiff.errors import DumpFormatError
from netdiff.readers import detect_format, read_dump
from netdiff.types import Dump, Tensor

T0 = 1_682_067_845_380_164


@pytest.fixture
def golden(tmp_path, writers, rng):
    d = tmp_path / "dump_data" / "onnx"
    d.mkdir(parents=True)
    arrays = {
        ("input_images", 0): rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
        ("/backbone/conv1/Conv", 0): rng.standard_normal((1, 4, 8, 8)).astype(np.float32),
        ("/backbone/split.0/Split", 0): rng.standard_normal((1, 2, 8, 8)).astype(np.float32),
        ("/backbone/split.0/Split", 1): rng.standard_normal((1, 2, 8, 8)).astype(np.float32),
        ("Relu_7", 0): rng.standard_normal((1, 2, 8, 8)).astype(np.float32),
    }
    for i, ((node, index), array) in enumerate(arrays.items()):
        writers.msit_file(d, node, index, T0 + 10 * i, array)
    # an older run of conv1 with different values: the newest file must win
    writers.msit_file(d, "/backbone/conv1/Conv", 0, T0 - 5_000_000, np.zeros((1, 4, 8, 8), np.float32))
    return d, arrays


def test_reads_newest_file_per_output_with_documented_names(golden):
    d, arrays = golden
    assert detect_format(d) == "msit"
    dump = read_dump(d)
    assert dump.names == ["images", "_backbone_conv1_Conv", "_backbone_split_0_Split",
                          "_backbone_split_0_Split:1", "Relu_7"]
    assert dump.graph_inputs == ["images"]
    assert np.array_equal(dump["_backbone_conv1_Conv"].load(), arrays[("/backbone/conv1/Conv", 0)])
    assert np.array_equal(dump["_backbone_split_0_Split:1"].load(), arrays[("/backbone/split.0/Split", 1)])
    assert dump.meta["older_files_skipped"] == 1
    second = dump["_backbone_split_0_Split:1"]
    assert second.meta["node"] == "_backbone_split_0_Split" and second.meta["output_index"] == 1
    assert second.origin_names == ("_backbone_split_0_Split",) and second.meta["origin_output_index"] == 1


def test_aligns_to_onnx_node_outputs_through_normalised_node_names(golden, rng):
    d, _ = golden
    target = read_dump(d)

    def ref(name, node, index, shape):
        return Tensor(name=name, shape=shape, dtype="float32", loader=lambda: np.zeros(shape, np.float32),
                      meta={"node": node, "output_index": index})

    reference = Dump({t.name: t for t in [
        ref("images", "", 0, (1, 3, 8, 8)),
        ref("/backbone/conv1/Conv_output_0", "/backbone/conv1/Conv", 0, (1, 4, 8, 8)),
        ref("/backbone/split.0/Split_output_0", "/backbone/split.0/Split", 0, (1, 2, 8, 8)),
        ref("/backbone/split.0/Split_output_1", "/backbone/split.0/Split", 1, (1, 2, 8, 8)),
        ref("relu_out", "Relu_7", 0, (1, 2, 8, 8)),
    ]})
    pairs = {m.target: m.reference for m in align_dumps(reference, target).pairs}
    assert pairs == {"images": "images",
                     "_backbone_conv1_Conv": "/backbone/conv1/Conv_output_0",
                     "_backbone_split_0_Split": "/backbone/split.0/Split_output_0",
                     "_backbone_split_0_Split:1": "/backbone/split.0/Split_output_1",
                     "Relu_7": "relu_out"}


def test_long_names_through_mapping_csv(tmp_path, writers):
    d = tmp_path / "golden"
    d.mkdir()
    long_node = "n" * 300
    np.save(d / f"{T0}0.npy", np.arange(3, dtype=np.float32))
    (d / "mapping.csv").write_text(f"{T0}0.npy,{long_node}.0.{T0}.npy\n")
    writers.msit_file(d, "short", 0, T0 + 1, np.ones(2, np.float32))
    assert detect_format(d) == "msit"
    dump = read_dump(d)
    assert dump.names == [long_node, "short"]
    assert np.array_equal(dump[long_node].load(), np.arange(3, dtype=np.float32))


def test_plain_npy_directory_is_not_msit(tmp_path, writers):
    d = tmp_path / "mixed"
    d.mkdir()
    writers.msit_file(d, "conv", 0, T0, np.ones(2, np.float32))
    np.save(d / "conv_out.npy", np.ones(2, np.float32))
    assert detect_format(d) == "npy-dir"
    with pytest.raises(DumpFormatError, match=r"conv_out\.npy: file name is not \{node\}"):
        read_dump(d, "msit")


def test_truncated_golden_file(golden):
    d, _ = golden
    victim = sorted(d.glob("Relu_7.*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:-40])
    dump = read_dump(d)  # one broken file does not fail the dump: that tensor is unreadable
    assert dump["Relu_7"].error and "\n" not in dump["Relu_7"].error
    with pytest.raises(DumpFormatError, match=r"Relu_7\.0\.\d+\.npy: truncated \.npy file"):
        dump["Relu_7"].load()
    assert all(t.error is None for t in dump if t.name != "Relu_7")


def test_malformed_mapping_csv(golden):
    d, _ = golden
    (d / "mapping.csv").write_text("only-one-column\n")
    with pytest.raises(DumpFormatError, match=r"mapping\.csv:1: expected 'numeric_name,original_name'"):
        read_dump(d, "msit")
