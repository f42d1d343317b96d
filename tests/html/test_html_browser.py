"""The HTML report in headless Chromium: its self-test passes, data stays text, screenshots saved."""

from __future__ import annotations

import html
import math
import re
import time
from urllib.parse import quote, unquote

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
    assert _detail_name(dom) == "/features/conv3/Conv_output_0"
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


def _detail_name(dom: str) -> str:
    m = re.search(r'id="detail-name">(.*?)</h3>', dom, re.S)
    assert m, "no detail panel"
    return html.unescape(m.group(1).replace("<wbr>", ""))


def test_selected_layer_is_in_the_url_and_restored_from_it(demo_report, browser, tmp_path):
    page = tmp_path / "demo.html"
    write_html(demo_report, page)
    bn3 = "/features/bn3/BatchNormalization_output_0"
    # a shared link opens that layer (not the first divergence)
    assert _detail_name(browser.dump_dom(page, "#layer=" + quote(bn3, safe="/"))) == bn3
    assert _detail_name(browser.dump_dom(page, "#layer=" + quote(bn3, safe=""))) == bn3
    assert _detail_name(browser.dump_dom(page, "#layer=probs")) == "probs"
    assert _detail_name(browser.dump_dom(page, "#layer=no-such-layer")) == demo_report.first_divergence
    # selecting writes the hash: after the self-test the page reselects the hash's layer and records the URL
    result, dom = browser.selftest(page, "&layer=" + quote(bn3, safe="/"))
    _assert_selftest(result, len(demo_report.layers))
    names = {c["name"] for c in result["checks"]}
    assert {"selection written to the URL hash", "the hash restores the selection", "arrow keys move the selection",
            "the selected row is in the tab order"} <= names
    assert _detail_name(dom) == bn3
    hash_ = re.search(r'data-hash="([^"]*)"', dom).group(1)
    assert unquote(html.unescape(hash_)) == "#layer=" + bn3


def test_chart_axis_names_layers_with_round_ticks(demo_report, make_report, browser, tmp_path):
    page = tmp_path / "demo.html"
    write_html(demo_report, page)
    dom = browser.dump_dom(page)
    labels = [html.unescape(t) for t in re.findall(r'class="xlabel"[^>]*>([^<]*)<title>', dom)]
    assert "conv3/Conv" in labels and "input" in labels and "probs" in labels
    assert not any(re.fullmatch(r"#\d+", t) for t in labels)
    for cls in ("ytick", "ytick2"):
        ticks = [float(t) for t in re.findall(rf'class="{cls}"[^>]*>([^<]*)<', dom)]
        assert len(ticks) >= 3, (cls, ticks)
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
        assert len(steps) == 1, (cls, ticks)  # evenly spaced
        step = abs(steps.pop())
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5)), (cls, ticks)  # 1, 2 or 5 × 10^k
        assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks), (cls, ticks)
    # 60 layers named <block>/conv/Conv: the chart and the graph tell them apart
    names = {i: f"/blocks.{i}/conv/Conv_output_0" for i in range(60)}
    page = tmp_path / "convs.html"
    convs = make_report(60, names=names)
    for layer in convs.layers:
        layer.op_type = "Conv"
    write_html(convs, page)
    dom = browser.dump_dom(page)
    nodes = [html.unescape(t) for t in re.findall(r'class="nlabel"[^>]*>([^<]*)<', dom)]
    assert len(nodes) == 60 and len(set(nodes)) == 60 and "blocks.7/conv" in nodes
    labels = [html.unescape(t) for t in re.findall(r'class="xlabel"[^>]*>([^<]*)<title>', dom)]
    assert len(labels) > 10 and len(set(labels)) == len(labels) and "blocks.12/conv/Conv" in labels


def test_report_at_800_pixels(big_report, demo_report, browser, artifacts, tmp_path):
    for name, report in (("demo", demo_report), ("big", big_report)):
        page = tmp_path / f"{name}.html"
        write_html(report, page)
        result, _ = browser.selftest(page, size="800,1000")
        _assert_selftest(result, len(report.layers))
        assert {"names wrap only at separators", "no sideways scrolling of the page"} <= {c["name"] for c in result["checks"]}
        print(f"screenshot: {browser.screenshot(page, artifacts / f'{name}-report-800px.png', size='800,2400')}")
