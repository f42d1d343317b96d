"""The C kernel gives the same numbers whatever -march level it was built for.

Each level this CPU runs (always ``portable``; x86-64-v2/-v3/-v4 when present) is compiled from
netdiff/_fastmetrics.c with setup.py's flags (netdiff/_buildflags.py) into a temporary directory,
imported from there and checked against the numpy path (docs/metrics.md's tolerances) and against
the portable build, so a CPU-dependent result shows up on any machine, not only on the one whose
CPU differs. Correctness only: benchmarks/run.py --build-level times the levels.
"""

from __future__ import annotations

import math
import os
import shutil
import sysconfig
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from netdiff import _buildflags, metrics
from netdiff.types import METRIC_NAMES

CC = (sysconfig.get_config_var("CC") or "cc").split()[0]
pytestmark = pytest.mark.skipif(shutil.which(CC) is None or os.name != "posix", reason="no C compiler")

#: Extremes, counts: exact. Float32-lane values (|x − r|, quotients, KL terms) agree to float32
#: rounding; float64-accumulated sums to float64 rounding (docs/metrics.md).
EXACT = {"ref_min", "ref_max", "target_min", "target_max", "ref_nan", "ref_inf", "target_nan", "target_inf",
         "count", "finite_count"}
F32_LANES = {"max_abs": 1e-7, "mean_abs": 1e-7, "max_rel": 3e-7, "mean_rel": 3e-7}


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """{level: module} for every level this CPU runs, built in parallel."""
    root = tmp_path_factory.mktemp("kernels")

    def build(level):
        out = root / level
        out.mkdir()
        return level, _buildflags.load_kernel(_buildflags.build_kernel(level, str(out)))

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(build, _buildflags.cpu_levels()))


def using(kernel, fn, *args):
    saved = metrics._fast
    metrics._fast = kernel
    try:
        return fn(*args)
    finally:
        metrics._fast = saved


def assert_matches_numpy(fast, ref, narrow: bool) -> None:
    """docs/metrics.md: how closely the kernel follows the float64 numpy path."""
    for key in METRIC_NAMES:
        a, b = getattr(fast, key), getattr(ref, key)
        if isinstance(b, float) and math.isnan(b):
            assert math.isnan(a), key
        elif key in EXACT or (isinstance(b, float) and math.isinf(b)):
            assert a == b, key
        elif key == "kl":
            assert a == pytest.approx(b, rel=1e-5, abs=2e-7 if narrow else 1e-12), key
        elif key == "cosine":
            assert abs(a - b) <= 1e-12, key
            assert 1 - a == pytest.approx(1 - b, rel=1e-6, abs=1e-15), key
        elif narrow and key in F32_LANES:
            assert a == pytest.approx(b, rel=F32_LANES[key], abs=1e-30), key
        elif key.endswith("_std"):  # sqrt(Σv²/n − mean²): float64 cancellation when |mean| ≫ std
            assert a == pytest.approx(b, rel=1e-9), key
        else:
            assert a == pytest.approx(b, rel=1e-10, abs=1e-300), key
    assert fast.notes == ref.notes


def cases():
    rng = np.random.default_rng(16)
    out = []
    for dt in ("float32", "float16", "float64", "f32-f16"):
        for kind in ("noise", "relu", "offset", "scaled", "nan", "tiny_diff"):
            for shape in ((37,), (1, 24, 33, 17), (3000 * 7 + 5,)):
                r = rng.standard_normal(shape) * 2 + 0.5
                x = r + 0.05 * rng.standard_normal(shape)
                if kind == "relu":
                    r, x = np.maximum(r, 0), np.maximum(x, 0)
                elif kind == "offset":
                    r, x = r + 100, x + 100
                elif kind == "scaled":
                    x = r * 3.5
                elif kind == "nan":
                    r.flat[::97] = np.nan
                    x.flat[5::301] = np.inf
                elif kind == "tiny_diff":
                    x = r + 1e-3 * rng.standard_normal(shape)
                rd, xd = (dt, dt) if "-" not in dt else ("float32", "float16")
                out.append(pytest.param(r.astype(rd), x.astype(xd), id=f"{dt}-{kind}-{'x'.join(map(str, shape))}"))
    return out


CASES = cases()


def test_every_level_is_built_and_knows_its_level(kernels):
    assert "portable" in kernels
    for level, kernel in kernels.items():
        assert kernel.BUILD_LEVEL == level


