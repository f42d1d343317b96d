"""The many-pairs kernel entry point (``_fastmetrics.stats_pairs``) and the dataset's ``measure``.

``stats_pairs`` must give exactly the sums of the per-pair ``stats`` for every pair it takes, and
take nothing it cannot read as ``stats`` does (strided, non-float, byte-swapped, empty, mismatched):
those pairs go the per-pair way, so ``measure`` is bit-identical to measuring pair by pair.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from netdiff import metrics
from netdiff.dataset import evaluate
from netdiff.dataset.evaluate import Plan, measure
from netdiff.types import Thresholds, Transform

fast = metrics._fast
pytestmark = pytest.mark.skipif(fast is None or not hasattr(fast, "stats_pairs"), reason="C kernel not built")

KINDS = {np.dtype(np.float64): 0, np.dtype(np.float32): 1, np.dtype(np.float16): 2}


def _pairs(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of every float kind combination and size class, close and far, with NaN/Inf and zeros."""
    rng = np.random.default_rng(seed)
    out = []
    for size in (1, 7, 2048, 2049, 5000):
        for kr in (np.float64, np.float32, np.float16):
            for kt in (np.float64, np.float32, np.float16):
                r = rng.standard_normal(size) * 3
                t = r + rng.standard_normal(size) * rng.choice([1e-6, 1e-2, 1.0])
                out.append((r.astype(kr), t.astype(kt)))
    r = rng.standard_normal(3000).astype(np.float32)
    for where, value in ((5, np.nan), (2500, np.inf), (0, -np.inf)):
        t = r.copy()
        t[where] = value
        out.append((r, t))
        out.append((t, r.copy()))
    out.append((np.zeros(100, np.float32), rng.standard_normal(100).astype(np.float32)))
    out.append((rng.standard_normal(100).astype(np.float32), np.zeros(100, np.float32)))
    big = np.full(64, 3e38, np.float32)  # float32 squares overflow: stats redoes the segment in float64
    out.append((big, big * np.float32(0.5)))
    out.append((rng.standard_normal((4, 8, 8)).astype(np.float32), rng.standard_normal((4, 8, 8)).astype(np.float32)))
    return out


def _expected(r: np.ndarray, t: np.ndarray) -> list[float]:
    d = fast.stats(r.reshape(-1), t.reshape(-1), KINDS[r.dtype], KINDS[t.dtype], metrics.EPS, None, 0, 0, 0)
    side, other = d["ref"], d["tgt"]
    return [1.0, d["rr"], d["xx"], d["rx"], d["dd"], side[0], side[4], side[5], side[6],
            side[1] + side[2] + other[1] + other[2]]


def test_stats_pairs_gives_the_sums_of_stats_for_every_pair():
    pairs = _pairs()
    out = np.full((len(pairs), 10), -7.0)
    taken = fast.stats_pairs([r for r, _ in pairs], [t for _, t in pairs], metrics.EPS, out)
    assert taken == len(pairs)
    for k, (r, t) in enumerate(pairs):
        np.testing.assert_array_equal(out[k], _expected(r, t), err_msg=f"pair {k}: {r.dtype}/{t.dtype} {r.size}")


def test_stats_pairs_leaves_what_it_cannot_read_to_the_caller():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(200).astype(np.float32)
    good = (a, a + np.float32(0.01))
    untaken = [
        (a[::2], a[1::2]),  # strided (not C-contiguous)
        (a.reshape(10, 20).T, a.reshape(20, 10)),  # transposed view
        (a, a[:100]),  # different element counts
        (a[:0], a[:0]),  # empty
        (None, a),
        (a, None),
        (a.astype(np.int32), a.astype(np.int32)),  # not floats
        (a.astype(">f4"), a),  # byte-swapped
        (a.tolist(), a),  # not a buffer
        (a.astype(np.float16), np.ones(200, bool)),
    ]
    pairs = [good, *untaken, good]
    out = np.full((len(pairs), 10), -7.0)
    taken = fast.stats_pairs([r for r, _ in pairs], [t for _, t in pairs], metrics.EPS, out)
    assert taken == 2
    np.testing.assert_array_equal(out[0], _expected(*good))
    np.testing.assert_array_equal(out[-1], _expected(*good))
    for k in range(1, len(pairs) - 1):
        assert out[k, 0] == 0.0
        assert (out[k, 1:] == -7.0).all()  # left as it was


