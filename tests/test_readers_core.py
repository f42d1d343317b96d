"""netdiff manifest dumps, plain .npy directories and .npz archives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netdiff.errors import DumpFormatError, OutputError
from netdiff.manifest import write_dump
from netdiff.readers import detect_format, read_dump
from netdiff.types import Dump, Tensor


def sample_dump() -> Dump:
    names = ["input", "/conv/Conv_output_0", "../../etc/passwd", "a" * 300, "nul\x00byte", "CASE", "case"]
    tensors = {}
    for i, n in enumerate(names):
        tensors[n] = Tensor.from_array(n, np.full((2, i + 1), i, np.float32), order=i, op_type="Op", inputs=("input",))
    return Dump(tensors, graph_inputs=["input"], graph_outputs=["CASE"])


def test_manifest_round_trip_with_hostile_names(tmp_path):
    out = write_dump(sample_dump(), tmp_path / "d")
    files = sorted(p.name for p in out.iterdir())
    assert all("/" not in f and not f.startswith(".") for f in files)
    assert all(p.resolve().parent == out.resolve() for p in out.iterdir())
    assert len(files) == 8  # 7 tensors + manifest, case-colliding names kept apart
    assert detect_format(out) == "netdiff"
    back = read_dump(out)
    assert back.names == sample_dump().names
    for t in sample_dump():
        assert np.array_equal(back[t.name].load(), t.load())
        assert back[t.name].order == t.order and back[t.name].inputs == ("input",)
    assert back.graph_inputs == ["input"]


def test_write_dump_refuses_non_empty_dir_without_force(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="--force"):
        write_dump(sample_dump(), tmp_path / "d")
    write_dump(sample_dump(), tmp_path / "d", force=True)
    assert (tmp_path / "d" / "keep.txt").read_text() == "x"


def test_manifest_minimal_third_party(tmp_path):
    np.save(tmp_path / "b.npy", np.ones(3))
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "netdiff-dump", "version": 1, "tensors": [
        {"name": "second", "file": "b.npy", "order": 1}, {"name": "first", "file": "a.npy", "order": 0}]}))
    d = read_dump(tmp_path)
    assert d.names == ["first", "second"]


@pytest.mark.parametrize("manifest, message", [
    ("{", "not valid JSON"),
    ('{"format": "other"}', "not a netdiff manifest"),
    ('{"format": "netdiff-dump", "version": 9, "tensors": []}', "version"),
    ('{"format": "netdiff-dump", "tensors": [{"name": "x", "file": "../x.npy"}]}', "outside the dump directory"),
    ('{"format": "netdiff-dump", "tensors": [{"name": 1}]}', "needs string"),
])
def test_bad_manifests(tmp_path, manifest, message):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(DumpFormatError, match=message):
        read_dump(tmp_path)


def test_npy_dir_and_pickled_files_rejected(tmp_path):
    np.save(tmp_path / "good.npy", np.arange(4.0))
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    d = read_dump(tmp_path)
    assert detect_format(tmp_path) == "npy-dir"
    assert np.array_equal(d["good"].load(), np.arange(4.0))
    assert d["evil"].error and "pickled" in d["evil"].error
    with pytest.raises(DumpFormatError):
        d["evil"].load()


def test_npy_dir_lazy_memmap(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(1 << 18, dtype=np.float32))  # 1 MiB and more: memory-mapped
    np.save(tmp_path / "small.npy", np.arange(1000, dtype=np.float32))  # smaller: read in one go
    dump = read_dump(tmp_path)
    value = dump["x"].load()
    assert isinstance(value, np.memmap) and not value.flags.writeable
    small = dump["small"].load()
    assert not small.flags.writeable and np.array_equal(small, np.arange(1000, dtype=np.float32))


def test_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, a=np.ones((2, 2)), b=np.arange(3))
    assert detect_format(path) == "npz"
    d = read_dump(path)
    assert d["a"].shape == (2, 2) and np.array_equal(d["b"].load(), np.arange(3))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DumpFormatError):
        read_dump(path)


def test_unknown_format_lists_formats(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DumpFormatError, match="tried:.*npy-dir"):
        read_dump(tmp_path)


def test_unreadable_tensor_survives_write_and_read(tmp_path):
    tensors = {"good": Tensor.from_array("good", np.ones(3, np.float32)),
               "bad": Tensor.unreadable("bad", "x.bin: truncated")}
    out = write_dump(Dump(tensors), tmp_path / "d")
    back = read_dump(out)
    assert np.array_equal(back["good"].load(), np.ones(3))
    assert back["bad"].error == "x.bin: truncated"
