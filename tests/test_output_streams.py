"""Report outputs to streams: ``-``/``/dev/stdout`` is standard output (the terminal view then goes to
stderr), /dev/null discards, /dev/stderr works; other devices, /proc and /sys stay refused."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from netdiff.cli import main
from netdiff.manifest import write_dump
from netdiff.types import Tensor


@pytest.fixture
def dumps(tmp_path):
    a = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    ref = write_dump([Tensor.from_array("a", a), Tensor.from_array("b", a * 2)], tmp_path / "ref")
    tgt = write_dump([Tensor.from_array("a", a), Tensor.from_array("b", a * 2 + 0.5)], tmp_path / "tgt")
    return ref, tgt


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_json_to_stdout_keeps_the_view_on_stderr(dumps, name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref, tgt = dumps
    assert main(["compare", str(ref), str(tgt), "--json", name]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)  # stdout holds the JSON report alone
    assert [layer["name"] for layer in report["layers"]] == ["a", "b"]
    assert "diverged" in err and "summary" in err
    assert not (tmp_path / "-").exists()


def test_csv_to_stdout_json_to_dev_null_and_stderr(dumps, capsys, tmp_path):
    ref, tgt = dumps
    assert main(["compare", str(ref), str(tgt), "--csv", "-", "--json", "/dev/null", "--html", "/dev/null"]) == 1
    out, _ = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][0] == "Index" and len(rows) == 3
    assert main(["compare", str(ref), str(tgt), "--json", "/dev/stderr"]) == 1
    out, err = capsys.readouterr()
    assert '"layers"' in err and "summary" in out


@pytest.mark.parametrize("argv, message", [
    (["--json", "-", "--csv", "/dev/stdout"], "name the same file"),
    (["--json", "/dev/tty0"], "is under /dev"),
    (["--json", "/proc/self/x.json"], "is under /proc"),
    (["--csv", "/sys/x.csv"], "is under /sys"),
])
def test_other_streams_and_devices_refused(dumps, argv, message, capsys):
    ref, tgt = dumps
    assert main(["compare", str(ref), str(tgt), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_binary_outputs_refuse_stdout():
    from netdiff._io import check_output_file
    from netdiff.errors import NetdiffError

    with pytest.raises(NetdiffError, match="not to a stream"):
        check_output_file("-", "--out")
    check_output_file("/dev/null", "--out")
