"""Small ONNX fixtures for the NNIE tests (imported by test modules; not a test file)."""

from __future__ import annotations

import numpy as np


def small_cnn(outlier: bool = False, seed: int = 0):
    """conv1 -> BN -> ReLU -> conv2 -> ReLU -> conv3 -> GAP -> FC -> Softmax (input 1x3x16x16).

    With ``outlier``, conv2's weights hold one value of 60 (vs std 0.15) on an input channel that
    conv1 kills (bias -100): per-tensor 8-bit log quantization flushes most of conv2's other weights.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    w1 = rng.normal(0, 0.3, (8, 3, 3, 3))
    b1 = rng.normal(0, 0.1, 8)
    w2 = rng.normal(0, 0.15, (8, 8, 3, 3))
    w3 = rng.normal(0, 0.15, (8, 8, 3, 3))
    if outlier:
        w2[0, 0, 1, 1] = 60.0
        b1[0] = -100.0
    inits = [init("w1", w1), init("b1", b1), init("g", rng.uniform(0.5, 1.5, 8)), init("be", rng.normal(0, 0.1, 8)),
             init("mu", rng.normal(0, 0.1, 8)), init("var", rng.uniform(0.5, 1.5, 8)), init("w2", w2),
             init("b2", np.zeros(8)), init("w3", w3), init("b3", np.zeros(8)),
             init("fw", rng.normal(0, 0.5, (8, 5))), init("fb", np.zeros(5))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn1"], name="bn1"),
             helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c3"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=1)]
    graph = helper.make_graph(nodes, "nnie_small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def feeds(seed: int = 1, count: int = 1):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(count)]
