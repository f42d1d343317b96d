"""`netdiff compare --html/--model-explorer`, `netdiff report`, and the Model Explorer node data."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from netdiff.cli import main
from netdiff.demo import build_demo
from netdiff.reports.model_explorer import node_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    return build_demo(tmp_path_factory.mktemp("cli-demo"))


def test_compare_writes_html_json_and_node_data_then_report_rerenders(demo, tmp_path):
    html, js, me = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "me.json"
    code = main(["compare", str(demo.model), str(demo.target), "-i", f"input={demo.input}",
                 "--html", str(html), "--json", str(js), "--model-explorer", str(me)])
    assert code == 1  # the planted fault diverges
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    data = json.loads(me.read_text())
    graph = onnx.load(str(demo.model)).graph
    nodes = {n.name for n in graph.node}
    keys = set(data["results"])
    # keyed by the ONNX node names Model Explorer uses as node ids (a model input has no node: its tensor name)
    assert keys == nodes | {i.name for i in graph.input}
    assert data["results"]["/features/conv3/Conv"]["value"] < 0.99 <= data["results"]["/features/conv1/Conv"]["value"]

    again = tmp_path / "again.html"
    assert main(["report", str(js), "--html", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == html.read_text(encoding="utf-8")
    me2 = tmp_path / "me2.json"
    assert main(["report", str(js), "--model-explorer", str(me2), "--graph-id", "main_graph"]) == 0
    assert json.loads(me2.read_text()) == {"main_graph": data}


def test_report_command_rejects_bad_input(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["report", str(bad), "--html", str(tmp_path / "o.html")]) == 2
    assert "x.json" in capsys.readouterr().err
    assert not (tmp_path / "o.html").exists()
    assert main(["report", str(tmp_path / "absent.json")]) == 2


def test_node_data_thresholds_colour_diverged_nodes(make_report):
    report = make_report(10)
    data = node_data(report)
    assert data["name"] == "netdiff cosine"
    values = [t["value"] for t in data["thresholds"]]
    assert values == sorted(values) and values[-1] == 1.0
    assert values[1] < report.thresholds.cosine <= values[2]

    def colour(v: float) -> str | None:  # Model Explorer: first threshold with value <= threshold
        return next((t["bgColor"] for t in data["thresholds"] if v <= t["value"]), None)

    for layer in report.layers:
        value = data["results"][layer.extra["node"]]["value"]
        assert (colour(value) == "#81c784") == (layer.status == "ok")


def test_node_data_keys_and_worst_output(make_report):
    report = make_report(4)
    report.layers[0].extra.pop("node")
    report.layers[2].extra["node"] = report.layers[3].extra["node"] = "split_node"
    report.layers[1].metrics = None
    data = node_data(report)["results"]
    assert report.layers[0].name in data  # no node name known: the tensor name
    assert report.layers[1].extra["node"] not in data  # not compared: no value
    worst = min(report.layers[2].metrics.cosine, report.layers[3].metrics.cosine)
    assert data["split_node"]["value"] == pytest.approx(worst, abs=1e-6)
