"""Fuzz every reader, the Caffe loader and the ONNX runner: mutated valid inputs give a result or a NetdiffError, never a crash.

CI runs 60 cases per reader; ``NETDIFF_FUZZ_FULL=1`` runs 1,000 (numbers in docs/robustness.md).
"""

from __future__ import annotations

import os

import pytest

from robust_fuzz import fuzz
from robust_seeds import SEEDS

FULL = os.environ.get("NETDIFF_FUZZ_FULL") == "1"
COUNT = int(os.environ.get("NETDIFF_FUZZ_COUNT", "1000" if FULL else "60"))


@pytest.mark.parametrize("reader", sorted(SEEDS))
def test_mutated_dumps_never_crash_or_hang(reader):
    stats = fuzz(reader, COUNT)
    summary = f"{reader}: {stats.cases} cases {stats.counts} in {stats.seconds:.1f} s"
    print(summary)
    details = "\n".join(f"case {f['i']} {f['outcome']} after {f['steps']}:\n{f['detail']}" for f in stats.failures[:5])
    assert stats.counts["crash"] == 0 and stats.counts["hang"] == 0, f"{summary}\n{details}"
    assert stats.cases == COUNT
    # the mutations reach both outcomes: some dumps stay readable, some are refused or partly unreadable
    assert stats.counts["valid"] > 0, summary
    assert stats.counts["error"] + stats.counts["partial"] > 0, summary
