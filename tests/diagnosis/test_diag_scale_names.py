"""Scale factors are named exactly: 1/255, 1/256, 1/128 and 1/127.5 are different preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

import netdiff
from netdiff.diagnosis._common import describe_factor, name_constant
from netdiff.runners.onnxrt import OnnxModel


@pytest.mark.parametrize("value,label", [(1 / 255, "1/255"), (1 / 256, "1/256"), (1 / 128, "1/128"),
                                         (1 / 127.5, "1/127.5"), (255.0, "255"), (256.0, "256"), (128.0, "128"),
                                         (127.5, "127.5"), (4096.0, "4096 (Q12)"), (8.0, "2^3"), (0.7, None)])
def test_closest_constant_wins(value, label):
    assert name_constant(value) == label
    assert name_constant(value * 1.001) == label  # a slightly noisy fit keeps its name


def test_fitted_value_is_shown():
    assert describe_factor(1 / 256) == "1/256 (fitted 0.00390625)"
    assert describe_factor(0.7) == "0.7"


@pytest.mark.parametrize("factor,label", [(1 / 256, "1/256"), (1 / 255, "1/255")])
def test_input_scale_names_256_and_255_apart(cnn_path, cnn_input_path, factor, label):
    model = OnnxModel(cnn_path)
    x = np.load(cnn_input_path)
    target = model.run({"input": (x * factor).astype(np.float32)})
    report = netdiff.compare(model, target, {"input": x})
    finding = next(f for f in report.findings if f.kind == "input_scale")
    assert f"{label} (fitted " in finding.message and finding.evidence["factor_named"] == label


def test_a_label_with_a_note_keeps_one_parenthesis():
    assert describe_factor(4096.0) == "4096 (Q12, fitted 4096)"
