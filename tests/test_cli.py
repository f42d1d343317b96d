"""CLI commands: dump, inspect, demo, help."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from netdiff.cli import main
from netdiff.readers import read_dump


def test_dump_writes_every_tensor(tmp_path, cnn_path, cnn_input_path, cnn_reference, capsys):
    out = tmp_path / "ref"
    assert main(["dump", str(cnn_path), "--input", str(cnn_input_path), "--out", str(out)]) == 0
    dump = read_dump(out)
    assert dump.names == cnn_reference.names
    assert dump["/features/conv1/Conv_output_0"].op_type == "Conv"
    assert dump.graph_inputs == ["input"]
    for t in cnn_reference:
        assert np.array_equal(dump[t.name].load(), t.load())
    assert "wrote 15 tensors" in capsys.readouterr().out
    assert main(["dump", str(cnn_path), "--input", str(cnn_input_path), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_dump_then_compare_dump_vs_dump(tmp_path, cnn_path, cnn_input_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["dump", str(cnn_path), "-i", str(cnn_input_path), "--out", str(a)])
    main(["dump", str(cnn_path), "-i", str(cnn_input_path), "--out", str(b)])
    assert main(["compare", str(a), str(b)]) == 0


def test_inspect_model_and_dump(tmp_path, cnn_path, cnn_input_path, capsys):
    assert main(["inspect", str(cnn_path), "-i", str(cnn_input_path)]) == 0
    out = capsys.readouterr().out
    assert "/features/conv1/Conv_output_0" in out and "[1, 16, 32, 32]" in out


def test_inspect_prints_names_from_files_literally(tmp_path, capsys):
    """Tensor names come from files: rich markup in them is text, not styling (nor an error)."""
    d = tmp_path / "dump"
    d.mkdir()
    np.save(d / "[bold]x.npy", np.ones(3, np.float32))
    np.save(d / "[_].npy", np.zeros(2, np.float32))
    assert main(["inspect", str(d)]) == 0
    out = capsys.readouterr().out
    assert "[bold]x" in out and "[_]" in out and "[npy-dir]" in out


def test_inspect_no_stats_lists_a_dynamic_model_without_running_it(capsys):
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "fixtures" / "mtcnn" / "rnet.onnx"
    assert main(["inspect", str(model)]) == 2  # running needs a concrete input
    capsys.readouterr()
    assert main(["inspect", str(model), "--no-stats"]) == 0
    out = capsys.readouterr().out
    assert "not run" in out and "['N', 28, 22, 22]" in out and "convolution_output2" in out


def test_demo_finds_planted_fault(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "first divergence: /features/conv3/Conv_output_0" in out
    assert "planted fault was found" in out
    assert (tmp_path / "r.json").exists() and (tmp_path / "demo" / "small_cnn.onnx").exists()


def test_demo_keeps_its_files_in_the_working_directory_for_a_rerun(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    command = next(line[2:] for line in out.splitlines() if line.startswith("$ netdiff compare "))
    assert command == ("netdiff compare netdiff-demo/small_cnn.onnx netdiff-demo/device_dump --input "
                       "netdiff-demo/input.npy --html netdiff-demo/report.html")
    assert "kept in netdiff-demo/" in out
    demo = tmp_path / "netdiff-demo"
    assert {"small_cnn.onnx", "input.npy", "device_dump", "report.html", "report.json", "NETDIFF-DEMO.txt"} <= {
        p.name for p in demo.iterdir()}
    # the printed command works after the demo exited (exit 1: the target diverges)
    assert main(command.split()[1:]) == 1
    assert "first divergence: /features/conv3/Conv_output_0" in capsys.readouterr().out
    # a second demo overwrites its own folder
    assert main(["demo"]) == 0
    capsys.readouterr()


def test_demo_never_writes_into_a_folder_it_did_not_make(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "netdiff-demo"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "not written by netdiff demo" in err and "--out" in err and "Traceback" not in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_console_script_help_and_no_heavy_imports():
    code = ("import sys; from netdiff.cli import main; rc = main(['--help']); "
            "bad = [m for m in ('onnxruntime', 'onnx', 'scipy', 'numpy') if m in sys.modules]; print('HEAVY', bad); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "compare" in proc.stdout and "HEAVY []" in proc.stdout


def test_debug_flag_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "netdiff", "--debug", "compare", "nope.onnx", "x"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "netdiff", "compare", "nope.onnx", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_demo_falls_back_to_a_kept_temporary_folder_when_the_directory_is_read_only(tmp_path, monkeypatch):
    import netdiff.cli.demo as demo_cli

    def read_only(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(demo_cli, "_claim", read_only)
    monkeypatch.setattr(demo_cli.tempfile, "tempdir", str(tmp_path))
    path, note = demo_cli.demo_dir(None)
    assert path.parent == tmp_path and path.name.startswith("netdiff-demo-") and path.is_dir()
    assert "not writable" in note
