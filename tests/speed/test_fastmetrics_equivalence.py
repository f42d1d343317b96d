"""The C kernel (netdiff._fastmetrics) gives the numpy reference's metrics and detail data.

Correctness only: no timing assertions (benchmarks/run.py measures speed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from netdiff import metrics
from netdiff.detail import layer_detail
from netdiff.types import METRIC_NAMES

pytestmark = pytest.mark.skipif(not metrics.fast_available(), reason="C kernel not built")


def numpy_path(fn, *args, **kwargs):
    """Run ``fn`` with the C kernel switched off (the numpy reference implementation)."""
    saved = metrics._fast
    metrics._fast = None
    try:
        return fn(*args, **kwargs)
    finally:
        metrics._fast = saved


def assert_same(fast, ref, rel: float) -> None:
    for key in METRIC_NAMES:
        a, b = getattr(fast, key), getattr(ref, key)
        if isinstance(b, float) and math.isnan(b):
            assert math.isnan(a), key
        elif key == "kl":
            assert a == pytest.approx(b, rel=max(rel, 1e-5), abs=2e-7), key  # msaccucmp prints 6 decimals
        elif key in ("cosine",):
            assert 1 - a == pytest.approx(1 - b, rel=100 * rel, abs=1e-12 if rel <= 1e-9 else 1e-9), key
        elif key.endswith("_std"):  # sqrt(Σv²/n − m²) cancels when |mean| ≫ std
            mean = getattr(ref, key.replace("_std", "_mean"))
            assert a == pytest.approx(b, rel=rel, abs=1e-3 * max(1.0, abs(mean))), key
        else:
            assert a == pytest.approx(b, rel=rel, abs=1e-30), key
    assert fast.notes == ref.notes


SHAPES = [(1,), (5,), (2047,), (2049,), (3, 5), (1, 3, 7, 9), (2, 16, 33, 17), (1, 600, 4), (1, 4, 70000)]
DTYPES = [(np.float32, np.float32, 2e-5), (np.float16, np.float16, 2e-5), (np.float64, np.float64, 1e-9),
          (np.float32, np.float16, 2e-5), (np.float64, np.float32, 2e-5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rdt, xdt, rel", DTYPES)
def test_kernel_matches_numpy(shape, rdt, xdt, rel):
    rng = np.random.default_rng(math.prod(shape))
    r = (rng.standard_normal(shape) * 2 + 0.5).astype(rdt)
    x = (r.astype(np.float64) + 0.05 * rng.standard_normal(shape)).astype(xdt)
    assert_same(metrics.compute_metrics(r, x), numpy_path(metrics.compute_metrics, r, x), rel)


@pytest.mark.parametrize("pattern", ["nan_ref", "inf_tgt", "mixed", "all_nan", "one_finite", "zeros_ref", "both_zero",
                                     "constant", "tiny_ref", "huge"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_special_values(pattern, dtype):
    rng = np.random.default_rng(7)
    r = rng.standard_normal(5000)
    x = r + 0.01 * rng.standard_normal(5000)
    if pattern == "nan_ref":
        r[::97] = np.nan
    elif pattern == "inf_tgt":
        x[3::501] = np.inf
        x[4::501] = -np.inf
    elif pattern == "mixed":
        r[::13] = np.nan
        x[::17] = np.inf
        r[5] = -np.inf
    elif pattern == "all_nan":
        r[:] = np.nan
    elif pattern == "one_finite":
        r[:] = np.nan
        r[2500] = 1.0
    elif pattern == "zeros_ref":
        r[:] = 0.0
    elif pattern == "both_zero":
        r[:] = 0.0
        x[:] = 0.0
    elif pattern == "constant":
        r[:] = 3.0
        x[:] = 3.0
    elif pattern == "tiny_ref":
        r[::2] = 1e-30 if dtype == np.float64 else 0.0
    elif pattern == "huge":
        r *= 1e3 if dtype == np.float16 else 1e30
        x *= 1e3 if dtype == np.float16 else 1e30
    r, x = r.astype(dtype), x.astype(dtype)
    rel = 1e-9 if dtype == np.float64 else 3e-5
    expected = numpy_path(metrics.compute_metrics, r, x)  # float64 throughout: no float32 square overflows
    assert_same(metrics.compute_metrics(r, x), expected, rel)


@pytest.mark.parametrize("view", ["transpose", "slice", "big_endian", "int8", "fortran"])
def test_strided_and_other_dtypes_take_the_slab_path(view):
    rng = np.random.default_rng(3)
    r = rng.standard_normal((2, 24, 40, 33)).astype(np.float32)
    x = (r + 0.02 * rng.standard_normal(r.shape)).astype(np.float32)
    if view == "transpose":
        r, x = r.transpose(0, 2, 3, 1), x.transpose(0, 2, 3, 1)
    elif view == "slice":
        r, x = r[:, ::2, 1:], x[:, ::2, 1:]
    elif view == "big_endian":
        r, x = r.astype(">f4"), x.astype(">f4")
    elif view == "int8":
        r, x = (r * 30).astype(np.int8), (x * 30).astype(np.int8)
    else:
        r, x = np.asfortranarray(r), np.asfortranarray(x)
    old = metrics.SLAB_ELEMENTS
    metrics.SLAB_ELEMENTS = 4096  # several slabs, offsets not aligned to channels
    try:
        fast = metrics.compute_metrics(r, x)
        detail = layer_detail(r, x)
    finally:
        metrics.SLAB_ELEMENTS = old
    assert_same(fast, numpy_path(metrics.compute_metrics, r, x), 3e-5)
    reference_detail = numpy_path(layer_detail, r, x)
    if "channel_cosine" in reference_detail:
        assert np.allclose(np.array(detail["channel_cosine"], float), np.array(reference_detail["channel_cosine"], float),
                           atol=2e-5, equal_nan=True)


def test_memory_map_input(tmp_path):
    rng = np.random.default_rng(5)
    r = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    x = r + np.float32(0.1) * rng.standard_normal(r.shape).astype(np.float32)
    np.save(tmp_path / "r.npy", r)
    np.save(tmp_path / "x.npy", x)
    rm = np.load(tmp_path / "r.npy", mmap_mode="r")
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert_same(metrics.compute_metrics(rm, xm), numpy_path(metrics.compute_metrics, r, x), 2e-5)


@pytest.mark.parametrize("nan", [False, True])
def test_detail_from_kernel_matches_numpy_detail(nan):
    rng = np.random.default_rng(11)
    r = rng.standard_normal((1, 6, 20, 30)).astype(np.float32)
    x = r + np.float32(0.05) * rng.standard_normal(r.shape).astype(np.float32)
    x[0, 4] += 1.0  # one bad channel
    if nan:
        x[0, 2, 3, :7] = np.nan
    metrics.compute_metrics(r, x)
    fast = layer_detail(r, x)
    ref = numpy_path(layer_detail, r, x)
    assert fast["channel_cosine"] == pytest.approx(ref["channel_cosine"], abs=2e-5)
    assert fast["heatmap"] == ref["heatmap"]
    assert fast["heatmap"]["channel"] == 4
    for key in ("reference", "target"):
        a, b = np.array(fast["histogram"][key]), np.array(ref["histogram"][key])
        assert a.sum() == b.sum() == r.size - (7 if nan else 0)
        assert np.abs(a - b).sum() <= 4  # float32 vs float64 bin edges may move a value
    assert fast["histogram"]["edges"] == pytest.approx(ref["histogram"]["edges"], rel=1e-6)
    assert fast["error_histogram"]["edges"] == pytest.approx(ref["error_histogram"]["edges"], rel=1e-5)
    assert sum(fast["error_histogram"]["counts"]) == sum(ref["error_histogram"]["counts"])


def test_detail_cache_is_per_pair_and_used_once():
    rng = np.random.default_rng(2)
    r = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    x = r.copy()
    other = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    metrics.compute_metrics(r, x)
    assert metrics.cached_detail(r, other) is None  # another pair: not this data
    assert metrics.cached_detail(r, x) is not None
    assert metrics.cached_detail(r, x) is None  # handed out once
    detail = layer_detail(r, other)  # computed by numpy, not stale
    assert min(detail["channel_cosine"]) < 0.5


def test_log_approximations():
    from netdiff import _fastmetrics

    values = np.concatenate([np.geomspace(1e-7, 1e7, 5001), 1 + np.linspace(-1e-6, 1e-6, 101)])
    exact = np.log(values)
    nonzero = exact != 0
    got = np.array(_fastmetrics.log_many(values.tolist()))
    assert np.max(np.abs(got - exact)[nonzero] / np.abs(exact[nonzero])) < 1e-14
    got32 = np.array(_fastmetrics.log_many_f32(values.tolist()))
    exact32 = np.log(values.astype(np.float32).astype(np.float64))
    assert np.max(np.abs(got32 - exact32)) < 3e-7 * np.max(np.abs(exact32))
    assert np.max(np.abs(got32 - exact32)[nonzero] / np.maximum(np.abs(exact32[nonzero]), 1e-6)) < 1e-6


def test_kernel_releases_the_gil_threads_agree():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    pairs = [(rng.standard_normal(300_000).astype(np.float32), rng.standard_normal(300_000).astype(np.float32))
             for _ in range(6)]
    serial = [metrics.compute_metrics(r, x) for r, x in pairs]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(lambda p: metrics.compute_metrics(*p), pairs))
    assert [m.as_dict() for m in serial] == [m.as_dict() for m in parallel]
