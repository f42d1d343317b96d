"""Hostile inputs beyond the tensor files: side files, special files, bombs, output paths (issue 22).

One family per file kind. Every case must end with exit 0, 1 or 2 and no traceback, within
TIMEOUT seconds, allocating at most MEMORY bytes (tracemalloc peak, numpy data included) in
process, or with a peak RSS of at most RSS_LIMIT in a subprocess (FIFOs, /dev/zero). Random
families mutate a valid document: a value anywhere in it replaced by a hostile one (wrong type,
NUL, 10,000 characters, a 5,000-digit integer, 1e999, NaN/Infinity, 10,000-deep nesting), keys
deleted, objects turned into lists. Cases are deterministic (``Random(f"{family}:{i}")``).

CI runs COUNT cases per family; ``NETDIFF_FUZZ_FULL=1`` runs 300 (``NETDIFF_FUZZ_COUNT`` any number).
Counts and bounds: docs/robustness.md.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from random import Random

import numpy as np
import pytest

from netdiff.cli import main
from netdiff.errors import NetdiffError
from netdiff.manifest import write_dump
from netdiff.types import Tensor

from hostile_files import npz_bomb, npz_lying, npy_header, write_zip
from robust_seeds import seed_ascend, seed_netdiff, seed_onnx, seed_polygraphy

FULL = os.environ.get("NETDIFF_FUZZ_FULL") == "1"
COUNT = int(os.environ.get("NETDIFF_FUZZ_COUNT", "300" if FULL else "12"))
TIMEOUT = 20
MEMORY = 64 * 2**20
RSS_LIMIT = 600 * 2**20

_MARKERS = {'"@HUGEINT@"': "1" + "0" * 5000, '"@BIGFLOAT@"': "1e999", '"@NAN@"': "NaN", '"@INF@"': "-Infinity",
            '"@DEEP@"': "[" * 10000 + "]" * 10000, '"@DEEPOBJ@"': '{"a":' * 5000 + "1" + "}" * 5000}
HOSTILE = [None, True, False, 0, -1, -(2**40), 2**63, 1.5, -1e300, "", "x", "\x00", "a\x00b", "../../etc/passwd",
           "a" * 10000, "\udcff", [], {}, [1, "a", None], [[[]]], {"a": 1}, {"": None}, [-1, -2], ["x", "y"],
           *[k.strip('"') for k in _MARKERS]]


def _seed(make, root: Path):
    root.mkdir(parents=True, exist_ok=True)
    return make(root)


class _Hang(BaseException):
    """Raised by SIGALRM: the case ran longer than TIMEOUT."""


def _alarm(signum, frame):
    raise _Hang()


def _paths(node, prefix=()):
    """Every (path, value) of a JSON tree."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def mutate(doc, rng: Random, edits: int | None = None):
    """A copy of ``doc`` with 1-3 hostile edits; returns (document, what was done)."""
    doc = copy.deepcopy(doc)
    done = []
    for _ in range(edits or rng.randint(1, 3)):
        paths = [p for p, _ in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[key]
            done.append(f"del {path}")
        elif action < 0.25 and isinstance(parent[key], dict):
            parent[key] = list(parent[key].values())
            done.append(f"list {path}")
        else:
            value = rng.choice(HOSTILE)
            parent[key] = copy.deepcopy(value)
            done.append(f"{path} = {str(value)[:30]!r}")
    return doc, done


def render(doc) -> str:
    """JSON text of ``doc`` with the markers replaced by what json.dumps cannot write."""
    text = json.dumps(doc, ensure_ascii=True)
    for marker, raw in _MARKERS.items():
        text = text.replace(marker, raw)
    return text


def run_case(call, capsys) -> tuple[int, str]:
    """Run ``call`` (argv for netdiff, or a function) under the time and memory bounds.

    Returns (exit code, stderr); a library call ending in a NetdiffError counts as exit 2.
    """
    old = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    signal.alarm(TIMEOUT)
    try:
        if callable(call):
            try:
                call()
                code = 0
            except NetdiffError as e:
                print(f"netdiff: error: {e}", file=sys.stderr)
                code = 2
        else:
            code = main(list(call))
    finally:
        signal.alarm(0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("netdiff: error: ")]
        assert len(lines) == 1 and len(lines[0]) < 2000, err
    assert peak <= MEMORY, f"allocated {peak:,} bytes (bound {MEMORY:,})"
    return code, err


def fuzz(family: str, make, capsys) -> dict[int, int]:
    """Run COUNT cases of ``make(rng, i) -> [calls]``; fail listing every bad case."""
    counts = {0: 0, 1: 0, 2: 0}
    failures = []
    start = time.perf_counter()
    for i in range(COUNT):
        rng = Random(f"{family}:{i}")
        what = "?"
        try:
            calls, what = make(rng, i)
            for call in calls:
                code, _ = run_case(call, capsys)
                counts[code] += 1
        except _Hang:
            failures.append(f"case {i} ({what}): hang (> {TIMEOUT} s)")
        except (AssertionError, Exception) as e:  # noqa: B014 - any escape is the finding
            failures.append(f"case {i} ({what}): {type(e).__name__}: {str(e)[:400]}")
    print(f"\n{family}: {COUNT} cases, runs by exit code {counts}, {len(failures)} failed, "
          f"{time.perf_counter() - start:.1f} s")
    assert not failures, f"{family}: {len(failures)} of {COUNT} cases failed\n" + "\n".join(failures[:20])
    return counts


# ---------------------------------------------------------------------------- JSON side files


def test_manifest_family(tmp_path, capsys):
    seed = _seed(seed_netdiff, tmp_path / "seed")
    pristine = json.loads((seed.path / "manifest.json").read_text())
    ref = write_dump([Tensor.from_array("input", np.ones((1, 3, 4, 4), np.float32))], tmp_path / "ref")

    def make(rng, i):
        doc, what = mutate(pristine, rng)
        (seed.path / "manifest.json").write_text(render(doc))
        return [["inspect", str(seed.path)], ["compare", str(ref), str(seed.path), "--no-diagnose"]], what

    fuzz("manifest", make, capsys)


def test_mapping_family(tmp_path, capsys):
    ref = write_dump([Tensor.from_array(n, np.full(3, i, np.float32)) for i, n in enumerate("abc")], tmp_path / "ref")
    tgt = write_dump([Tensor.from_array(n, np.full(3, i, np.float32)) for i, n in enumerate(["t_a", "t_b", "c"])],
                     tmp_path / "tgt")
    mapping = tmp_path / "map.json"
    pristine = {"t_a": "a", "t_b": "b"}

    def make(rng, i):
        doc, what = mutate({"m": pristine}, rng)
        mapping.write_text(render(doc.get("m", doc)))
        return [["compare", str(ref), str(tgt), "--map", str(mapping), "--no-diagnose"]], what

    fuzz("map", make, capsys)


def _attr(key, value):
    return {"key": key, "value": value}


def _op(id_, name, type_, inputs, originals, origin, shape, layout):
    attr = [] if originals is None else [_attr("_datadump_original_op_names", {"list": {"s": originals}})]
    desc = [_attr("origin_format", {"s": "NCHW"}), _attr("origin_shape", {"list": {"i": list(shape)}})]
    if origin:
        desc += [_attr("_datadump_origin_name", {"s": origin}), _attr("_datadump_origin_output_index", {"i": 0})]
    return {"id": id_, "name": name, "type": type_, "input": inputs, "attr": attr,
            "output_desc": [{"dtype": "DT_FLOAT16", "layout": layout, "shape": {"dim": list(shape)}, "attr": desc}]}


OM_JSON = {"name": "tiny", "attr": [_attr("atc_cmdline", {"s": "atc --precision_mode=force_fp16"}),
                                    _attr("attr_model_out_nodes_name", {"list": {"s": ["relu_1:0:output0"]}})],
           "graph": [{"name": "tiny", "op": [
               _op(0, "input", "Data", [], None, None, (1, 3, 4, 4), "NCHW"),
               _op(1, "conv1_Conv", "Conv2D", ["input:0"], ["conv1/Conv"], "conv1/Conv", (1, 3, 4, 4), "NC1HWC0"),
               _op(2, "relu_1", "Relu", ["conv1_Conv:0"], ["relu.1"], "relu.1", (1, 3, 4, 4), "NC1HWC0"),
               _op(3, "trans_Cast_2", "Cast", ["relu_1:0"], [], None, (1, 3, 4, 4), "ND")]}]}


def test_fusion_map_family(tmp_path, capsys):
    from netdiff.readers import read_dump

    seed = _seed(seed_ascend, tmp_path / "seed")
    fmap = tmp_path / "model.json"
    out = tmp_path / "acl.json"

    def make(rng, i):
        doc, what = mutate(OM_JSON, rng)
        fmap.write_text(render(doc))
        return [["ascend-config", str(fmap), "--out", str(out), "--force"],
                lambda: [t.shape for t in read_dump(seed.path, "ascend", fusion_map=str(fmap))]], what

    fuzz("fusion-map", make, capsys)


def test_report_family(tmp_path, capsys):
    ref = write_dump([Tensor.from_array(n, np.linspace(-1, 1, 12, dtype=np.float32) * (i + 1), op_type="Conv")
                      for i, n in enumerate("abc")], tmp_path / "ref")
    tgt = write_dump([Tensor.from_array(n, np.linspace(-1, 1, 12, dtype=np.float32) * (i + 1) + (0.5 if n == "b" else 0))
                      for i, n in enumerate("abc")], tmp_path / "tgt")
    saved = tmp_path / "saved.json"
    assert main(["compare", str(ref), str(tgt), "--json", str(saved)]) == 1
    pristine = json.loads(saved.read_text())
    capsys.readouterr()
    report, html = tmp_path / "r.json", tmp_path / "r.html"

    def make(rng, i):
        doc, what = mutate(pristine, rng)
        report.write_text(render(doc))
        return [["report", str(report)], ["report", str(report), "--html", str(html)]], what

    fuzz("report", make, capsys)


def test_polygraphy_family(tmp_path, capsys):
    seed = _seed(seed_polygraphy, tmp_path / "seed")
    pristine = json.loads(seed.path.read_text())

    def make(rng, i):
        doc, what = mutate(pristine, rng)
        seed.path.write_text(render(doc))
        return [["inspect", str(seed.path), "--format", "polygraphy"]], what

    fuzz("polygraphy", make, capsys)


@pytest.mark.parametrize("marker", sorted(_MARKERS))
def test_each_json_limit_is_one_line(tmp_path, capsys, marker):
    """The probe's cases, each side file: 5,000 digits, 1e999, NaN, 10,000-deep nesting."""
    seed = _seed(seed_netdiff, tmp_path / "seed")
    doc = json.loads((seed.path / "manifest.json").read_text())
    doc["tensors"][0]["shape"] = marker.strip('"')
    (seed.path / "manifest.json").write_text(render(doc))
    code, err = run_case(["inspect", str(seed.path)], capsys)
    assert code == 2 and "manifest.json" in err


# ---------------------------------------------------------------------------- bombs and dtypes


def _bomb_cases(tmp_path: Path) -> list[Path]:
    cases = [npz_bomb(tmp_path / "bomb.npz", int(2.3e9)),  # a real one: 2.3 GB of zeros in ~2 MB
             npz_lying(tmp_path / "lying.npz", 2**32 - 2**20)]
    stored = npy_header((2**29,))  # declares 2 GiB, stores 16 bytes
    cases.append(write_zip(tmp_path / "stored_lie.npz", [("x.npy", stored + bytes(16), 0, len(stored) + 2**31, 0)]))
    rec = tmp_path / "record.npz"
    np.savez(rec, x=np.zeros(4, [("a", "f4"), ("b", "i4")]))
    cases.append(rec)
    return cases


def test_npz_bombs_are_refused_before_inflating(tmp_path, capsys):
    model = _seed(seed_onnx, tmp_path / "model").path
    for case in _bomb_cases(tmp_path):
        for argv in (["inspect", str(case)], ["compare", str(case), str(case)],
                     ["inspect", str(model), "--input", str(case)]):
            code, err = run_case(argv, capsys)
            assert code == 2, (argv, err)


@pytest.mark.parametrize("dtype", ["complex64", "U3", "M8[s]", "f4,i4", "V8"])
def test_non_numeric_npy_is_refused_clearly(tmp_path, capsys, dtype):
    d = tmp_path / "dump"
    d.mkdir()
    np.save(d / "x.npy", np.zeros(4, dtype=dtype))
    np.save(d / "y.npy", np.ones(4, np.float32))
    code, err = run_case(["compare", str(d), str(d)], capsys)
    assert code == 1  # x is unreadable (its reason in the report), y compared
    code, err = run_case(["inspect", str(d)], capsys)
    assert code == 0


# ---------------------------------------------------------------------------- output paths


def test_bad_output_paths_exit_2_before_any_work(tmp_path, capsys):
    ref = write_dump([Tensor.from_array("a", np.ones(3, np.float32))], tmp_path / "ref")
    model = _seed(seed_onnx, tmp_path / "model").path
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    bad_files = ["", str(tmp_path), "/proc/self/netdiff.json", "/sys/netdiff.json", "/dev/netdiff.json",
                 str(tmp_path / "missing" / "r.json"), str(ref / "manifest.json" / "x.json")]
    for flag in ("--json", "--csv", "--html", "--model-explorer"):
        for bad in bad_files:
            code, err = run_case(["compare", str(ref), str(ref), flag, bad], capsys)
            assert code == 2 and flag in err, (flag, bad, err)
    code, err = run_case(["compare", str(ref), str(ref), "--json", str(tmp_path / "r"), "--html", str(tmp_path / "r")],
                         capsys)
    assert code == 2 and "same file" in err
    code, err = run_case(["compare", str(ref), str(ref), "--json", str(ref / "manifest.json")], capsys)
    assert code == 2 and "is one of the input files" in err
    for bad in ["", "/proc/netdiff", "/sys/netdiff", str(ref / "manifest.json"), str(tmp_path / "full")]:
        for argv in (["dump", str(model), "--out", bad], ["simulate", str(model), "--target", "int8", "--out", bad],
                     ["convert", str(ref), "--out", bad]):
            start = time.perf_counter()
            code, err = run_case(argv, capsys)
            assert code == 2 and "--out" in err, (argv, err)
            assert time.perf_counter() - start < 5  # refused before running or reading anything
    assert not (tmp_path / "missing").exists() and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- special files (subprocess)


def _subprocess(argv: list[str]) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS bytes) of `python -m netdiff ARGV` killed after TIMEOUT."""
    with open(os.devnull, "wb") as devnull, __import__("tempfile").TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "netdiff", *argv], stdout=devnull, stderr=err,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"netdiff {' '.join(argv)}: hang (> {TIMEOUT} s)")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace"), usage.ru_maxrss * 1024


@pytest.fixture()
def special(tmp_path):
    ref = write_dump([Tensor.from_array("a", np.ones(3, np.float32))], tmp_path / "ref")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    inner = tmp_path / "fifo_dump"
    shutil.copytree(ref, inner)
    os.unlink(inner / "manifest.json")
    os.mkfifo(inner / "manifest.json")
    npy_dir = tmp_path / "npy_fifo"
    npy_dir.mkdir()
    np.save(npy_dir / "b.npy", np.ones(3, np.float32))
    os.mkfifo(npy_dir / "a.npy")
    os.symlink("/dev/zero", npy_dir / "c.npy")
    return tmp_path, ref, fifo, inner, npy_dir


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("what", ["target", "map", "report", "input", "fusion-map", "manifest", "npy-dir"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_special_files_are_refused_without_reading(special, what, kind):
    tmp_path, ref, fifo, inner, npy_dir = special
    if kind == "/dev/zero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    bad = str(fifo) if kind == "fifo" else "/dev/zero"
    model = _seed(seed_onnx, tmp_path / "model").path
    argv = {"target": ["compare", str(ref), bad],
            "map": ["compare", str(ref), str(ref), "--map", bad],
            "report": ["report", bad],
            "input": ["inspect", str(model), "--input", bad],
            "fusion-map": ["ascend-config", bad, "--out", str(tmp_path / "acl.json")],
            "manifest": ["inspect", str(inner)],
            "npy-dir": ["compare", str(npy_dir), str(npy_dir)]}[what]
    if what in ("manifest", "npy-dir") and kind == "/dev/zero":
        pytest.skip("covered by the FIFO case (npy-dir holds a /dev/zero link)")
    code, err, rss = _subprocess(argv)  # exit 0 when the special file is skipped (not a tensor file)
    assert code in (0, 1, 2) and "Traceback" not in err, err
    assert rss <= RSS_LIMIT, f"peak RSS {rss / 2**20:.0f} MB"
    if code == 2:
        assert err.strip().splitlines()[-1].startswith("netdiff: error: ")


def test_fifo_is_never_opened_for_reading(special):
    """The checks stat (or open non-blocking) first: a FIFO without a writer would block open()."""
    from netdiff._input_files import check_regular, open_regular

    tmp_path, ref, fifo, inner, npy_dir = special
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(NetdiffError, match="FIFO"):
        check_regular(fifo)
    with pytest.raises(NetdiffError, match="FIFO"):
        open_regular(fifo).close()
