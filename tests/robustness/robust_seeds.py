"""Small valid dumps of every readable format (the seeds the fuzzer mutates), with format-aware regenerators.

Each seed is a :class:`Seed`: the path to read, the reader key and options, and, for binary
formats with a test writer, ``regen`` functions that rewrite one file with random (often absurd)
header fields: shape dims huge or zero, dtype/format enums out of range, declared sizes wrong.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS, TESTS / "ascend", TESTS / "caffe"):  # the test writers and their shared encoder
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

#: Values used for "absurd" integer fields.
ABSURD = (0, 1, 2, 3, 7, 15, 16, 17, 31, 40, 46, 47, 100, 255, 256, 65535, 1 << 20, 1 << 31, (1 << 31) - 1, 1 << 32,
          1 << 40, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)


@dataclass
class Seed:
    """A valid dump on disk plus how to read it and how to regenerate its files with random fields."""

    path: Path
    reader: str
    options: dict = field(default_factory=dict)
    regen: dict[str, Callable[[Random], bytes]] = field(default_factory=dict)  # relative path -> new bytes

    @property
    def root(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": rng.standard_normal((1, 3, 4, 4)).astype(np.float32),
            "conv1/Conv": rng.standard_normal((1, 4, 4, 4)).astype(np.float32),
            "relu.1": np.maximum(rng.standard_normal((1, 4, 4, 4)), 0).astype(np.float16),
            "fc": rng.integers(-100, 100, (1, 10)).astype(np.int8)}


# ------------------------------------------------------------------ npy family

def seed_npy_dir(root: Path) -> Seed:
    d = root / "npydir"
    d.mkdir()
    for name, a in _arrays(np.random.default_rng(0)).items():
        (d / f"{name.replace('/', '_')}.npy").write_bytes(_npy(a))
    return Seed(d, "npy-dir")


def seed_netdiff(root: Path) -> Seed:
    from netdiff.manifest import write_dump
    from netdiff.types import Tensor

    tensors = [Tensor.from_array(n, a, order=i) for i, (n, a) in enumerate(_arrays(np.random.default_rng(1)).items())]
    out = write_dump(tensors, root / "nd", graph_inputs=["input"], graph_outputs=["fc"])
    return Seed(out, "netdiff")


def seed_npz(root: Path) -> Seed:
    arrays = {k.replace("/", "_"): v for k, v in _arrays(np.random.default_rng(2)).items()}
    np.savez(root / "dump.npz", **arrays)
    return Seed(root / "dump.npz", "npz")


def seed_npz_compressed(root: Path) -> Seed:
    arrays = {k.replace("/", "_"): v for k, v in _arrays(np.random.default_rng(3)).items()}
    np.savez_compressed(root / "dumpc.npz", **arrays)
    return Seed(root / "dumpc.npz", "npz")


# ------------------------------------------------------------------ ascend

def _ascend_specs():
    import dataclasses

    import ascend_dump_writer as w

    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float16)
    conv = w.Spec(w.to_nc1hwc0(x, 16).tobytes(), w.DT["float16"], w.FMT["NC1HWC0"], (1, 1, 4, 4, 16), (1, 3, 4, 4))
    inp = w.Spec(rng.standard_normal((1, 3, 4, 4)).astype(np.float32).tobytes(), w.DT["float32"], w.FMT["NCHW"],
                 (1, 3, 4, 4))
    relu = w.Spec(np.abs(rng.standard_normal(12)).astype(np.float32).tobytes(), w.DT["float32"], w.FMT["ND"], (3, 4))
    fc = w.Spec(rng.integers(-5, 5, 10).astype(np.int8).tobytes(), w.DT["int8"], w.FMT["ND"], (1, 10))
    return [("Conv2D", w.DumpSpec("conv1", outputs=[conv], inputs=[inp]), "binary"),
            ("Relu", w.DumpSpec("relu/1", outputs=[relu]), "binary"),
            ("MatMul", w.DumpSpec("fc", outputs=[fc]), "protobuf"),
            ("Conv2D", w.DumpSpec("conv2", outputs=[dataclasses.replace(conv, original_op=("conv2", 0))], inputs=[inp]),
             "nano")]


def _random_spec(rng: Random, spec, variant: str) -> bytes:
    import dataclasses

    import ascend_dump_writer as w

    def mutate(s):
        changes = {}
        for attr in rng.sample(["data_type", "format", "shape", "original_shape", "size", "sub_format", "data"],
                               rng.randint(1, 3)):
            if attr == "shape" or attr == "original_shape":
                dims = list(getattr(s, attr)) or [1]
                dims[rng.randrange(len(dims))] = rng.choice(ABSURD)
                if rng.random() < 0.3:
                    dims = [rng.choice(ABSURD) for _ in range(rng.randint(0, 8))]
                changes[attr] = tuple(dims)
            elif attr == "data":
                changes[attr] = s.data[:rng.randint(0, len(s.data))]
            else:
                changes[attr] = rng.choice(ABSURD)
        return dataclasses.replace(s, **changes)

    spec = dataclasses.replace(spec, outputs=[mutate(s) if rng.random() < 0.7 else s for s in spec.outputs],
                               inputs=[mutate(s) if rng.random() < 0.5 else s for s in spec.inputs])
    if rng.random() < 0.2:
        spec = dataclasses.replace(spec, op_name=rng.choice(["", "x" * 300, "a/../../b", "\x00"]))
    return w.file_bytes(spec, variant, packed=rng.random() < 0.7)


def seed_ascend(root: Path) -> Seed:
    import ascend_dump_writer as w

    d = w.dump_dir(root / "ascend")
    regen = {}
    for op_type, spec, variant in _ascend_specs():
        path = w.write(d, op_type, spec, variant=variant)
        regen[str(path.relative_to(root / "ascend"))] = (lambda r, s=spec, v=variant: _random_spec(r, s, v))
    return Seed(root / "ascend", "ascend", regen=regen)


# ------------------------------------------------------------------ nnie

def _hex(values) -> str:
    return "".join(f"{int(v) & 0xFFFFFFFF:08x}\n" for v in np.ravel(values))


def seed_nnie_mapper(root: Path) -> Seed:
    d = root / "mapper" / "mapper_quant"
    d.mkdir(parents=True)
    rng = np.random.default_rng(5)
    (d / "conv1_report_output0_3_4_4_quant.linear.hex").write_text(_hex(rng.integers(-9000, 9000, 48)))
    (d / "prob_output0_10_1_1_quant.linear.hex").write_text(_hex(rng.integers(0, 4096, 10)))
    (d / "prob_output1_2_1_1_quant.linear.hex").write_text(_hex([1, 2]))
    np.savetxt(d / "conv1_input0_3_4_4_anti_quant.linear.float", rng.standard_normal(48))
    (d / "conv1_weight.hex").write_text(_hex([1, 2, 3]))
    return Seed(root / "mapper", "nnie-mapper")


def seed_nnie_caffe(root: Path) -> Seed:
    d = root / "ruyi" / "output"
    d.mkdir(parents=True)
    rng = np.random.default_rng(6)
    np.savetxt(d / "conv1_output0_3_4_4_caffe.linear.float", rng.standard_normal(48))
    np.savetxt(d / "conv1_output1_3_4_4_caffe.linear.float", rng.standard_normal(48))
    np.savetxt(d / "prob_output0_10_caffe.linear.float", rng.random(10))
    return Seed(root / "ruyi", "nnie-caffe")


def seed_nnie_sim(root: Path) -> Seed:
    d = root / "sim" / "inst_layer_output_linear"
    d.mkdir(parents=True)
    rng = np.random.default_rng(7)
    (d / "seg0_layer1_output0_inst.linear.hex").write_text(_hex(rng.integers(-9000, 9000, 48)))
    (d / "seg0_layer2_output0_inst.linear.hex").write_text(_hex(rng.integers(-9000, 9000, 48)))
    (d / "seg0_layer2_output1_inst.linear.hex").write_text(_hex([4096, 8192]))
    (d / "seg1_layer0_output0_inst.linear.hex").write_text(_hex(rng.integers(0, 4096, 10)))
    tree = root / "sim" / "net_tree.json"
    tree.write_text(json.dumps({"1": {"name": "conv1", "shape": [1, 3, 4, 4]}, "seg0_layer2": "relu1",
                                "seg1_layer0": {"name": "prob", "shape": [10]}}))
    return Seed(root / "sim", "nnie-sim", {"net_tree": str(tree)})


def seed_nnie_blob(root: Path) -> Seed:
    rng = np.random.default_rng(8)
    c, h, w = 3, 4, 5
    stride = (w * 4 + 15) // 16 * 16
    rows = np.zeros((c * h, stride // 4), "<i4")
    rows[:, :w] = rng.integers(-10000, 10000, (c * h, w))
    (root / "out.s32").write_bytes(rows.tobytes())
    return Seed(root / "out.s32", "nnie-blob", {"shape": f"{c},{h},{w}"})


# ------------------------------------------------------------------ interop

def _run_results(arrays: dict[str, np.ndarray]) -> str:
    outputs = {k: {"values": {"array": base64.b64encode(_npy(v)).decode(), "polygraphy_class": "ndarray"},
                   "polygraphy_class": "LazyArray"} for k, v in arrays.items()}
    lst = [["onnxrt-runner", [{"outputs": outputs, "runtime": 0.5, "runner_name": "onnxrt-runner",
                               "polygraphy_class": "IterationResult"}]]]
    return json.dumps({"lst": lst, "polygraphy_class": "RunResults"}, indent=1)


def seed_polygraphy(root: Path) -> Seed:
    arrays = _arrays(np.random.default_rng(9))
    (root / "outputs.json").write_text(_run_results(arrays))
    return Seed(root / "outputs.json", "polygraphy")


def seed_msit(root: Path) -> Seed:
    d = root / "golden"
    d.mkdir()
    stamp = 1690000000000000
    for i, (name, a) in enumerate(_arrays(np.random.default_rng(10)).items()):
        node = name.replace(".", "_").replace("/", "_")
        (d / f"{'input_' + node if name == 'input' else node}.0.{stamp + i}.npy").write_bytes(_npy(a))
    (d / "1234.npy").write_bytes(_npy(np.ones((2, 2), np.float32)))
    (d / "mapping.csv").write_text(f"1234.npy,long_node_name.1.{stamp + 9}.npy\n")
    return Seed(d, "msit")


def seed_rknn(root: Path) -> Seed:
    snap = root / "snapshot"
    arrays = _arrays(np.random.default_rng(11))
    layers = [("Input", "input", "input"), ("Conv", "conv1/Conv", "conv1_Conv"), ("Relu", "relu.1", "relu_1"),
              ("Gemm", "fc", "fc"), ("exDataConvert", "fc_int8", "fc_int8")]
    arrays["fc_int8"] = arrays["fc"].copy()
    for side in ("golden", "simulator"):
        (snap / side / "npy").mkdir(parents=True)
        for _, name, stem in layers:
            (snap / side / "npy" / f"{stem}.npy").write_bytes(_npy(arrays[name]))
    (snap / "map_name_to_file.txt").write_text("layer_name  file_name\n" + "".join(
        f"[{op}] {name}  {stem}.npy\n" for op, name, stem in layers))
    (snap / "error_analysis.txt").write_text("layer_name  simulator_error\n" + "".join(
        f"[{op}] {name}  1.00000 | 0.01  0.99 | 0.003\n" for op, name, _ in layers))
    return Seed(snap, "rknn", {"side": "simulator"})


# ------------------------------------------------------------------ caffe

PROTOTXT = """name: "fuzz"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _caffemodel(rng: np.random.Generator, legacy: bool = False, packed: bool = True, double: bool = False) -> bytes:
    import caffe_testkit as k

    blobs = {"conv1": [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
             "fc": [rng.standard_normal((5, 64)), rng.standard_normal(5)]}
    layers = [k.layer(name, t, blobs=blobs.get(name, ()), legacy=legacy, packed=packed, double=double)
              for name, t in (("conv1", "Convolution"), ("relu1", "ReLU"), ("fc", "InnerProduct"))]
    return k.netparam(layers)


def _random_caffemodel(rng: Random) -> bytes:
    import caffe_testkit as k

    nrng = np.random.default_rng(rng.randrange(1 << 30))
    shape = [rng.choice(ABSURD) if rng.random() < 0.5 else d for d in (4, 3, 3, 3)][:rng.randint(0, 4)]
    raw = k.ld(7, k.ld(1, b"".join(k.varint(d) for d in shape)))
    if rng.random() < 0.5:
        raw += k.uint(10, rng.choice(ABSURD)) + k.ld(12, nrng.bytes(rng.randint(0, 64)))
    else:
        raw += k.ld(5, nrng.standard_normal(rng.randint(0, 120)).astype("<f4").tobytes())
    layers = [k.string(1, "conv1") + k.string(2, "Convolution") + k.ld(7, raw),
              k.layer("fc", "InnerProduct", blobs=[nrng.standard_normal((5, 64))], legacy=rng.random() < 0.5,
                      packed=rng.random() < 0.5)]
    if rng.random() < 0.3:
        layers.append(k.layer("v1", "", v1_type=rng.choice(ABSURD)))
    return k.netparam(layers, v1=rng.random() < 0.1)


def seed_caffe(root: Path) -> Seed:
    d = root / "caffe"
    d.mkdir()
    (d / "net.prototxt").write_text(PROTOTXT)
    (d / "net.caffemodel").write_bytes(_caffemodel(np.random.default_rng(12)))
    return Seed(d / "net.prototxt", "caffe", {"weights": str(d / "net.caffemodel")},
                regen={"net.caffemodel": _random_caffemodel})


# ------------------------------------------------------------------ onnx models (the runner's mapped-weights path)

def _onnx_model(rng: Random | None = None) -> bytes:
    """Conv (weights above the mapping threshold) -> Relu -> Gemm; ``rng`` makes header fields absurd."""
    from onnx import TensorProto, helper, numpy_helper

    nrng = np.random.default_rng(5)
    w = numpy_helper.from_array(nrng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(nrng.standard_normal((5, 16 * 6 * 6)).astype(np.float32), "fc")
    if rng is not None:
        for tensor in rng.sample([w, fc], rng.randint(1, 2)):
            what = rng.choice(["dims", "data_type", "raw_data", "name"])
            if what == "dims":
                tensor.dims[rng.randrange(len(tensor.dims))] = min(rng.choice(ABSURD), (1 << 63) - 1)
            elif what == "data_type":
                tensor.data_type = rng.choice([0, 2, 7, 8, 9, 10, 11, 16, 40, 1 << 20])
            elif what == "raw_data":
                tensor.raw_data = tensor.raw_data[:rng.randint(0, len(tensor.raw_data))]
            else:
                tensor.name = rng.choice(["", "x", "w", "fc"])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w, fc])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def seed_onnx(root: Path) -> Seed:
    d = root / "onnx"
    d.mkdir()
    (d / "model.onnx").write_bytes(_onnx_model())
    return Seed(d / "model.onnx", "onnx", regen={"model.onnx": _onnx_model})


