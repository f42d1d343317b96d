"""Every reader through the CLI: a broken dump is one line on stderr (file, problem) and exit 2; --debug raises."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.cli import main
from netdiff.errors import NetdiffError
from netdiff.manifest import write_dump
from netdiff.types import Tensor

from robust_seeds import SEEDS


def _break_all(seed) -> None:
    """Cut every file of the seed to 5 bytes (a half-copied dump)."""
    files = [seed.path] if seed.path.is_file() else sorted(p for p in seed.root.rglob("*") if p.is_file())
    for f in files:
        f.write_bytes(f.read_bytes()[:5])


def _argv(seed) -> list[str]:
    if seed.reader == "caffe":
        return [str(seed.path), "--weights", seed.options["weights"]]
    args = [str(seed.path), "--format", seed.reader]
    return args + [x for k, v in seed.options.items() for x in ("-O", f"{k}={v}")]


@pytest.mark.parametrize("reader", sorted(SEEDS))
def test_broken_dump_is_one_line_and_exit_2(tmp_path, reader, capsys):
    seed = SEEDS[reader][0](tmp_path)
    _break_all(seed)
    argv = _argv(seed)
    if reader == "caffe":
        code = main(["inspect", *argv])
    else:  # inspect has no reader options: compare a tiny reference against the broken target
        ref = write_dump([Tensor.from_array("x", np.ones(3, np.float32))], tmp_path / "ref")
        code = main(["compare", str(ref), str(seed.path), "--target-format", reader,
                     *[x for k, v in seed.options.items() for x in ("-O", f"{k}={v}")]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("netdiff: error: "), err
    assert str(tmp_path) in err[0]  # names the file
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("reader", ["npz", "npy-dir", "polygraphy", "netdiff"])
def test_inspect_of_a_broken_dump_and_debug_traceback(tmp_path, reader, capsys):
    seed = SEEDS[reader][0](tmp_path)
    _break_all(seed)
    assert main(["inspect", str(seed.path), "--format", reader]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(NetdiffError):
        main(["--debug", "inspect", str(seed.path), "--format", reader])


def test_inspect_lists_unreadable_tensor_with_its_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the reason follows the full path: a narrow console cuts it off
    seed = SEEDS["msit"][0](tmp_path)
    victim = next(seed.path.glob("relu_1.*.npy"))
    victim.write_bytes(victim.read_bytes()[:-3])
    assert main(["inspect", str(seed.path), "--format", "msit"]) == 0
    out = capsys.readouterr().out
    assert "truncated" in out and "relu_1" in out
