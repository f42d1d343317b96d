"""Names from files are data; outputs are atomic and never clobber a non-empty directory; nothing unpickles."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdiff._io import MAX_STEM, safe_file_stem, save_npy_atomic
from netdiff.cli import main
from netdiff.errors import OutputError
from netdiff.manifest import write_dump
from netdiff.readers import read_dump
from netdiff.types import Tensor

PACKAGE = Path(__file__).resolve().parents[2] / "netdiff"
EVIL = ["../../etc/passwd", "/abs/path", "a/../../b", "..", ".", "", "\x00nul", "x" * 5000, "con", "CON",
        "\udcff\udcfe surrogate", "名前/テンソル", "a\\b", "manifest", "MANIFEST", ".hidden", "a" * 80, "A" * 80]


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=300), st.sets(st.text(max_size=20), max_size=5))
def test_safe_file_stem_never_leaves_the_directory(name, taken_names):
    taken = {t.lower() for t in taken_names}
    before = set(taken)
    stem = safe_file_stem(name, taken)
    assert stem and len(stem) <= MAX_STEM
    assert "/" not in stem and "\\" not in stem and "\x00" not in stem and not stem.startswith(".")
    assert stem.lower() not in before
    assert stem.isascii() and Path(stem).name == stem


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=6, unique=True))
def test_write_dump_round_trips_any_names(tmp_path_factory, names):
    out = tmp_path_factory.mktemp("d") / "dump"
    tensors = [Tensor.from_array(n, np.full(2, i, np.float32)) for i, n in enumerate(names)]
    write_dump(tensors, out)
    assert all(p.parent == out for p in out.rglob("*"))  # nothing written elsewhere or in subfolders
    dump = read_dump(out)
    assert dump.names == names
    assert [float(t.load()[0]) for t in dump] == list(range(len(names)))


def test_evil_names_through_convert(tmp_path):
    tensors = [Tensor.from_array(n, np.full(3, i, np.float32)) for i, n in enumerate(EVIL)]
    write_dump(tensors, tmp_path / "src")
    assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out" / "conv")]) == 0
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert all(tmp_path / "src" in p.parents or tmp_path / "out" / "conv" in p.parents for p in written)
    dump = read_dump(tmp_path / "out" / "conv")
    assert dump.names == EVIL


def test_non_empty_output_needs_force(tmp_path):
    src = write_dump([Tensor.from_array("x", np.ones(2, np.float32))], tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["convert", str(src), "-o", str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main(["convert", str(src), "-o", str(out), "--force"]) == 0
    assert (out / "keep.txt").read_text() == "mine" and (out / "manifest.json").is_file()
    with pytest.raises(OutputError, match="not empty"):
        write_dump([Tensor.from_array("x", np.ones(2, np.float32))], out)


def test_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a.npy"
    save_npy_atomic(target, np.arange(3))
    before = target.read_bytes()

    with pytest.raises(ValueError):
        save_npy_atomic(target, np.ones(2, dtype=object))  # refused (no pickling) mid-write
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]  # no temporary file left behind


def test_no_np_load_can_unpickle():
    """Every ``np.load`` / ``read_array`` call in the package passes ``allow_pickle=False``."""
    offenders = []
    for file in PACKAGE.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("load", "read_array") and \
                    ast.unparse(node.func.value) in ("np", "numpy", "np.lib.format", "numpy.lib.format"):
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    offenders.append(f"{file.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "ok.npy", np.ones(2))
    dump = read_dump(tmp_path, "npy-dir")
    assert "pickled" in dump["obj"].error
    assert json.dumps(dump["ok"].load().tolist()) == "[1.0, 1.0]"
    assert os.access(tmp_path / "obj.npy", os.R_OK)
