"""Fuzzer for the dump readers and the Caffe loader: mutate valid seeds, read, load every tensor.

Each case copies a seed, applies 1-3 random mutations (truncation, byte flips, huge or negative
length fields, huge shapes, out-of-range enums, absurd numbers in text, renamed / removed /
duplicated files) and then reads it. The outcome is one of

* ``valid``: the dump was read and every tensor loaded with the declared shape;
* ``partial``: the dump was read, some tensors are marked unreadable (``DumpFormatError`` on load);
* ``error``: the reader raised a documented :class:`netdiff.errors.NetdiffError`;
* ``crash``: any other exception, a shape that differs from the declared one, or an allocation
  larger than 10x the input size (+32 MB) seen by tracemalloc;
* ``hang``: the case took longer than 5 s (or the worker stalled / died).

Cases run in a worker subprocess under ``RLIMIT_AS`` (address space at start + 1 GiB), so an
unchecked huge allocation fails there instead of taking the machine down. Run as a script:
``python robust_fuzz.py READER START COUNT`` prints one JSON line per case.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

HERE = Path(__file__).resolve().parent
CASE_SECONDS = 5
STALL_SECONDS = 20
ALLOC_FACTOR = 10
ALLOC_FLOOR = 32 * 1024 * 1024


class CaseTimeout(BaseException):
    """Raised by the per-case alarm (a BaseException so readers' ``except Exception`` cannot hide it)."""


# ------------------------------------------------------------------ mutations

def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _absurd(rng: Random) -> int:
    from robust_seeds import ABSURD

    return rng.choice(ABSURD)


def _text_number(rng: Random) -> str:
    return rng.choice(["0", "-1", "-0", "nan", "inf", "-inf", "1e308", "1e999", "99999999999999999999",
                       str(1 << 62), "ffffffff", "0x", "", "12.5.3", "\u00e9", "[]", "{}", "null", "true",
                       '"x"', str(_absurd(rng)), "-" + str(_absurd(rng))])


_NPY_SHAPE = re.compile(rb"'shape': \(([^)]*)\)")
_NPY_DESCR = re.compile(rb"'descr': '([^']*)'")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_DIGITS = re.compile(r"\d+")


def mutate_bytes(data: bytes, rng: Random) -> bytes:
    """One generic byte-level mutation."""
    kind = rng.choice(["truncate", "flip", "le64", "le32", "varint", "insert", "delete", "zero", "number",
                       "npy_shape", "npy_descr", "empty", "dup"])
    n = len(data)
    if kind == "truncate" or n == 0:
        return data[:rng.randint(0, max(n - 1, 0))]
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if kind in ("le64", "le32"):
        size = 8 if kind == "le64" else 4
        at = 0 if rng.random() < 0.4 else rng.randrange(n)
        value = rng.choice([_absurd(rng), -1, -rng.randint(1, 1 << 20)]) & ((1 << (8 * size)) - 1)
        return data[:at] + value.to_bytes(size, "little") + data[at + size:]
    if kind == "varint":
        at = rng.randrange(n)
        huge = rng.choice([b"\xff" * 9 + b"\x01", b"\xff\xff\xff\xff\x0f", b"\x80" * 11, b"\xff\xff\xff\xff\xff\xff\xff\x7f"])
        return data[:at] + huge + data[at + rng.randint(0, 2):]
    if kind == "insert":
        at = rng.randrange(n + 1)
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]
    if kind == "delete":
        at = rng.randrange(n)
        return data[:at] + data[at + rng.randint(1, 16):]
    if kind == "zero":
        at = rng.randrange(n)
        return data[:at] + b"\x00" * rng.randint(1, 32) + data[at + 32:]
    if kind == "number":
        spans = [m.span() for m in _NUMBER.finditer(data[:200_000])]
        if spans:
            a, b = rng.choice(spans)
            return data[:a] + _text_number(rng).encode() + data[b:]
        return data[: n // 2]
    if kind == "npy_shape":
        m = _NPY_SHAPE.search(data[:4096])
        if m:
            dims = ", ".join(str(rng.choice([_absurd(rng), -1, -_absurd(rng)])) for _ in range(rng.randint(0, 6)))
            return data[:m.start(1)] + dims.encode() + (b"," if dims.count(",") == 0 and dims else b"") + data[m.end(1):]
        return data[:-1]
    if kind == "npy_descr":
        m = _NPY_DESCR.search(data[:4096])
        if m:
            descr = rng.choice([b"|O", b"<f3", b"<c64", b"|V8", b">f4", b"<U4", b"|b1", b"<M8[s]", b"xx", b"<f2"])
            return data[:m.start(1)] + descr + data[m.end(1):]
        return data[1:]
    if kind == "empty":
        return b""
    return data + data[: rng.randint(1, max(n, 1))]


def mutate_tree(root: Path, rng: Random, regen: dict) -> str:
    """Apply one mutation to the files under ``root``; return a short description."""
    files = _files(root)
    if not files:
        return "no files"
    kind = rng.choices(["bytes", "regen", "remove", "duplicate", "rename"], weights=[70, 15 if regen else 0, 5, 5, 5])[0]
    if kind == "regen":
        rel = rng.choice(sorted(regen))
        path = root / rel
        if path.exists():
            path.write_bytes(regen[rel](rng))
            return f"regen {rel}"
        kind = "bytes"
    target = rng.choice(files)
    rel = target.relative_to(root)
    if kind == "bytes":
        target.write_bytes(mutate_bytes(target.read_bytes(), rng))
        return f"bytes {rel}"
    if kind == "remove":
        target.unlink()
        return f"remove {rel}"
    new = target.with_name(_renamed(target.name, rng))
    if kind == "duplicate":
        if new != target:
            shutil.copyfile(target, new)
        return f"duplicate {rel} -> {new.name}"
    target.rename(new)
    return f"rename {rel} -> {new.name}"


def _renamed(name: str, rng: Random) -> str:
    runs = list(_DIGITS.finditer(name))
    if runs and rng.random() < 0.8:
        m = rng.choice(runs)
        value = rng.choice([0, 1, 2, 10 ** len(m.group()) - 1, int(m.group()) + 1, 1 << 40, 99999999999999999999])
        return name[:m.start()] + str(value) + name[m.end():]
    return rng.choice(["x_" + name, name + ".bak", name.upper(), "..." + name, name.replace("_", "")])


# ------------------------------------------------------------------ one case

def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in _files(root))


