"""The block fold of the layer statistics (LayerTable) equals LayerStats.add sample by sample."""

from __future__ import annotations

import math

import numpy as np

from netdiff.dataset.stats import BINS, HIGH, LOW, PER_DECADE, LayerStats, LayerTable, log_bin, log_bins


def test_log_bins_is_log_bin_of_every_value():
    rng = np.random.default_rng(0)
    edges = LOW * 10.0 ** (np.arange(BINS) / PER_DECADE)  # values at and around the bin edges
    values = np.concatenate([10.0 ** rng.uniform(-11, 4, 5000), edges, np.nextafter(edges, 0), np.nextafter(edges, 1),
                             [0.0, -1.0, -0.0, LOW, HIGH, np.inf, -np.inf, np.nan, 5e-324, 1e308]])
    np.testing.assert_array_equal(log_bins(values), [log_bin(float(v)) for v in values])
    np.testing.assert_array_equal(log_bins(values[:700].reshape(100, 7)),
                                  np.array([log_bin(float(v)) for v in values[:700]]).reshape(100, 7))


def _samples(rng, count, layers):
    cosine = 1.0 - 10.0 ** rng.uniform(-9, 0.3, (count, layers))
    rel = 10.0 ** rng.uniform(-8, 1, (count, layers))
    cosine[rng.random((count, layers)) < 0.05] = np.nan
    rel[rng.random((count, layers)) < 0.05] = np.nan
    cosine[rng.random((count, layers)) < 0.05] = 1.0
    cosine[::7, 2] = 0.25  # ties: the first sample of the lowest is kept
    rel[::5, 3] = np.inf
    status = rng.choice(["ok", "diverged", "noisy", "error"], (count, layers), p=[0.6, 0.25, 0.1, 0.05]).tolist()
    firsts = [None if rng.random() < 0.4 else int(rng.integers(layers)) for _ in range(count)]
    return cosine, rel, status, firsts


def test_layer_table_is_the_sample_by_sample_fold():
    rng = np.random.default_rng(1)
    layers, count = 6, 300
    cosine, rel, status, firsts = _samples(rng, count, layers)
    cosine[:, 5] = np.nan  # a layer never defined
    ids = [f"s{k:03d}" for k in range(count)]
    expected = [LayerStats() for _ in range(layers)]
    for k in range(count):
        for i, stats in enumerate(expected):
            stats.add(ids[k], float(cosine[k, i]), float(rel[k, i]), status[k][i], i == firsts[k])
    table = LayerTable(layers)
    start = 0
    for size in (1, 16, 3, 16, 100, 0, 164):  # blocks of any size, in sample order
        stop = start + size
        table.add_block(ids[start:stop], cosine[start:stop], rel[start:stop], status[start:stop], firsts[start:stop])
        start = stop
    assert start == count
    for i in range(layers):
        got, want = table.layer(i), expected[i]
        assert repr(got.as_dict()) == repr(want.as_dict())  # NaN-safe, bit-for-bit floats
        np.testing.assert_array_equal(got.cosine_hist, want.cosine_hist)
        np.testing.assert_array_equal(got.rel_hist, want.rel_hist)
        assert got.first_divergence_worst == want.first_divergence_worst
        assert got.sum_cosine == want.sum_cosine or (math.isnan(got.sum_cosine) and math.isnan(want.sum_cosine))


def test_empty_layer_table_matches_fresh_stats():
    table = LayerTable(2)
    table.add_block([], np.zeros((0, 2)), np.zeros((0, 2)), [], [])
    assert repr(table.layer(1).as_dict()) == repr(LayerStats().as_dict())
