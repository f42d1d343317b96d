"""netdiff at scale: `inspect` of huge listings, and how time grows with the count (linear or not).

    python benchmarks/scale.py            # 100,000 manifest tensors, 20,000 npz members, 100,000-node ONNX chain
    python benchmarks/scale.py --quick    # a tenth of each

For each case it builds the input, runs `netdiff inspect` (`--no-stats` for the ONNX chain) in a
subprocess at the full count N and at N/4, and prints the wall time, peak RSS and the growth ratio
time(N) / time(N/4): about 4 for linear work, 16 for quadratic. A compare of the manifest dump with
itself (alignment of N tensors) is timed the same way. The target is under 10 s per case on a
2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def manifest_dump(root: Path, count: int) -> Path:
    """A netdiff dump directory of ``count`` tiny tensors (each its own .npy file, one manifest)."""
    from netdiff.manifest import write_dump
    from netdiff.types import Tensor

    out = root / f"dump{count}"
    write_dump((Tensor.from_array(f"layer{i}/out", np.full(4, i, np.float32), order=i) for i in range(count)), out)
    return out


def npz_archive(root: Path, count: int) -> Path:
    """An .npz of ``count`` small members (compressed)."""
    import io

    path = root / f"members{count}.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(count):
            buf = io.BytesIO()
            np.save(buf, np.full(4, i, np.float32))
            z.writestr(f"t{i}.npy", buf.getvalue())
    return path


def onnx_chain(root: Path, count: int) -> Path:
    """An ONNX model that is a chain of ``count`` Relu nodes."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}" if i + 1 < count else "y"],
                              name=f"relu{i}") for i in range(count)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = root / f"chain{count}.onnx"
    onnx.save(model, path)
    return path


def run(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of `python -m netdiff ARGS`."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "netdiff", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "COLUMNS": "200"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            print(f"  netdiff {' '.join(args)} exited {code}: {err.read().decode()[-400:]}")
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of each count")
    opts = parser.parse_args()
    scale = 10 if opts.quick else 1
    cases = [
        ("inspect manifest", 100_000 // scale, manifest_dump, lambda p: ["inspect", str(p)]),
        ("compare manifest with itself", 100_000 // scale, manifest_dump, lambda p: ["compare", str(p), str(p)]),
        ("inspect npz", 20_000 // scale, npz_archive, lambda p: ["inspect", str(p)]),
        ("inspect --no-stats onnx chain", 100_000 // scale, onnx_chain, lambda p: ["inspect", "--no-stats", str(p)]),
    ]
    print(f"{'case':34} {'N':>8} {'time N':>9} {'time N/4':>9} {'growth':>7} {'peak RSS':>9}")
    with tempfile.TemporaryDirectory(prefix="netdiff-scale-") as tmp:
        root = Path(tmp)
        built: dict[tuple, Path] = {}
        for label, count, build, argv in cases:
            times = []
            for n in (count // 4, count):
                key = (build.__name__, n)
                if key not in built:
                    built[key] = build(root, n)
                wall, rss, _ = run(argv(built[key]))
                times.append((wall, rss))
            (small, _), (big, rss) = times
            print(f"{label:34} {count:>8,} {big:>8.2f}s {small:>8.2f}s {big / small:>7.1f} {rss:>7.0f}MB")


if __name__ == "__main__":
    main()