def _read_case(seed, path: Path) -> str:
    """Read ``path`` as ``seed``'s format and load everything; return valid/partial (or raise)."""
    import numpy as np

    if seed.reader == "onnx":  # the ONNX runner: skeleton + memory-mapped weights
        from netdiff.inputs import resolve_feeds
        from netdiff.runners.onnxrt import OnnxModel

        model = OnnxModel(path)
        feeds, _ = resolve_feeds(model.input_specs(), None, seed=0)
        for tensor in model.run(feeds):
            np.sum(np.asarray(tensor.load()), dtype=np.float64)
        return "valid"
    if seed.reader == "caffe":
        from netdiff.caffe.net import load_net

        net = load_net(path, seed.options.get("weights"))
        for layer in net.layers:
            for blob in layer.blobs or []:
                float(np.asarray(blob, dtype=np.float64).sum())
        return "valid"
    from netdiff.errors import NetdiffError
    from netdiff.readers import detect_format, read_dump

    try:
        detect_format(path)
    except NetdiffError:
        pass
    dump = read_dump(path, seed.reader, **seed.options)
    partial = False
    for tensor in dump:
        try:
            array = np.asarray(tensor.load())
        except NetdiffError:
            partial = True
            continue
        if tuple(array.shape) != tuple(tensor.shape):
            raise AssertionError(f"{tensor.name}: loaded shape {array.shape} differs from declared {tensor.shape}")
        if array.dtype.kind in "fc":
            np.sum(array, dtype=np.float64)
    return "partial" if partial else "valid"


