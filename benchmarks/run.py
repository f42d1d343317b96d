"""netdiff speed and memory benchmark: prints ratios against the physical floor and against Polygraphy.

    python benchmarks/run.py              # ~1 GB per side, as the targets are stated
    python benchmarks/run.py --size-mb 128 --quick
    python benchmarks/run.py --quick --build-level x86-64-v3   # compare with the C kernel built for AVX2

Measured in one run:
1. compare time / floor time. The floor reads both dumps once from the page cache (memory-mapped)
   and does one numpy reduction per tensor: the physical limit for any comparer. float32 and float16.
2. reference dump time / plain onnxruntime inference time (same ResNet-18-shaped model and input),
   excluding disk writes, then including them: one shot (load, session build, one run: how netdiff
   dumps a reference) and with cached sessions (against the fused graph, the same graph unfused, and
   onnxruntime's blocked-layout graph with every output marked).
3. end-to-end netdiff vs Polygraphy on the same pair of models (when polygraphy is installed).
4. peak RSS of compare on the large dumps, and `netdiff --help` wall time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.resnet import resnet18  # noqa: E402


#: Environment of the timed subprocesses: bytecode caching on, as on a user's machine (a sandbox that
#: sets PYTHONDONTWRITEBYTECODE would make an editable netdiff recompile every module on each run,
#: while Polygraphy's installed modules keep their caches).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(fn, repeat: int = 1, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def make_dumps(root: Path, size_mb: int, dtype: str, tensors: int = 60) -> tuple[Path, Path, int]:
    """Two netdiff dump dirs of ``tensors`` activations, target = reference + noise; returns largest pair bytes."""
    from netdiff.manifest import write_dump
    from netdiff.types import Tensor

    rng = np.random.default_rng(0)
    per = size_mb * 2**20 // tensors // np.dtype(dtype).itemsize
    ref, tgt = [], []
    largest = 0
    for i in range(tensors):
        c = 64 * (1 + i % 4)
        hw = max(8, int((per / c) ** 0.5))
        shape = (1, c, hw, hw)
        r = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0).astype(dtype)
        x = (r + 0.01 * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
        name = f"/stage{i // 10}/block{i}/conv/Conv_output_0"
        ref.append(Tensor.from_array(name, r, order=i))
        tgt.append(Tensor.from_array(name, x, order=i))
        largest = max(largest, r.nbytes + x.nbytes)
    a, b = root / f"ref_{dtype}", root / f"tgt_{dtype}"
    write_dump(ref, a, force=True)
    write_dump(tgt, b, force=True)
    return a, b, largest


def floor_time(a: Path, b: Path) -> float:
    from netdiff.readers import read_dump

    da, db = read_dump(a), read_dump(b)

    def run():
        with np.errstate(all="ignore"):  # float16 sums overflow; only the time matters
            for t in da:
                np.add.reduce(t.load(), axis=None)
                np.add.reduce(db[t.name].load(), axis=None)

    run()  # page cache warm
    return timed(run, 3), timed(run, 3, time.process_time)


def compare_time(a: Path, b: Path) -> tuple[float, float]:
    """Best-of-3 wall time of compare (as the floor) and best-of-3 CPU time of the process (both workers)."""
    import netdiff

    netdiff.compare(a, b, diagnose=False)
    run = lambda: netdiff.compare(a, b)  # noqa: E731
    return timed(run, 3), timed(run, 3, time.process_time)


def peak_rss_of_compare(a: Path, b: Path) -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork+exec, so a
    # child of this (large) benchmark process would report the parent's peak.
    code = ("import netdiff; netdiff.compare(r'%s', r'%s');"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])" % (a, b))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # MB


def dump_vs_inference(root: Path) -> dict[str, float]:
    """Capture of every tensor against plain onnxruntime inference of the same model and input."""
    import onnx
    import onnxruntime as ort

    from netdiff.dumping import dump_model
    from netdiff.manifest import write_dump
    from netdiff.runners.onnxrt import OnnxModel

    model = resnet18()
    path = root / "resnet18.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    np.save(root / "x.npy", x)
    feeds = {"input": x}
    result = {"plain_first": timed(lambda: _session(path).run(None, feeds), 3)}  # session build + one run
    result["plain_first_unoptimized"] = timed(lambda: _session(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                                               prepack=False).run(None, feeds), 3)
    sess = _session(path)
    sess.run(None, feeds)
    result["plain"] = timed(lambda: sess.run(None, feeds), 10)
    # the same graph without fusions (every original tensor computed, as the capture needs it)
    unfused = _session(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    unfused.run(None, feeds)
    result["plain_unfused"] = timed(lambda: unfused.run(None, feeds), 10)
    result["capture_first"] = timed(lambda: OnnxModel(path).run(feeds), 3)  # includes building the capture session
    runner = OnnxModel(path)
    runner.run(feeds)
    result["capture"] = timed(lambda: runner.run(feeds), 10)
    # each dump goes to a new directory, as `netdiff dump --out NEW_DIR` does (overwriting a dump with
    # --force also pays for the kernel freeing the old files' pages: ~+10-40 ms here)
    outs = iter(root / f"dump{i}" for i in itertools.count())

    def capture_and_write() -> None:
        write_dump(runner.run(feeds), next(outs))

    capture_and_write()
    result["capture_written"] = timed(capture_and_write, 5)
    result["dump_first"] = timed(lambda: dump_model(path, next(outs), feeds), 3)  # `netdiff dump`: load, build, run, write
    result.update(_blocked_layout_bound(path, feeds))
    return result


def _session(path: Path, level=None, profile: str | None = None, data: bytes | None = None, prepack: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    if level is not None:
        options.graph_optimization_level = level
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(data or str(path), options, providers=["CPUExecutionProvider"])


def _blocked_layout_bound(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """Every tensor captured from onnxruntime's fastest graph (ORT_ENABLE_ALL: blocked-layout NCHWc
    kernels) and the share of that run spent converting blocked tensors back to NCHW (ReorderOutput,
    from onnxruntime's own profiler): no capture of NCHW tensors from that graph can be cheaper."""
    import onnx
    import onnxruntime as ort

    from netdiff.runners.onnxrt import node_outputs, with_all_outputs

    model = onnx.load(str(path))
    names = [o.name for o in node_outputs(model)]
    data = with_all_outputs(model, names).SerializeToString()
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = _session(path, level, data=data)
    sess.run(names, feeds)
    capture_all = timed(lambda: sess.run(names, feeds), 10)
    profiled = _session(path, level, profile=str(path.parent / "ort-profile"), data=data)
    runs = 20
    for _ in range(runs + 1):
        profiled.run(names, feeds)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    kernel = {"reorder": 0.0, "all": 0.0}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel["all"] += event["dur"]
            if event["args"].get("op_name") == "ReorderOutput":
                kernel["reorder"] += event["dur"]
    return {"capture_enable_all": capture_all, "reorder_share": kernel["reorder"] / kernel["all"]}


def end_to_end(root: Path) -> dict[str, float]:
    import onnx
    from onnx import numpy_helper

    a = root / "resnet18.onnx"
    model = onnx.load(str(a))
    rng = np.random.default_rng(1)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 4:
            init.CopyFrom(numpy_helper.from_array((w * (1 + 0.01 * rng.standard_normal(w.shape))).astype(np.float32), init.name))
    b = root / "resnet18_b.onnx"
    onnx.save(model, str(b))
    x = root / "x.npy"
    netdiff_cmd = [sys.executable, "-m", "netdiff", "compare", str(a), str(b), "--input", str(x),
                   "--json", str(root / "e2e.json")]
    subprocess.run(netdiff_cmd, capture_output=True, env=CHILD_ENV)  # writes the bytecode caches once
    result = {"netdiff": timed(lambda: subprocess.run(netdiff_cmd, capture_output=True, env=CHILD_ENV), 2)}
    poly = shutil.which("polygraphy")
    if poly:
        ra, rb = root / "pa.json", root / "pb.json"

        def polygraphy():
            for model_path, out in ((a, ra), (b, rb)):
                subprocess.run([poly, "run", str(model_path), "--onnxrt", "--onnx-outputs", "mark", "all",
                                "--save-outputs", str(out), "--load-inputs", str(root / "inputs.json"), "-q"],
                               capture_output=True, check=True, env=CHILD_ENV)
            subprocess.run([poly, "run", "--load-outputs", str(ra), str(rb), "--check-error-stat", "mean",
                            "--validate", "-q"], capture_output=True, env=CHILD_ENV)

        _polygraphy_inputs(root / "inputs.json", np.load(x))
        result["polygraphy"] = timed(polygraphy, 1)
    return result


def _polygraphy_inputs(path: Path, x: np.ndarray) -> None:
    from polygraphy.comparator import DataLoader  # noqa: F401  (checks the install)
    from polygraphy.json import save_json

    save_json([{"input": x}], str(path))


def print_dump(d: dict[str, float]) -> None:
    ms = {k: v * 1e3 for k, v in d.items()}
    plain = d["plain"]
    print(f"[dump] plain inference {ms['plain']:.1f} ms (onnxruntime defaults, cached session); netdiff capture of "
          f"every tensor {ms['capture']:.1f} ms -> {d['capture'] / plain:.2f} (target <= 1.3)")
    print(f"[dump]   against plain inference of the same graph unfused ({ms['plain_unfused']:.1f} ms) "
          f"-> {d['capture'] / d['plain_unfused']:.2f}")
    bound = d["capture_enable_all"] * (1 - d["reorder_share"])
    print(f"[dump]   every tensor from onnxruntime's blocked-layout graph (ORT_ENABLE_ALL, outputs marked) "
          f"{ms['capture_enable_all']:.1f} ms -> {d['capture_enable_all'] / plain:.2f}; "
          f"{d['reorder_share']:.0%} of it converts blocked tensors back to NCHW, so an NCHW dump of that graph "
          f"costs at least {d['capture_enable_all'] / plain:.2f} and without the conversion {bound / plain:.2f}")
    print(f"[dump] including disk writes: capture + write {ms['capture_written']:.1f} ms -> "
          f"{d['capture_written'] / plain:.2f}")
    print(f"[dump] one shot (session build + one run): plain {ms['plain_first']:.1f} ms; netdiff capture of every "
          f"tensor {ms['capture_first']:.1f} ms -> {d['capture_first'] / d['plain_first']:.2f} (target <= 1.3); "
          f"`netdiff dump` (load, build, run, write) {ms['dump_first']:.1f} ms -> {d['dump_first'] / d['plain_first']:.2f}")
    print(f"[dump]   plain one shot with netdiff's session options (no graph optimizations, no weight prepacking) "
          f"{ms['plain_first_unoptimized']:.1f} ms -> capture {d['capture_first'] / d['plain_first_unoptimized']:.2f}")


def help_time() -> float:
    exe = shutil.which("netdiff")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "netdiff", "--help"]
    subprocess.run(cmd, capture_output=True, check=True, env=CHILD_ENV)
    return timed(lambda: subprocess.run(cmd, capture_output=True, check=True, env=CHILD_ENV), 5)


