"""pytest plugin: a ``netdiff_compare`` fixture and ``--netdiff-report DIR`` for failing comparisons."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netdiff")
    group.addoption("--netdiff-report", action="store", default=None, metavar="DIR",
                    help="Write the JSON report of every failing netdiff comparison into DIR.")


@pytest.fixture
def netdiff_compare(request: pytest.FixtureRequest) -> Any:
    """Return ``assert_close`` bound to this test: failing reports are saved under --netdiff-report."""
    from netdiff.testing import NetdiffAssertionError, assert_close

    out = request.config.getoption("--netdiff-report")
    counter = {"n": 0}

    def run(reference: Any, target: Any, inputs: Any = None, **options: Any):
        try:
            return assert_close(reference, target, inputs, **options)
        except NetdiffAssertionError as e:
            if out:
                counter["n"] += 1
                _save(e.report, Path(out), request.node.nodeid, counter["n"])
            raise

    return run


def _save(report: Any, out: Path, nodeid: str, n: int) -> None:
    from netdiff.reports.json import write_json

    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:120]
    write_json(report, out / f"{stem}-{n}.json")
