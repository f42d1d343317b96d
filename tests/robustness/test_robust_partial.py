"""One truncated target file: the compare still reports every layer, that one as ``error``, and exits 1.

Also: compare and convert never modify their inputs (hashes before/after), for every directory format.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netdiff.cli import main
from netdiff.manifest import write_dump
from netdiff.types import Tensor

import robust_seeds  # noqa: F401  (puts the ascend and caffe test writers on sys.path)

RNG = np.random.default_rng(3)
ARRAYS = {"conv1": RNG.standard_normal((1, 3, 4, 4)).astype(np.float32),
          "relu1": np.maximum(RNG.standard_normal((1, 3, 4, 4)), 0).astype(np.float32),
          "fc": RNG.standard_normal((1, 10, 1, 1)).astype(np.float32)}
BROKEN = "relu1"


def _q12(a):
    return np.round(a * 4096).astype(np.int64)


def _hex(path, a):
    path.write_text("".join(f"{int(v) & 0xFFFFFFFF:08x}\n" for v in _q12(a).ravel()))


def write_netdiff(root):
    out = write_dump([Tensor.from_array(n, a, order=i) for i, (n, a) in enumerate(ARRAYS.items())], root / "t")
    return out, {}, out / "relu1.npy"


def write_npy_dir(root):
    (root / "t").mkdir()
    for n, a in ARRAYS.items():
        np.save(root / "t" / f"{n}.npy", a)
    return root / "t", {}, root / "t" / "relu1.npy"


def write_msit(root):
    (root / "t").mkdir()
    for i, (n, a) in enumerate(ARRAYS.items()):
        np.save(root / "t" / f"{n}.0.{1690000000000000 + i}.npy", a)
    return root / "t", {}, next((root / "t").glob("relu1.*"))


def write_rknn(root):
    snap = root / "t"
    (snap / "simulator" / "npy").mkdir(parents=True)
    for n, a in ARRAYS.items():
        np.save(snap / "simulator" / "npy" / f"{n}.npy", a)
    (snap / "map_name_to_file.txt").write_text("".join(f"{n} {n}.npy\n" for n in ARRAYS))
    return snap, {}, snap / "simulator" / "npy" / "relu1.npy"


def write_ascend(root):
    import ascend_dump_writer as w

    d = w.dump_dir(root / "t")
    for n, a in ARRAYS.items():
        w.write(d, "Op", w.DumpSpec(n, outputs=[w.Spec(a.tobytes(), w.DT["float32"], w.FMT["NCHW"], a.shape)]))
    return root / "t", {}, next(d.glob("Op.relu1.*"))


def write_nnie_mapper(root):
    d = root / "t" / "mapper_quant"
    d.mkdir(parents=True)
    for n, a in ARRAYS.items():
        _hex(d / f"{n}_output0_{'_'.join(map(str, a.shape[1:]))}_quant.linear.hex", a)
    return root / "t", {}, next(d.glob("relu1_*"))


def write_nnie_caffe(root):
    d = root / "t" / "output"
    d.mkdir(parents=True)
    for n, a in ARRAYS.items():
        np.savetxt(d / f"{n}_output0_{'_'.join(map(str, a.shape[1:]))}_caffe.linear.float", a.ravel())
    return root / "t", {}, next(d.glob("relu1_*"))


def write_nnie_sim(root):
    d = root / "t" / "inst_layer_output_linear"
    d.mkdir(parents=True)
    tree = {}
    for i, (n, a) in enumerate(ARRAYS.items()):
        _hex(d / f"seg0_layer{i}_output0_inst.linear.hex", a)
        tree[str(i)] = {"name": n, "shape": list(a.shape)}
    (root / "tree.json").write_text(json.dumps(tree))
    return root / "t", {"net_tree": str(root / "tree.json")}, d / "seg0_layer1_output0_inst.linear.hex"


WRITERS = {"netdiff": write_netdiff, "npy-dir": write_npy_dir, "msit": write_msit, "rknn": write_rknn,
           "ascend": write_ascend, "nnie-mapper": write_nnie_mapper, "nnie-caffe": write_nnie_caffe,
           "nnie-sim": write_nnie_sim}


def _hashes(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mode:o}"
            for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture
def reference(tmp_path):
    return write_dump([Tensor.from_array(n, a, order=i) for i, (n, a) in enumerate(ARRAYS.items())], tmp_path / "ref")


def _compare(reference, target, fmt, options, out):
    args = ["compare", str(reference), str(target), "--target-format", fmt, "--json", str(out), "--all",
            "--isolated", "none", "--no-diagnose"]
    for k, v in options.items():
        args += ["-O", f"{k}={v}"]
    return main(args)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_one_truncated_target_file_gives_a_full_report(tmp_path, reference, fmt, capsys):
    target, options, victim = WRITERS[fmt](tmp_path)
    assert _compare(reference, target, fmt, options, tmp_path / "ok.json") == 0, capsys.readouterr()
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2 + 1])
    before = _hashes(reference, target)
    code = _compare(reference, target, fmt, options, tmp_path / "r.json")
    assert code == 1, capsys.readouterr()
    layers = {layer["name"]: layer for layer in json.loads((tmp_path / "r.json").read_text())["layers"]}
    assert layers[BROKEN]["status"] == "error" and layers[BROKEN]["reason"]
    assert {layers["conv1"]["status"], layers["fc"]["status"]} == {"ok"}
    assert _hashes(reference, target) == before  # inputs untouched


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_compare_and_convert_never_modify_inputs(tmp_path, reference, fmt):
    target, options, _ = WRITERS[fmt](tmp_path)
    before = _hashes(reference, target)
    assert _compare(reference, target, fmt, options, tmp_path / "r.json") == 0
    opts = [x for k, v in options.items() for x in ("-O", f"{k}={v}")]
    assert main(["convert", str(target), "--from", fmt, "-o", str(tmp_path / "conv"), *opts]) == 0
    assert main(["convert", str(target), "--from", fmt, "-o", str(tmp_path / "conv.json"), *opts]) == 0
    assert _hashes(reference, target) == before
    assert main(["compare", str(reference), str(tmp_path / "conv"), "--isolated", "none", "--no-diagnose"]) == 0
    shutil.rmtree(tmp_path / "conv")