def use_kernel_level(level: str, root: Path) -> None:
    """Build the C kernel at ``level`` into ``root`` and use it in this process (compare/floor timings;
    the peak-RSS child process keeps the installed kernel)."""
    from netdiff import _buildflags, metrics

    path = _buildflags.build_kernel(level, str(root))
    metrics._fast = _buildflags.load_kernel(path)


def kernel_level() -> str:
    from netdiff import metrics

    return metrics.fast_build_level() or "none (numpy path)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each side of the float32 dump")
    parser.add_argument("--quick", action="store_true", help="skip the model and Polygraphy parts")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--build-level", choices=["portable", "x86-64-v2", "x86-64-v3", "x86-64-v4"],
                        help="build the C kernel at this -march level for the compare timings "
                             "(default: the installed kernel; NETDIFF_BUILD_LEVEL=... pip install -e . rebuilds that)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="netdiff-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    try:
        if args.build_level:
            use_kernel_level(args.build_level, root)
        results["kernel_build_level"] = kernel_level()
        for dtype in ("float32", "float16"):
            size = args.size_mb if dtype == "float32" else args.size_mb // 2
            a, b, largest = make_dumps(root, size, dtype)
            (floor, floor_cpu), (comp, comp_cpu) = floor_time(a, b), compare_time(a, b)
            print(f"[{dtype}] {size} MB per side: floor {floor:.2f} s, compare {comp:.2f} s "
                  f"-> compare/floor = {comp / floor:.2f}  (target <= 2.0; C kernel {results['kernel_build_level']})")
            # CPU time is what other processes on a shared machine disturb least: compare's CPU time
            # over its 2 worker threads against the (single-threaded) floor's
            print(f"[{dtype}]   CPU time: floor {floor_cpu:.2f} s, compare {comp_cpu:.2f} s over 2 threads "
                  f"-> compare/2/floor = {comp_cpu / 2 / floor_cpu:.2f}")
            results[f"compare_over_floor_{dtype}"] = comp / floor
            results[f"compare_cpu_per_thread_over_floor_cpu_{dtype}"] = comp_cpu / 2 / floor_cpu
            if dtype == "float32":
                rss = peak_rss_of_compare(a, b)
                budget = largest / 2**20 * 2 + 200
                print(f"[{dtype}] peak RSS of compare: {rss:.0f} MB; budget 2 x largest pair + 200 MB = {budget:.0f} MB "
                      f"-> {rss / budget:.2f} of budget")
                results["peak_rss_mb"] = rss
                results["rss_budget_mb"] = budget
            shutil.rmtree(a)
            shutil.rmtree(b)
        if not args.quick:
            d = dump_vs_inference(root)
            print_dump(d)
            results.update({f"dump_{k}_s" if k != "reorder_share" else f"dump_{k}": v for k, v in d.items()})
            e = end_to_end(root)
            line = f"[end-to-end] netdiff {e['netdiff']:.2f} s"
            if "polygraphy" in e:
                line += f", polygraphy {e['polygraphy']:.2f} s -> netdiff is {e['polygraphy'] / e['netdiff']:.1f}x faster (target >= 5)"
            else:
                line += " (polygraphy not installed: pip install polygraphy)"
            print(line)
            results.update({f"e2e_{k}_s": v for k, v in e.items()})
        h = help_time()
        print(f"[cli] netdiff --help {h * 1e3:.0f} ms (target < 300 ms)")
        results["help_s"] = h
        print(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
