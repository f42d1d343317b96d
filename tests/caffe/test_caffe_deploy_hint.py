"""A train_test prototxt (Data layers, no Input) gets the deploy hint in every command, with or without --input."""

from __future__ import annotations

import numpy as np
import pytest

from caffe_testkit import write_model
from netdiff.cli import main

TRAIN_TEST = """name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  data_param { source: "train_lmdb" batch_size: 64 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  data_param { source: "test_lmdb" batch_size: 100 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv1" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("with_input", [False, True])
@pytest.mark.parametrize("command", ["dump", "compare", "inspect"])
def test_train_test_prototxt_gets_the_deploy_hint(tmp_path, capsys, command, with_input):
    rng = np.random.default_rng(0)
    proto = write_model(tmp_path, TRAIN_TEST, {"conv1": [rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
                                                         np.zeros(2, np.float32)]})
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 8, 8), np.float32))
    target = tmp_path / "target"
    target.mkdir()
    np.save(target / "data.npy", np.zeros((1, 1, 8, 8), np.float32))
    args = {"dump": ["dump", str(proto), "--out", str(tmp_path / "out")],
            "compare": ["compare", str(proto), str(target)], "inspect": ["inspect", str(proto)]}[command]
    if with_input and command != "inspect":
        args += ["--input", str(x)]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert "training-only layer; use the deploy prototxt" in err and "0 inputs" not in err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err
