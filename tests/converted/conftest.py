"""Models written by the real converters during the test run, built once per session.

onnxruntime.quantization (QDQ per tensor / per channel, TensorRT-style QDQ, QOperator),
onnxconverter-common (fp16 with and without keep_io_types), onnxruntime's optimized_model_filepath
(EXTENDED, ALL) and onnxsim, applied to fixtures/small_cnn.onnx and the MTCNN R-Net fixture.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from netdiff.samples import natural_image

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CNN = FIXTURES / "small_cnn.onnx"
RNET = FIXTURES / "mtcnn" / "rnet.onnx"


def face_crop(seed: int) -> np.ndarray:
    """A 24x24 RGB crop with MTCNN's normalisation, NHWC as the Keras export takes it."""
    return ((natural_image(24, 24, seed=seed).astype(np.float32) - 127.5) / 128.0)[None]


MODELS = {
    "small_cnn": {"path": CNN, "input": "input",
                  "samples": lambda: [np.load(p) for p in sorted((FIXTURES / "sim_calib").glob("*.npy"))],
                  "test": lambda: np.load(FIXTURES / "small_cnn_input.npy")},
    "rnet": {"path": RNET, "input": "input_2", "samples": lambda: [face_crop(s) for s in range(10, 18)],
             "test": lambda: face_crop(3)},
}


@contextlib.contextmanager
def quiet():
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def opset13(path: Path, out: Path) -> Path:
    """Per-channel DequantizeLinear needs opset 13: upgrade as a user must before quantize_static."""
    model = onnx.load(path)
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13:
        return path
    from onnx import version_converter

    onnx.save(version_converter.convert_version(model, 13), out)
    return out


class Converted:
    """Builds each (model, converter) pair once, into one session directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[tuple[str, str], Path] = {}

    def __call__(self, name: str, kind: str) -> Path:
        key = (name, kind)
        if key not in self.cache:
            out = self.root / f"{name}.{kind}.onnx"
            with quiet():
                BUILDERS[kind](MODELS[name], out, self.root)
            self.cache[key] = out
        return self.cache[key]


def _quantize(spec: dict, out: Path, root: Path, *, fmt: str, per_channel: bool, extra: dict | None = None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    samples = spec["samples"]()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {spec["input"]: x}

    source = opset13(spec["path"], root / f"{spec['path'].stem}.opset13.onnx") if per_channel else spec["path"]
    quantize_static(str(source), str(out), Reader(), per_channel=per_channel, extra_options=extra or {},
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator)


def _fp16(spec: dict, out: Path, root: Path, keep: bool) -> None:
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number ... will be truncated"
        onnx.save(float16.convert_float_to_float16(onnx.load(spec["path"]), keep_io_types=keep), out)


def _ort(spec: dict, out: Path, root: Path, level: str) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    ort.InferenceSession(str(spec["path"]), options, providers=["CPUExecutionProvider"])


def _onnxsim(spec: dict, out: Path, root: Path) -> None:
    onnxsim = pytest.importorskip("onnxsim")
    model, ok = onnxsim.simplify(onnx.load(spec["path"]))
    assert ok
    onnx.save(model, out)


TRT_STYLE = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "AddQDQPairToWeight": True,
             "DedicatedQDQPair": True, "OpTypesToExcludeOutputQuantization": ["Conv", "Gemm", "MatMul"]}

BUILDERS: dict[str, Callable[[dict, Path, Path], None]] = {
    "qdq-per-tensor": lambda s, o, r: _quantize(s, o, r, fmt="qdq", per_channel=False),
    "qdq-per-channel": lambda s, o, r: _quantize(s, o, r, fmt="qdq", per_channel=True),
    "qdq-tensorrt": lambda s, o, r: _quantize(s, o, r, fmt="qdq", per_channel=True, extra=TRT_STYLE),
    "qoperator-per-channel": lambda s, o, r: _quantize(s, o, r, fmt="qop", per_channel=True),
    "fp16-keep-io": lambda s, o, r: _fp16(s, o, r, True),
    "fp16": lambda s, o, r: _fp16(s, o, r, False),
    "ort-extended": lambda s, o, r: _ort(s, o, r, "ORT_ENABLE_EXTENDED"),
    "ort-all": lambda s, o, r: _ort(s, o, r, "ORT_ENABLE_ALL"),
    "onnxsim": _onnxsim,
}


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> Converted:
    """``converted(model_name, converter_kind)`` -> path of the converted model (built once)."""
    return Converted(tmp_path_factory.mktemp("converted"))


def residual_net(path: Path) -> Path:
    """A small residual CNN (Conv+Relu, a skip Add, a Concat of two branches, Gemm head), so the
    quantizer writes QLinearAdd and QLinearConcat (whose output scale comes first in its inputs)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int):
        return numpy_helper.from_array((rng.standard_normal(shape) * (2 / np.prod(shape[1:])) ** 0.5)
                                       .astype(np.float32), name)

    def bias(name: str, n: int):
        return numpy_helper.from_array((0.1 * rng.standard_normal(n)).astype(np.float32), name)

    inits = [weight("c1.w", 8, 3, 3, 3), bias("c1.b", 8), weight("c2.w", 8, 8, 3, 3), bias("c2.b", 8),
             weight("c3.w", 8, 8, 3, 3), bias("c3.b", 8), weight("c4.w", 8, 16, 1, 1), bias("c4.b", 8),
             weight("fc.w", 10, 8), bias("fc.b", 10)]
    pads = {"pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="conv1", **pads),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["c2"], name="conv2", **pads),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "c3.w", "c3.b"], ["c3"], name="conv3", **pads),
             helper.make_node("Add", ["c3", "r1"], ["res"], name="add"),
             helper.make_node("Relu", ["res"], ["r3"], name="relu3"),
             helper.make_node("Concat", ["r3", "r1"], ["cat"], name="concat", axis=1),
             helper.make_node("Conv", ["cat", "c4.w", "c4.b"], ["c4"], name="conv4"),
             helper.make_node("GlobalAveragePool", ["c4"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def residual(tmp_path_factory) -> dict:
    """The residual net and its onnxruntime QOperator (per channel) quantization."""
    root = tmp_path_factory.mktemp("residual")
    rng = np.random.default_rng(1)
    spec = {"path": residual_net(root / "residual.onnx"), "input": "x",
            "samples": lambda: [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(6)],
            "test": lambda: np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    out = root / "residual.qoperator.onnx"
    with quiet():
        _quantize(spec, out, root, fmt="qop", per_channel=True)
    return {**spec, "target": out}
