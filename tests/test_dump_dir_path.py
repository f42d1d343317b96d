"""A netdiff dump directory is shown by its own path; the model it came from is meta "dumped_from"."""

from __future__ import annotations

import json

import netdiff
from netdiff.cli import main
from netdiff.dumping import dump_model
from netdiff.readers import read_dump
from netdiff.reports.terminal import render_text


def test_dump_directory_is_shown_by_its_path(tmp_path, cnn_path, cnn_input_path, capsys):
    dump = tmp_path / "mydump"
    dump_model(cnn_path, dump, {"input": cnn_input_path})
    read = read_dump(dump)
    assert read.source == str(dump) and read.meta["dumped_from"] == str(cnn_path)
    report = netdiff.compare(cnn_path, dump, {"input": cnn_input_path})
    assert report.target["path"] == str(dump) and report.meta["target.dumped_from"] == str(cnn_path)
    assert "vs mydump;" in repr(report)  # repr names files by their base name
    text = render_text(report, width=200)
    target_line = next(line for line in text.splitlines() if line.startswith("target"))
    assert str(dump) in target_line and "small_cnn.onnx" not in target_line
    out = tmp_path / "r.json"
    assert main(["compare", str(cnn_path), str(dump), "--input", str(cnn_input_path), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["target"]["path"] == str(dump) and data["meta"]["target.dumped_from"] == str(cnn_path)
    capsys.readouterr()
    assert main(["inspect", str(dump)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"{dump} [netdiff]")
