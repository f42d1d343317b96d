"""Usage errors, --version/-h and the nothing-compared verdict: what a new user hits first.

CI also runs this file with the lowest dependency versions pyproject allows (.ci/run).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import netdiff
from netdiff.cli import main


def _netdiff(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiff", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, expected", [
    (["comapre"], "Did you mean 'compare'?"),
    (["compare"], "Missing argument"),
    (["compare", "a.onnx", "b", "--inptu", "x.npy"], "--input"),
    (["compare", "a.onnx", "b", "--cosine-threshold", "abc"], "'abc' is not a valid float"),
    (["inspect", "x", "--no-such-flag"], "No such option"),
])
def test_usage_errors_are_one_line_exit_2(args, expected):
    proc = _netdiff(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("netdiff: error: ") and expected in lines[0]
    assert "-h' for help" in lines[0] and "usage: netdiff" in lines[0]
    assert proc.stdout == ""


def test_version_and_short_help():
    proc = _netdiff("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"netdiff {netdiff.__version__}"
    top = _netdiff("-h")
    assert top.returncode == 0 and "compare" in top.stdout and "--install-completion" in top.stdout
    for command in ("compare", "report", "run", "sensitivity", "inspect"):
        sub = _netdiff(command, "-h")
        assert sub.returncode == 0 and f"Usage: netdiff {command}" in sub.stdout, sub.stderr


def test_shell_completion_completes_commands_and_options():
    import os

    env = {**os.environ, "_NETDIFF_COMPLETE": "complete_bash", "COMP_WORDS": "netdiff compare --cos", "COMP_CWORD": "2"}
    proc = subprocess.run([sys.executable, "-m", "netdiff"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.split() == ["--cosine-threshold"]
    env.update(COMP_WORDS="netdiff sens", COMP_CWORD="1")
    proc = subprocess.run([sys.executable, "-m", "netdiff"], capture_output=True, text=True, env=env)
    assert proc.stdout.split() == ["sensitivity"]


def _unmatched_target(tmp_path):
    target = tmp_path / "device"
    target.mkdir()
    np.save(target / "blob_a.npy", np.ones((1, 3), np.float32))
    np.save(target / "blob_b.npy", np.zeros(4, np.float32))
    return target


def test_nothing_compared_is_a_failure_with_a_reason(tmp_path, cnn_path, cnn_input_path, capsys):
    target = _unmatched_target(tmp_path)
    out = tmp_path / "r.json"
    assert main(["compare", str(cnn_path), str(target), "-i", str(cnn_input_path), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "NOTHING COMPARED" in text and "--map" in text
    summary = json.loads(out.read_text())["summary"]
    assert summary["verdict"] == "nothing_compared" and summary["compared"] == 0
    reason = summary["reason"]
    assert "\n" not in reason and "--map" in reason
    assert "'blob_a'" in reason and "'input'" in reason and "and 12 more" in reason

    assert main(["report", str(out)]) == 0 and "NOTHING COMPARED" in capsys.readouterr().out
    matched = main(["compare", str(cnn_path), str(cnn_path), "-i", str(cnn_input_path), "--json", str(out)])
    assert matched == 0 and json.loads(out.read_text())["summary"]["reason"] is None


def test_nothing_compared_through_the_python_api(tmp_path, cnn_path, cnn_input_path):
    from netdiff.testing import NetdiffAssertionError, assert_close

    target = _unmatched_target(tmp_path)
    report = netdiff.compare(cnn_path, target, cnn_input_path)
    assert report.nothing_compared and report.failed and not bool(report)
    assert report.verdict == "nothing_compared" and not report.diverged
    with pytest.raises(NetdiffAssertionError, match="nothing compared.*--map"):
        assert_close(cnn_path, target, cnn_input_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    np.save(partial / "input.npy", np.load(cnn_input_path))
    assert_close(cnn_path, partial, cnn_input_path)  # the input alone was compared: passes
    with pytest.raises(NetdiffAssertionError, match="requested layer.*probs"):
        assert_close(cnn_path, partial, cnn_input_path, layers=["probs"])  # the one layer asked for was not


def test_report_all_shows_every_layer(tmp_path, cnn_path, cnn_input_path, capsys):
    out = tmp_path / "r.json"
    main(["demo", "--out", str(tmp_path / "demo"), "--json", str(out)])
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    default = capsys.readouterr().out
    assert main(["report", str(out), "--all"]) == 0
    full = capsys.readouterr().out
    assert "not shown (--all)" in default and "not shown" not in full
    assert all(re.search(rf"^\s*{i} ", full, re.M) for i in range(15))
    cosines = re.findall(r"cosine (-?\d+\.\d+)", full)  # findings and summary: the table's 5 decimals
    assert len(cosines) >= 2 and all(len(c.split(".")[1]) == 5 for c in cosines), cosines


def test_verbosity_and_log_file(tmp_path, cnn_path, capsys):
    log = tmp_path / "netdiff.log"
    assert main(["--log-file", str(log), "compare", str(cnn_path), str(cnn_path)]) == 0
    err = capsys.readouterr().err
    assert "netdiff: warning: no input given" in err  # the default level shows warnings
    assert "WARNING netdiff.inputs: no input given" in log.read_text()
    assert "INFO netdiff.pipeline: aligned 15 tensor pairs" in log.read_text()  # the file takes every level
    assert "aligned" not in err
    assert main(["-v", "compare", str(cnn_path), str(cnn_path)]) == 0
    assert "netdiff: info: aligned 15 tensor pairs (0 target-only)" in capsys.readouterr().err
    assert main(["-q", "compare", str(cnn_path), str(cnn_path)]) == 0
    assert "no input given" not in capsys.readouterr().err
    assert main(["--log-file", str(tmp_path / "no" / "such" / "dir.log"), "compare", "a", "b"]) == 2
    assert "--log-file" in capsys.readouterr().err


def test_help_is_grouped_with_metavars_that_say_what_is_expected():
    proc = _netdiff("compare", "-h")
    text = proc.stdout
    sections = [line.rstrip(":") for line in text.splitlines() if line and not line[0].isspace() and line.endswith(":")]
    assert sections[:1] == ["Arguments"] and {"Inputs", "Alignment", "Thresholds", "Diagnosis", "Outputs",
                                              "Formats"} <= set(sections)
    assert "--input NAME=FILE" in text and "--isolated [origins|all|none]" in text and "--map FILE.json" in text
    assert "-O, --option, --target-option KEY=VALUE" in text
    for command in ("compare", "run", "sensitivity", "inspect", "simulate", "report", "dump", "lint"):
        assert "<str>" not in _netdiff(command, "-h").stdout, command


@pytest.mark.parametrize("flag", ["-O", "--option", "--target-option"])
def test_target_reader_option_keeps_its_old_spelling(flag, tmp_path, cnn_path, cnn_input_path, capsys):
    from netdiff.cli import main as run

    # every spelling reaches the target's runner, which refuses an option it does not take
    assert run(["compare", str(cnn_path), str(cnn_path), "-i", str(cnn_input_path), flag, "side=runtime"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("option(s) side do not apply to runner 'onnx' (it takes none)") and len(err.splitlines()) == 1


def test_hwc_input_for_an_nchw_model_says_how_to_transpose(tmp_path, cnn_path, cnn_input_path, capsys):
    x = np.load(cnn_input_path)
    np.save(tmp_path / "hwc.npy", x[0].transpose(1, 2, 0))
    assert main(["compare", str(cnn_path), str(cnn_path), "-i", str(tmp_path / "hwc.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert "looks like HWC (channels last)" in err and "np.transpose(x, (2, 0, 1))" in err and len(err.splitlines()) == 1
    np.save(tmp_path / "u8.npy", np.clip(x * 50 + 128, 0, 255).astype(np.uint8))
    main(["compare", str(cnn_path), str(cnn_path), "-i", str(tmp_path / "u8.npy")])
    err = capsys.readouterr().err
    assert err.count("uint8 data cast to float32") == 1  # once, although both sides run it
    np.save(tmp_path / "f64.npy", x.astype(np.float64))
    assert main(["compare", str(cnn_path), str(cnn_path), "-i", str(tmp_path / "f64.npy")]) == 0
    assert "float64 data cast to float32" in capsys.readouterr().err


def test_dump_vs_dump_findings_have_no_placeholders(tmp_path, cnn_reference):
    from netdiff.manifest import write_dump
    from netdiff.reports.terminal import render_text
    from netdiff.types import Tensor

    conv3 = "/features/conv3/Conv_output_0"
    rng = np.random.default_rng(0)
    for graph in (False, True):  # a dump with no graph, and one whose tensors name their inputs but no op
        def tensor(t, value):
            return Tensor.from_array(t.name, value, inputs=tuple(t.inputs) if graph else ())

        plain = [tensor(t, np.array(t.load())) for t in cnn_reference]
        bad = [tensor(t, np.array(t.load()) + (rng.normal(0, 1, t.shape).astype(np.float32) if t.name == conv3 else 0))
               for t in cnn_reference]
        report = netdiff.compare(write_dump(plain, tmp_path / f"a{graph}"), write_dump(bad, tmp_path / f"b{graph}"))
        assert report.diverged and report.findings
        for width in (80, 120):
            text = render_text(report, width=width)
            assert "None" not in text and "(layer)" not in text, text


def test_grouped_command_gives_untyped_options_plain_metavars():
    import typer
    from typer.testing import CliRunner

    from netdiff.cli._help import GroupedCommand

    demo = typer.Typer(rich_markup_mode=None, add_completion=False)  # plain help, as netdiff

    @demo.command(cls=GroupedCommand)
    def only(count: int = typer.Option(1, "--count", rich_help_panel="Inputs"),
             path: str = typer.Option("x", "--where"), flag: bool = typer.Option(False, "--flag")) -> None:
        """A command."""

    text = CliRunner().invoke(demo, ["--help"]).output
    assert "--count N" in text and "--where TEXT" in text and "--flag" in text and "<" not in text
    assert text.index("Inputs:") < text.index("Other options:")
