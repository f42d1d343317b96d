"""Small, deterministic sample models and inputs (for the demo, tests and benchmarks).

Built with the onnx helper API and seeded He-initialised weights, named the way a PyTorch
export names them (``/features/conv1/Conv``), so activations and names look like real ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netdiff._lazy import lazy_import

onnx = lazy_import("onnx")
helper = lazy_import("onnx.helper")
numpy_helper = lazy_import("onnx.numpy_helper")

OPSET = 17


class GraphBuilder:
    """Tiny helper to build an ONNX graph node by node with seeded weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, name: str, k: int = 3, stride: int = 1, group: int = 1) -> str:
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.05
        wn = self.weight(f"{name}.weight", w)
        bn = self.weight(f"{name}.bias", b)
        return self.node("Conv", [x, wn, bn], f"{name}/Conv", kernel_shape=[k, k], strides=[stride, stride],
                         pads=[k // 2] * 4, group=group)

    def batchnorm(self, x: str, c: int, name: str) -> str:
        scale = self.weight(f"{name}.weight", 1.0 + 0.1 * self.rng.standard_normal(c))
        bias = self.weight(f"{name}.bias", 0.1 * self.rng.standard_normal(c))
        mean = self.weight(f"{name}.running_mean", 0.2 * self.rng.standard_normal(c))
        var = self.weight(f"{name}.running_var", 0.5 + self.rng.random(c))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], f"{name}/BatchNormalization", epsilon=1e-5)

    def model(self, inputs: list[Any], outputs: list[Any], name: str) -> Any:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netdiff-samples")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def small_cnn(seed: int = 0) -> Any:
    """A small CNN classifier: input ``input`` [1,3,32,32] -> ``probs`` [1,10]."""
    from onnx import TensorProto

    g = GraphBuilder(seed)
    x = "input"
    x = g.node("Relu", [g.conv(x, 3, 16, "/features/conv1")], "/features/relu1/Relu")
    x = g.node("Relu", [g.conv(x, 16, 32, "/features/conv2", stride=2)], "/features/relu2/Relu")
    x = g.node("MaxPool", [x], "/features/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    x = g.batchnorm(g.conv(x, 32, 32, "/features/conv3"), 32, "/features/bn3")
    x = g.node("Relu", [x], "/features/relu3/Relu")
    x = g.node("Relu", [g.conv(x, 32, 32, "/features/conv4", k=1)], "/features/relu4/Relu")
    x = g.node("GlobalAveragePool", [x], "/pool/GlobalAveragePool")
    x = g.node("Flatten", [x], "/Flatten", axis=1)
    w = g.weight("classifier.weight", g.rng.standard_normal((10, 32)) * np.sqrt(1.0 / 32))
    b = g.weight("classifier.bias", g.rng.standard_normal(10) * 0.05)
    x = g.node("Gemm", [x, w, b], "/classifier/Gemm", transB=1)
    g.nodes.append(helper.make_node("Softmax", [x], ["probs"], name="/Softmax", axis=1))
    return g.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                   [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])], "small_cnn")


def detection_head(seed: int = 1) -> Any:
    """A small detector: input ``images`` [1,3,64,64] -> ``scores`` [1,6,8,8] (sigmoid), ``boxes`` [1,4,8,8]."""
    from onnx import TensorProto

    g = GraphBuilder(seed)
    x = "images"
    x = g.node("Relu", [g.conv(x, 3, 16, "/backbone/conv1", stride=2)], "/backbone/act1/Relu")
    x = g.node("Relu", [g.conv(x, 16, 32, "/backbone/conv2", stride=2)], "/backbone/act2/Relu")
    x = g.node("Relu", [g.conv(x, 32, 32, "/backbone/conv3", stride=2)], "/backbone/act3/Relu")
    cls = g.conv(x, 32, 6, "/head/cls", k=1)
    g.nodes.append(helper.make_node("Sigmoid", [cls], ["scores"], name="/head/cls/Sigmoid"))
    box = g.conv(x, 32, 4, "/head/box", k=1)
    g.nodes.append(helper.make_node("Identity", [box], ["boxes"], name="/head/box/Identity"))
    return g.model([helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 6, 8, 8]),
                    helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 8, 8])], "detection_head")


def natural_image(height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like RGB uint8 image (HWC): smooth gradients, blobs and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.zeros((height, width, 3))
    img[..., 0] = 0.6 * xx + 0.3 * np.sin(6 * yy)
    img[..., 1] = 0.5 * yy + 0.2 * np.cos(5 * xx + 2 * yy)
    img[..., 2] = 0.4 + 0.3 * np.sin(4 * (xx + yy))
    for _ in range(4):
        cy, cx, r = rng.random(), rng.random(), 0.1 + 0.2 * rng.random()
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r))
        img += blob[..., None] * (rng.random(3) - 0.3)
    img += 0.03 * rng.standard_normal(img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(image: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
               ) -> np.ndarray:
    """RGB uint8 HWC -> float32 NCHW, /255, ImageNet mean/std (the usual torchvision recipe)."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def image_like_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A photo-like float32 input of ``shape`` (NCHW or NHWC with 3 channels: a natural image
    scaled to about [-1, 1]; any other shape: seeded standard normal values)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 4 and 3 in (shape[1], shape[3]):
        nhwc = shape[3] == 3 and shape[1] != 3
        h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
        x = (natural_image(h, w, seed).astype(np.float32) - 127.5) / 128.0
        x = x if nhwc else x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None]).reshape(shape)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def write_samples(directory: Any, shape: tuple[int, ...], count: int, seed: int = 0) -> list[Any]:
    """Write ``count`` photo-like samples ``s00000.npy`` ... into ``directory``; return the paths."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"s{i:05d}.npy"
        np.save(path, image_like_input(shape, seed + i))
        paths.append(path)
    return paths


def quantize_qdq(model_path: Any, out_path: Any, calibration: list[dict[str, np.ndarray]], per_channel: bool = False
                 ) -> Any:
    """Quantize a float ONNX model to int8 QDQ with onnxruntime's ``quantize_static`` (MinMax)."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs "consider pre-processing" through the root logger
    try:
        quantize_static(str(model_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel)
    finally:
        root.setLevel(level)
    return out_path
