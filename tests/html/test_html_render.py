"""The HTML report's source: self-contained, escaped, small, renderable from partial data."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from netdiff.errors import NetdiffError
from netdiff.reports._html_data import page_data
from netdiff.reports._html_layout import layered_layout
from netdiff.reports.html import embed_json, load_report, render_html, write_html
from netdiff.reports.json import report_from_json, write_json

XSS = "<img src=x onerror=alert(1)>"


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="netdiff-data">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_demo_page_names_the_planted_fault_and_is_self_contained(demo_report):
    html = render_html(demo_report)
    assert "/features/conv3/Conv_output_0" in html
    assert 'id="first-divergence"' in html and "DIVERGED" in html
    # no network: nothing is loaded from anywhere (the only URL is the SVG namespace string in the script)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert re.findall(r"https?://[^\s\"'<>]+", html) == ["http://www.w3.org/2000/svg"]
    assert "@import" not in html and "url(" not in html
    data = _payload(html)
    assert data["first"] == "/features/conv3/Conv_output_0"
    assert len(data["layers"]) == len(demo_report.layers)
    conv3 = next(x for x in data["layers"] if x["name"] == data["first"])
    assert conv3["origin"] is True and conv3["status"] == "diverged"
    assert {"h", "eh", "cc", "hm"} <= set(conv3["d"])
    assert data["graph"] is not None and len(data["graph"]["nodes"]) == len(demo_report.layers)


def test_csp_allows_exactly_the_embedded_script(demo_report):
    html = render_html(demo_report)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]


def test_names_from_files_are_escaped_in_the_source(make_report):
    report = make_report(6, names={2: XSS, 4: "</script><script>alert(2)</script>"})
    report.findings[0] = type(report.findings[0])("x", XSS, "error", f"bad {XSS}", {"k": XSS}, XSS)
    report.reference["path"] = f"/tmp/{XSS}.onnx"
    report.layers[3].op_type = XSS
    html = render_html(report)
    assert XSS not in html
    assert "<script>alert(2)" not in html
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # header/findings, escaped text
    names = [x["name"] for x in _payload(html)["layers"]]
    assert names[2] == XSS and names[4] == "</script><script>alert(2)</script>"


@pytest.mark.parametrize("text", ["</script>", "<!--", "a&b", "\u2028\u2029", "<\u2028>"])
def test_embedded_json_cannot_close_its_script(text):
    out = embed_json({"s": text})
    assert "<" not in out and ">" not in out and "&" not in out
    assert "\u2028" not in out and "\u2029" not in out
    assert json.loads(out) == {"s": text}


def test_200_layer_report_stays_under_2_mb(big_report, tmp_path):
    path = tmp_path / "big.html"
    write_html(big_report, path)
    size = path.stat().st_size
    print(f"200-layer HTML report: {size / 1e6:.2f} MB")
    assert size < 2_000_000
    data = _payload(path.read_text(encoding="utf-8"))
    assert len(data["layers"]) == 200
    assert sum("cc" in x["d"] and len(x["d"]["cc"]) == 512 for x in data["layers"]) > 0


def test_rendering_the_saved_json_gives_the_same_page(demo_report, tmp_path):
    write_json(demo_report, tmp_path / "r.json")
    again = load_report(tmp_path / "r.json")
    assert page_data(again) == page_data(demo_report)
    assert render_html(again) == render_html(demo_report)


def test_missing_and_malformed_detail_shows_what_exists(make_report):
    report = make_report(5)
    report.layers[0].extra.pop("detail")
    report.layers[1].extra["detail"] = {"histogram": {"edges": [0, 1], "reference": [1, 2], "target": [1]},
                                        "error_histogram": "junk", "channel_cosine": [0.5, None, 0.99],
                                        "heatmap": {"values": [[1, 2], [3]]}}
    report.layers[2].extra["detail"] = {"heatmap": {"channel": 1, "shape": [4, 4], "values": [[0.0, None], [2.0, float("inf")]]}}
    report.layers[3].metrics = None
    report.layers[3].status = "missing_in_target"
    report.layers[4].extra["isolated"] = {"cosine": 0.5, "rel_l2": 0.7, "note": "text is skipped"}
    data = page_data(report)
    layers = data["layers"]
    assert "d" not in layers[0]
    assert layers[1]["d"] == {"cc": [0.5, None, 0.99]}
    hm = layers[2]["d"]["hm"]
    assert base64.b64decode(hm["q"]) == bytes([0, 255, 254, 255]) and hm["max"] == 2.0
    assert "m" not in layers[3] and "d" in layers[3]
    assert layers[4]["iso"] == {"cosine": 0.5, "rel_l2": 0.7}
    render_html(report)


def test_load_report_errors_name_the_file(tmp_path):
    with pytest.raises(NetdiffError, match="missing.json"):
        load_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(NetdiffError, match="bad.json: not valid JSON"):
        load_report(bad)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(NetdiffError, match="other.json: not a netdiff JSON report"):
        load_report(other)


def test_report_without_edges_has_no_graph(make_report):
    report = make_report(4)
    for layer in report.layers:
        layer.inputs = ()
    assert page_data(report)["graph"] is None


def test_layout_keeps_chains_on_a_row_and_spreads_branches():
    chain = layered_layout([[], [0], [1], [2]])
    assert chain.x == sorted(chain.x) and len(set(chain.x)) == 4 and len(set(chain.y)) == 1
    diamond = layered_layout([[], [0], [0], [1, 2]])
    assert diamond.x[1] == diamond.x[2] and diamond.y[1] != diamond.y[2]
    assert diamond.x[3] > diamond.x[1]
    cyclic = layered_layout([[2], [0], [1], [9, -1, 3]])  # cycle, bad and self references
    assert len(cyclic.x) == 4 and cyclic.width > 0
    wide = layered_layout([[]] + [[0]] * 50)
    assert len({(x, y) for x, y in zip(wide.x, wide.y)}) == 51  # no overlaps


def test_write_html_is_atomic_and_reports_bad_directories(demo_report, tmp_path):
    from netdiff.errors import OutputError

    with pytest.raises(OutputError):
        write_html(demo_report, tmp_path / "nope" / "r.html")
    path = tmp_path / "r.html"
    write_html(demo_report, path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in Path(tmp_path).iterdir()] == ["r.html"]


def test_report_from_json_roundtrip_keeps_node_names(demo_report):
    again = report_from_json(demo_report.to_dict())
    assert [x.extra.get("node") for x in again.layers] == [x.extra.get("node") for x in demo_report.layers]


def test_noisy_layers_carry_their_expected_noise(make_report):
    report = make_report(6)
    report.layers[2].status = "noisy"
    report.layers[2].expected_rel_l2 = 0.0123
    data = page_data(report)
    assert data["layers"][2]["status"] == "noisy" and data["layers"][2]["exp"] == 0.0123
    assert "exp" not in data["layers"][1]
    assert data["counts"]["noisy"] == 1
    assert 'id="legend-noisy"' in render_html(report)