def test_stats_pairs_refuses_bad_arguments():
    a = np.ones(4, np.float32)
    with pytest.raises(ValueError):
        fast.stats_pairs([a], [a, a], metrics.EPS, np.empty((2, 10)))
    with pytest.raises(ValueError):
        fast.stats_pairs([a, a], [a, a], metrics.EPS, np.empty((1, 10)))  # too small
    with pytest.raises(ValueError):
        fast.stats_pairs([a], [a], metrics.EPS, np.empty((1, 10), np.float32))
    with pytest.raises(TypeError):
        fast.stats_pairs((a,), [a], metrics.EPS, np.empty((1, 10)))
    with pytest.raises(ValueError):  # numpy: not C-contiguous
        fast.stats_pairs([a], [a], metrics.EPS, np.empty((1, 20))[:, ::2])


def _plan(n: int, transforms: list | None = None) -> Plan:
    names = [f"r{i}" for i in range(n)]
    return Plan(names, [f"t{i}" for i in range(n)], transforms or [None] * n, [()] * n, [n - 1], [], Thresholds())


def _assert_same(a, b):
    (ca, ea, sa), (cb, eb, sb) = a, b
    np.testing.assert_array_equal(ca, cb)  # NaN where NaN: bit-identical otherwise
    np.testing.assert_array_equal(ea, eb)
    assert sa == sb


def test_measure_is_the_per_pair_measurement(monkeypatch):
    pairs = _pairs(seed=3)
    rng = np.random.default_rng(4)
    a = rng.standard_normal(50).astype(np.float32)
    pairs += [(a[::2], a[1::2] + np.float32(0.1)), (a.astype(np.int32), a.astype(np.int32)),
              (a, a[:10]), (a.astype(">f4"), a), (a[:0], a[:0])]
    plan = _plan(len(pairs) + 1)  # the last one is missing on the target side
    ref = {f"r{i}": r for i, (r, _) in enumerate(pairs)}
    ref[f"r{len(pairs)}"] = a
    tgt = {f"t{i}": t for i, (_, t) in enumerate(pairs)}
    stats: dict = {}
    got = measure(plan, ref, tgt, stats)

    def one_by_one(plan, ref, tgt, stats):
        n = len(plan.names)
        cosine, rel, status = np.full(n, np.nan), np.full(n, np.nan), ["error"] * n
        rs, ts = [ref.get(x) for x in plan.names], [tgt.get(x) for x in plan.targets]
        evaluate._measure_pairs(plan, range(n), rs, ts, cosine, rel, status, stats)
        return cosine, rel, status

    expected_stats: dict = {}
    _assert_same(got, one_by_one(plan, ref, tgt, expected_stats))
    assert stats == expected_stats
    assert {"ok", "diverged", "error"} <= set(got[2])
    assert not math.isnan(got[0][len(pairs) - 5])  # the strided pair is measured (per pair, in numpy)


def test_measure_applies_layout_transforms_first():
    rng = np.random.default_rng(6)
    r = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    t = np.transpose(r + np.float32(0.01), (0, 2, 3, 1)).copy()  # the target in NHWC
    to_nchw = Transform(permutation=(0, 3, 1, 2), description="NHWC->NCHW")
    plan = _plan(2, [to_nchw, Transform(permutation=(0, 2, 1), description="bad")])
    got = measure(plan, {"r0": r, "r1": r}, {"t0": t, "t1": t}, {})
    assert got[2] == ["ok", "error"]  # a transform that does not apply: not comparable
    expected = metrics.compute_metrics(r, np.transpose(t, (0, 3, 1, 2)))
    assert got[0][0] == pytest.approx(expected.cosine, abs=1e-12)
    assert got[1][0] == pytest.approx(expected.rel_l2, rel=1e-9)