def run_case(seed, seed_dir: Path, work: Path, reader: str, index: int) -> dict:
    """Copy the seed, mutate it and read it; return the outcome record."""
    import tracemalloc

    from netdiff.errors import NetdiffError

    rng = Random(f"{reader}:{index}")
    case = work / f"case{index}"
    shutil.copytree(seed_dir, case)
    try:
        root = case / seed.root.relative_to(seed_dir)
        path = case / seed.path.relative_to(seed_dir)
        steps = [mutate_tree(root, rng, seed.regen) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        options = {k: (str(case / Path(v).relative_to(seed_dir)) if isinstance(v, str) and v.startswith(str(seed_dir))
                       else v) for k, v in seed.options.items()}
        moved = type(seed)(path, seed.reader, options, seed.regen)
        limit = ALLOC_FACTOR * _tree_bytes(case) + ALLOC_FLOOR
        tracemalloc.reset_peak()
        signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
        try:
            outcome, detail = _read_case(moved, path), ""
        except NetdiffError as e:
            outcome, detail = "error", f"{type(e).__name__}: {e}"
        except CaseTimeout:
            outcome, detail = "hang", "per-case alarm"
        except Exception as e:  # noqa: BLE001 - that is what we count
            outcome, detail = "crash", "".join(traceback.format_exception(e)[-3:])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        peak = tracemalloc.get_traced_memory()[1]
        if peak > limit and outcome != "crash":
            outcome, detail = "crash", f"allocated {peak} bytes for {limit // ALLOC_FACTOR} input bytes; " + detail
        return {"i": index, "outcome": outcome, "steps": steps, "detail": detail[:2000]}
    finally:
        shutil.rmtree(case, ignore_errors=True)


def _limit_memory(extra: int = 1 << 30) -> None:
    import resource

    with open("/proc/self/status") as handle:
        vm = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.getrlimit(resource.RLIMIT_AS)[1]))


def worker(reader: str, start: int, count: int) -> None:
    """Run cases ``start .. start+count-1`` and print one JSON line before and after each."""
    import tracemalloc

    import netdiff.caffe.net  # noqa: F401  (import before limiting memory)
    import netdiff.readers  # noqa: F401
    from robust_seeds import SEEDS

    def alarm(signum, frame):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, alarm)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{reader}-") as tmp:
        tmp_path = Path(tmp)
        seeds = []
        for k, build in enumerate(SEEDS[reader]):
            seed_dir = tmp_path / f"seed{k}"
            seed_dir.mkdir()
            seeds.append((build(seed_dir), seed_dir))
        work = tmp_path / "work"
        work.mkdir()
        _limit_memory()
        tracemalloc.start()
        for index in range(start, start + count):
            seed, seed_dir = seeds[index % len(seeds)]
            print(json.dumps({"begin": index}), flush=True)
            print(json.dumps(run_case(seed, seed_dir, work, reader, index)), flush=True)


# ------------------------------------------------------------------ driver

@dataclass
class Stats:
    """Outcome counts of one reader's fuzz run."""

    reader: str
    cases: int = 0
    counts: dict = field(default_factory=lambda: {k: 0 for k in ("valid", "partial", "error", "crash", "hang")})
    failures: list = field(default_factory=list)
    seconds: float = 0.0

    def add(self, record: dict) -> None:
        self.cases += 1
        self.counts[record["outcome"]] += 1
        if record["outcome"] in ("crash", "hang"):
            self.failures.append(record)


def fuzz(reader: str, count: int, start: int = 0) -> Stats:
    """Run ``count`` cases for ``reader`` in worker subprocesses (restarted after a hang or death)."""
    stats = Stats(reader)
    began = time.monotonic()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
    next_case, end = start, start + count
    while next_case < end:
        proc = subprocess.Popen([sys.executable, str(Path(__file__)), reader, str(next_case), str(end - next_case)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        current = None
        buffer = ""
        last = time.monotonic()
        killed = False
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16).decode()
                if not chunk:
                    break
                buffer += chunk
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    record = json.loads(line)
                    last = time.monotonic()
                    if "begin" in record:
                        current = record["begin"]
                    else:
                        stats.add(record)
                        current = None
                        next_case = record["i"] + 1
            elif time.monotonic() - last > STALL_SECONDS:
                proc.kill()
                killed = True
                break
        proc.wait()
        err = proc.stderr.read()
        if current is not None:  # the worker died or stalled inside a case
            outcome = "hang" if killed else "crash"
            stats.add({"i": current, "outcome": outcome, "steps": [], "detail": f"worker exit {proc.returncode}: {err[-1500:]}"})
            next_case = current + 1
        elif next_case < end:
            raise RuntimeError(f"fuzz worker for {reader} failed before case {next_case}: {err[-3000:]}")
    stats.seconds = time.monotonic() - began
    return stats


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
