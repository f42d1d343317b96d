"""pytest plugin: a ``netdiff_compare`` fixture and ``--netdiff-report DIR`` for failing comparisons.

netdiff's own frames are hidden from tracebacks (``__tracebackhide__``), so a failure points at
the test's line; its message keeps the table of failing layers and the fix. With
``--netdiff-report DIR``, every test failing on a :class:`~netdiff.testing.NetdiffAssertionError`
(from the fixture or from ``assert_close`` called directly) saves the JSON and HTML reports into
DIR, and the failure message names both files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netdiff")
    group.addoption("--netdiff-report", action="store", default=None, metavar="DIR",
                    help="Write the JSON and HTML reports of every failing netdiff comparison into DIR.")


@pytest.fixture
def netdiff_compare(request: pytest.FixtureRequest) -> Any:
    """Return :func:`netdiff.testing.assert_close` for this test (failures point at the test's line)."""
    from netdiff.testing import assert_close

    def run(reference: Any, target: Any, inputs: Any = None, **options: Any):
        __tracebackhide__ = True
        return assert_close(reference, target, inputs, **options)

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Save the reports of a netdiff failure before pytest formats its message, and name them in it."""
    out = item.config.getoption("--netdiff-report")
    if out and call.excinfo is not None:
        _save_failure(call.excinfo.value, Path(out), item.nodeid)
    yield


def _save_failure(error: BaseException, out: Path, nodeid: str) -> None:
    from netdiff.testing import NetdiffAssertionError

    if not isinstance(error, NetdiffAssertionError) or getattr(error, "saved", None):
        return
    from netdiff.errors import NetdiffError

    message = error.args[0] if error.args else ""
    try:
        paths = save_reports(error.report, out, nodeid)
    except (OSError, NetdiffError) as e:  # never turn a test failure into a pytest internal error
        error.saved = True  # type: ignore[attr-defined]
        error.args = (f"{message}\nnetdiff reports: not written to {out} ({e})", *error.args[1:])
        return
    error.saved = paths  # type: ignore[attr-defined]
    error.args = (f"{message}\nnetdiff reports: {paths[1]} (HTML), {paths[0]} (JSON)", *error.args[1:])


def save_reports(report: Any, out: Path, nodeid: str) -> tuple[Path, Path]:
    """Write ``<test id>.json`` and ``<test id>.html`` into ``out`` (atomically); return both paths."""
    from netdiff.reports.html import write_html
    from netdiff.reports.json import write_json

    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:120] or "netdiff"
    json_path, html_path = out / f"{stem}.json", out / f"{stem}.html"
    write_json(report, json_path)
    write_html(report, html_path)
    return json_path.resolve(), html_path.resolve()