def _runner(tmp_path, nodes, inputs, outputs):
    import onnx
    from onnx import TensorProto, helper

    from netdiff.dataset.evaluate import _ModelRunner
    from netdiff.runners.onnxrt import OnnxModel

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return _ModelRunner(OnnxModel(path))


def test_bound_runs_give_the_plain_runs_values(tmp_path):
    """Slot runs (I/O binding) equal plain runs, with input shapes that change between samples and an
    output whose shape depends on the data (then the runner falls back to plain runs)."""
    from onnx import helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "x"], ["m"]),
             helper.make_node("Greater", ["x", "zero"], ["g"]), helper.make_node("Cast", ["g"], ["gf"], to=1),
             helper.make_node("Compress", ["x", "g"], ["picked"], axis=1)]
    from onnx import TensorProto

    runner = _runner(tmp_path, [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor(
        "z", TensorProto.FLOAT, [], [0.0])), *nodes], [("x", [1, "n"])], ["m", "gf"])
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((1, n)).astype(np.float32) for n in (5, 5, 5, 7, 7, 5)]
    held = []
    for k, x in enumerate(feeds):
        got = runner.run({"x": x}, slot=k % 2)
        plain = runner._session.run(runner._names, {"x": x})
        for name, value in zip(runner._names, plain):
            np.testing.assert_array_equal(got[name], value, err_msg=f"sample {k} {name}")
        held.append({n: np.array(v) for n, v in got.items()})
    assert runner._bindings is None  # "picked" changed shape with the data: plain runs now
    again = [runner.run({"x": x}, slot=0) for x in feeds]
    for a, b in zip(again, held):
        assert all(np.array_equal(a[n], b[n]) for n in b)


def test_bound_runs_with_static_shapes_stay_bound(tmp_path):
    from onnx import helper

    runner = _runner(tmp_path, [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "x"], ["m"])],
                     [("x", [2, 3])], ["m"])
    rng = np.random.default_rng(1)
    blocks = [[rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)] for _ in range(3)]
    for block in blocks:
        outs = [runner.run({"x": x}, slot=k) for k, x in enumerate(block)]  # a block's slots coexist
        for x, out in zip(block, outs):
            np.testing.assert_array_equal(out["m"], np.maximum(x, 0) * x)
    assert runner._bindings is not None and len(runner._bindings) == 3


def test_small_exact_pairs_are_memoized_by_content():
    from netdiff.verdict import status_of

    th = Thresholds()
    pairs = [(np.zeros(1, np.float32), np.zeros(1, np.float32)), (np.zeros(1, np.float32), np.ones(1, np.float32)),
             (np.array([np.nan, 1.0], np.float32), np.array([1.0, 1.0], np.float32)),
             (np.zeros((2, 2)), np.full((2, 2), -0.0)), (np.zeros(100, np.float32), np.zeros(100, np.float32))]
    for r, t in pairs:
        for _ in range(2):  # the second call is the memoized one
            got = evaluate._exact(r, t, th)
            m = metrics.compute_metrics(r, t)
            assert repr(got) == repr((m.cosine, m.rel_l2, status_of(th, m)))
    r, t = np.array([1.0, 2.0], np.float32), np.array([1.0, 2.2], np.float32)  # rel_l2 0.09
    assert evaluate._exact(r, t, th)[2] == "diverged"
    assert evaluate._exact(r, t, Thresholds(cosine=0.9, rel_l2=0.5))[2] == "ok"  # thresholds are part of the key
