"""A ResNet-18-shaped ONNX model built with the onnx helper API (random He-initialised weights)."""

from __future__ import annotations

from typing import Any

from netdiff.samples import GraphBuilder


def _block(g: GraphBuilder, x: str, cin: int, cout: int, stride: int, name: str) -> str:
    y = g.node("Relu", [g.batchnorm(g.conv(x, cin, cout, f"{name}/conv1", stride=stride), cout, f"{name}/bn1")],
               f"{name}/relu1/Relu")
    y = g.batchnorm(g.conv(y, cout, cout, f"{name}/conv2"), cout, f"{name}/bn2")
    if stride != 1 or cin != cout:
        x = g.batchnorm(g.conv(x, cin, cout, f"{name}/downsample/0", k=1, stride=stride), cout, f"{name}/downsample/1")
    return g.node("Relu", [g.node("Add", [y, x], f"{name}/Add")], f"{name}/relu2/Relu")


def resnet18(seed: int = 0) -> Any:
    """ResNet-18 topology at 1x3x224x224 -> 1x1000."""
    import numpy as np
    from onnx import TensorProto, helper

    g = GraphBuilder(seed)
    x = g.node("Relu", [g.batchnorm(g.conv("input", 3, 64, "/conv1", k=7, stride=2), 64, "/bn1")], "/relu/Relu")
    x = g.node("MaxPool", [x], "/maxpool/MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if block == 0 and stage > 1 else 1
            x = _block(g, x, cin, cout, stride, f"/layer{stage}/{block}")
            cin = cout
    x = g.node("GlobalAveragePool", [x], "/avgpool/GlobalAveragePool")
    x = g.node("Flatten", [x], "/Flatten", axis=1)
    w = g.weight("fc.weight", g.rng.standard_normal((1000, 512)) * np.sqrt(1.0 / 512))
    b = g.weight("fc.bias", np.zeros(1000))
    g.nodes.append(helper.make_node("Gemm", [x, w, b], ["logits"], name="/fc/Gemm", transB=1))
    return g.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], "resnet18")
