"""The HTML report in headless Chromium: its self-test passes, data stays text, screenshots saved."""

from __future__ import annotations

import re
import time

import pytest

from netdiff.reports.html import write_html

pytestmark = pytest.mark.browser
XSS = "<img src=x onerror=alert(1)>"


def _assert_selftest(result: dict, layers: int) -> None:
    failed = [c for c in result["checks"] if not c["ok"]]
    assert not failed, f"self-test failures: {failed}; errors: {result['errors']}"
    assert result["ok"] and result["errors"] == [] and result["layers"] == layers
    names = {c["name"] for c in result["checks"]}
    assert {"one table row per layer", "chart click opens that layer", "no script errors"} <= names


def test_demo_report_in_chromium(demo_report, browser, artifacts, tmp_path):
    page = tmp_path / "demo.html"
    write_html(demo_report, page)
    result, dom = browser.selftest(page)
    _assert_selftest(result, len(demo_report.layers))
    names = {c["name"] for c in result["checks"]}
    assert {"first divergence shown", "chart click opens the first divergence", "graph click opens that layer"} <= names
    # the page selected the first divergence on load and shows its detail
    assert 'id="detail-name">/features/conv3/Conv_output_0</h3>' in dom
    assert len(re.findall(r'<tr[^>]*data-index="', dom)) == len(demo_report.layers)
    shot = browser.screenshot(page, artifacts / "demo-report.png")
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 20_000


def test_hostile_layer_name_is_shown_as_text(make_report, browser, artifacts, tmp_path):
    report = make_report(8, names={3: XSS})
    report.first_divergence = report.origins[0] = XSS
    report.layers[3].introduced = True
    page = tmp_path / "xss.html"
    write_html(report, page)
    result, dom = browser.selftest(page)
    _assert_selftest(result, 8)
    assert "<img" not in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert 'id="detail-name">&lt;img src=x onerror=alert(1)&gt;</h3>' in dom
    print(f"screenshot: {browser.screenshot(page, artifacts / 'xss-report.png')}")


def test_200_layer_report_in_chromium(big_report, browser, artifacts, tmp_path):
    page = tmp_path / "big.html"
    write_html(big_report, page)
    start = time.perf_counter()
    result, _ = browser.selftest(page)
    print(f"200-layer report: chromium load + self-test {time.perf_counter() - start:.1f} s, "
          f"{page.stat().st_size / 1e6:.2f} MB")
    _assert_selftest(result, 200)
    print(f"screenshot: {browser.screenshot(page, artifacts / 'big-report.png')}")
