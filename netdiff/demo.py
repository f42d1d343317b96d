"""The bundled demo: a float model, and a "converted" target with one badly quantized layer.

The reference is a small CNN whose ``conv3`` weights contain one outlier (as trained weights
sometimes do). The target is what a naive int8 converter makes of it: every Conv weight
quantized per tensor with a max-abs scale, so the outlier stretches conv3's step and its other
weights collapse onto a few levels. The target dump is written the way device tools write
dumps: names escaped (``/`` and ``.`` to ``_``) and 4-D tensors stored NHWC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdiff._io import save_npy_atomic, safe_file_stem
from netdiff.samples import natural_image, preprocess, small_cnn

PLANTED_NODE = "/features/conv3/Conv"
PLANTED_TENSOR = "/features/conv3/Conv_output_0"


@dataclass(frozen=True)
class DemoCase:
    """Files of the demo scenario."""

    model: Path
    input: Path
    target: Path
    planted_layer: str


def fake_quantize_int8(weight: np.ndarray) -> np.ndarray:
    """Symmetric per-tensor int8 quantize-dequantize with a max-abs scale."""
    scale = float(np.abs(weight).max()) / 127.0
    return (np.clip(np.round(weight / scale), -127, 127) * scale).astype(np.float32)


def demo_models(outlier: float = 40.0) -> tuple[Any, Any]:
    """Return (reference model, naively int8-converted model)."""
    from onnx import numpy_helper

    reference = small_cnn()
    for init in reference.graph.initializer:
        if init.name == "/features/conv3.weight":
            w = numpy_helper.to_array(init).copy()
            w[5, 3, 1, 1] = outlier * float(np.abs(w).max())
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    converted = type(reference)()
    converted.CopyFrom(reference)
    for init in converted.graph.initializer:
        if init.name.endswith(".weight") and len(init.dims) == 4:
            init.CopyFrom(numpy_helper.from_array(fake_quantize_int8(numpy_helper.to_array(init)), init.name))
    return reference, converted


def device_name(name: str) -> str:
    """How device dump tools escape tensor names."""
    return name.replace("/", "_").replace(".", "_").strip("_")


def build_demo(workdir: str | Path) -> DemoCase:
    """Write the demo model, input and target dump into ``workdir`` and return their paths."""
    import onnx

    from netdiff.runners.onnxrt import OnnxModel

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    reference, converted = demo_models()
    model_path = workdir / "small_cnn.onnx"
    onnx.save(reference, str(model_path))
    x = preprocess(natural_image(32, 32))
    input_path = workdir / "input.npy"
    save_npy_atomic(input_path, x)
    dump = OnnxModel.from_proto(converted, "converted").run({"input": x})
    target = workdir / "device_dump"
    target.mkdir(exist_ok=True)
    taken: set[str] = set()
    for tensor in dump:
        value = tensor.load()
        if value.ndim == 4:
            value = np.ascontiguousarray(value.transpose(0, 2, 3, 1))
        save_npy_atomic(target / (safe_file_stem(device_name(tensor.name), taken) + ".npy"), value)
    return DemoCase(model_path, input_path, target, PLANTED_TENSOR)