@pytest.mark.parametrize("r, x", CASES)
def test_every_level_matches_numpy_and_portable(kernels, r, x):
    ref = using(None, metrics.compute_metrics, r, x)
    narrow = r.dtype != np.float64 and x.dtype != np.float64
    base = using(kernels["portable"], metrics.compute_metrics, r, x)
    for level, kernel in kernels.items():
        got = using(kernel, metrics.compute_metrics, r, x)
        assert_matches_numpy(got, ref, narrow)
        for key in METRIC_NAMES:  # against the portable build: float64 rounding of the sums at most
            a, b = getattr(got, key), getattr(base, key)
            assert a == b or a == pytest.approx(b, rel=1e-9 if key.endswith("_std") else 1e-12, abs=1e-15), (level, key)
        if narrow and got.finite_count == got.count:  # fixed float32 lanes: bit-identical
            assert [got.kl, got.max_abs, got.mean_abs, got.max_rel, got.mean_rel] == \
                   [base.kl, base.max_abs, base.mean_abs, base.max_rel, base.mean_rel], level


def test_every_level_gives_the_same_detail(kernels):
    from netdiff.detail import layer_detail

    rng = np.random.default_rng(3)
    r = rng.standard_normal((1, 6, 40, 30)).astype(np.float32)
    x = r + np.float32(0.05) * rng.standard_normal(r.shape).astype(np.float32)
    x[0, 4] = r[0, 4] * np.float32(255)  # one scaled channel: its cosine is exactly 1
    details = {}
    for level, kernel in kernels.items():
        using(kernel, metrics.compute_metrics, r, x)
        details[level] = using(kernel, layer_detail, r, x)
    ref = using(None, layer_detail, r, x)
    for level, detail in details.items():
        assert detail["channel_cosine"] == pytest.approx(ref["channel_cosine"], abs=1e-9), level
        assert detail["channel_cosine"][4] == 1.0
        assert detail["histogram"] == details["portable"]["histogram"], level


def test_kl_of_the_reported_case_is_build_independent(kernels):
    """issue 16: kl of float32/float16 data differed between x86-64-v3 and v4 builds (float32 partial
    sums in an order set by the vector width)."""
    rng = np.random.default_rng(2049)
    r = (rng.standard_normal((1, 4, 70000)) * 2 + 0.5).astype(np.float32)
    x = (r.astype(np.float64) + 0.05 * rng.standard_normal(r.shape)).astype(np.float32)
    values = {level: using(kernel, metrics.compute_metrics, r, x).kl for level, kernel in kernels.items()}
    assert len(set(values.values())) == 1, values
    assert values["portable"] == pytest.approx(using(None, metrics.compute_metrics, r, x).kl, rel=1e-5, abs=2e-7)


def test_build_flags():
    assert _buildflags.compile_flags("portable") == _buildflags.BASE_FLAGS
    assert "-ffp-contract=off" in _buildflags.BASE_FLAGS
    assert _buildflags.compile_flags("x86-64-v3")[-1] == "-march=x86-64-v3"
    assert _buildflags.requested_level({"NETDIFF_BUILD_LEVEL": "x86-64-v3"}) == "x86-64-v3"
    assert _buildflags.requested_level({"NETDIFF_PORTABLE_BUILD": "1"}) == "portable"
    assert _buildflags.requested_level({}) == _buildflags.cpu_levels()[-1]
    with pytest.raises(ValueError):
        _buildflags.requested_level({"NETDIFF_BUILD_LEVEL": "native"})


def test_a_kernel_built_from_another_source_is_not_used(kernels, tmp_path, caplog):
    """A stale build (source changed since) is refused with a warning: its numbers could differ."""
    for kernel in kernels.values():
        assert kernel.SOURCE_DIGEST == _buildflags.source_digest()
        assert metrics._current(kernel)
    edited = tmp_path / "_fastmetrics.c"
    edited.write_bytes(open(_buildflags.SOURCE, "rb").read() + b"/* edited */\n")
    (tmp_path / "out").mkdir()
    stale = _buildflags.load_kernel(_buildflags.build_kernel("portable", str(tmp_path / "out"), str(edited)))
    assert stale.SOURCE_DIGEST == _buildflags.source_digest(str(edited)) != _buildflags.source_digest()
    with caplog.at_level("WARNING", logger="netdiff"):
        assert not metrics._current(stale)
    assert "pip install -e ." in caplog.text
