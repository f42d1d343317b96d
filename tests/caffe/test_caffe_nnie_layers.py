"""The NNIE simulators run a Caffe layer translated into several nodes (SSD Normalize) as one layer."""

from __future__ import annotations

import numpy as np
import pytest

from caffe_testkit import write_model
from netdiff.simulators.run import run_simulated, simulate

NORMALIZE_NET = """name: "ssd_conv4_3_norm"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "norm" type: "Normalize" bottom: "conv" top: "norm" norm_param { across_spatial: false channel_shared: false } }
layer { name: "out" type: "Convolution" bottom: "norm" top: "out" convolution_param { num_output: 4 kernel_size: 1 } }
"""


@pytest.fixture()
def normalize_net(tmp_path):
    rng = np.random.default_rng(0)
    weights = {"conv": [rng.standard_normal((8, 3, 3, 3)).astype(np.float32), (rng.standard_normal(8) * 0.1).astype(np.float32)],
               "norm": [np.full(8, 20.0, np.float32)],  # SSD's conv4_3_norm scale
               "out": [rng.standard_normal((4, 8, 1, 1)).astype(np.float32), np.zeros(4, np.float32)]}
    return write_model(tmp_path, NORMALIZE_NET, weights)


@pytest.mark.parametrize("kind", ["nnie8", "nnie16"])
def test_normalize_runs_as_one_layer_without_nan(normalize_net, kind):
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    sim = simulate(normalize_net, kind, {"data": x})
    assert all(np.all(np.isfinite(t.load())) for t in sim.target)
    assert "norm/Div3" not in sim.target and sim.target["norm"].meta["layer_nodes"][0] == "ReduceSumSquare"
    report = run_simulated(normalize_net, kind, {"data": x})
    norm = report.layer("norm")
    assert norm.metrics.target_nan == 0 and norm.metrics.cosine > 0.999
    assert not any(f.kind == "nan_inf" for f in report.findings)
    assert not report.failed
