"""Fault-injection builders: a reference model and a target Dump with one planted fault."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from netdiff.runners.onnxrt import OnnxModel
from netdiff.samples import natural_image, preprocess, small_cnn
from netdiff.types import Dump, Tensor

CONV1 = "/features/conv1/Conv_output_0"
RELU1 = "/features/relu1/Relu_output_0"
CONV2 = "/features/conv2/Conv_output_0"
POOL = "/features/pool/MaxPool_output_0"
CONV3 = "/features/conv3/Conv_output_0"
BN3 = "/features/bn3/BatchNormalization_output_0"
GEMM = "/classifier/Gemm_output_0"


def image(seed: int = 0, size: int = 32) -> np.ndarray:
    return natural_image(size, size, seed=seed)


def model_and_input(seed: int = 0):
    """The sample CNN and a preprocessed natural image."""
    return small_cnn(), preprocess(image(seed))


def run(model, x: np.ndarray) -> Dump:
    return OnnxModel.from_proto(model).run({"input": np.ascontiguousarray(x, dtype=np.float32)})


def as_target(dump: Dump, fmt: str = "npy-dir", *, drop: tuple[str, ...] = (),
              perturb: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
              nhwc: bool = False, rename: Callable[[str], str] | None = None) -> Dump:
    """A device-like target made of a dump's tensors (names kept unless ``rename``), one fault planted."""
    tensors = {}
    for t in dump:
        if t.name in drop:
            continue
        value = np.array(t.load())
        if perturb and t.name in perturb:
            value = np.asarray(perturb[t.name](value))
        layout = None
        if nhwc and value.ndim == 4:
            value = np.ascontiguousarray(value.transpose(0, 2, 3, 1))
            layout = "NHWC"
        name = rename(t.name) if rename else t.name
        tensors[name] = Tensor.from_array(name, value, layout=layout, source="test")
    return Dump(tensors=tensors, source="planted", format=fmt, graph_inputs=[n for n in dump.graph_inputs if n not in drop],
                graph_outputs=list(dump.graph_outputs))


def int8_noise(value: np.ndarray) -> np.ndarray:
    """Per-tensor symmetric int8 fake quantization (mild, realistic noise)."""
    scale = float(np.abs(value).max()) / 127.0 or 1.0
    return (np.round(value / scale) * scale).astype(value.dtype)


def scaled_weights(model, name: str, factor: float, add: float = 0.0):
    """A copy of ``model`` with initializer ``name`` multiplied by ``factor`` (plus ``add``)."""
    from onnx import numpy_helper

    copy = type(model)()
    copy.CopyFrom(model)
    for init in copy.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor) + np.float32(add), name))
    return copy


def noisy_weights(model, rel: float, seed: int = 0):
    """A copy of ``model`` whose conv/gemm weights carry ``rel`` relative Gaussian noise."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    copy = type(model)()
    copy.CopyFrom(model)
    for init in copy.graph.initializer:
        if init.name.endswith(".weight") and len(init.dims) >= 2:
            w = numpy_helper.to_array(init)
            w = w + rel * w.std() * rng.standard_normal(w.shape).astype(w.dtype)
            init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    return copy