def _onnx_external_model(rng: Random | None = None) -> bytes:
    """The same model with its weights in ``weights.bin``; ``rng`` makes the external-data entries absurd."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(_onnx_model())
    offset = 0
    for init in model.graph.initializer:
        size = len(init.raw_data)
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        entries = {"location": "weights.bin", "offset": str(offset), "length": str(size)}
        if rng is not None and rng.random() < 0.6:
            key = rng.choice(["location", "offset", "length"])
            entries[key] = rng.choice(["../weights.bin", "/etc/hostname", "missing.bin", "", "-8", "x",
                                       str(rng.choice(ABSURD)), "weights.bin"])
            if rng.random() < 0.2:
                del entries[key]
        for key, value in entries.items():
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        offset += size
    return model.SerializeToString()


def _onnx_weights_bin() -> bytes:
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(_onnx_model())
    return b"".join(init.raw_data for init in model.graph.initializer)


def seed_onnx_external(root: Path) -> Seed:
    d = root / "onnx_external"
    d.mkdir()
    (d / "model.onnx").write_bytes(_onnx_external_model())
    (d / "weights.bin").write_bytes(_onnx_weights_bin())
    return Seed(d / "model.onnx", "onnx", regen={"model.onnx": _onnx_external_model})


#: Reader key -> seed builders (several seeds per reader where the format has variants).
SEEDS: dict[str, list[Callable[[Path], Seed]]] = {
    "netdiff": [seed_netdiff],
    "npy-dir": [seed_npy_dir],
    "npz": [seed_npz, seed_npz_compressed],
    "ascend": [seed_ascend],
    "onnx": [seed_onnx, seed_onnx_external],
    "nnie-mapper": [seed_nnie_mapper],
    "nnie-caffe": [seed_nnie_caffe],
    "nnie-sim": [seed_nnie_sim],
    "nnie-blob": [seed_nnie_blob],
    "polygraphy": [seed_polygraphy],
    "msit": [seed_msit],
    "rknn": [seed_rknn],
    "caffe": [seed_caffe],
}


def pack_le64(value: int) -> bytes:
    return struct.pack("<Q", value & ((1 << 64) - 1))
