"""om-JSON fusion maps: the real msit fixture plus small hand-written maps for each relation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import ascend_dump_writer as w
from netdiff.align import align_dumps
from netdiff.ascend.fusion import FusionMap
from netdiff.errors import AlignmentError
from netdiff.readers import read_dump
from netdiff.types import Dump, Tensor


def _shared() -> Path | None:
    env = os.environ.get("NETDIFF_SHARED")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared"
    return base if (base / "fixtures" / "ascend" / "model.json").is_file() else None


@pytest.fixture(scope="module")
def model_json() -> Path:
    shared = _shared()
    if shared is None:
        pytest.skip("shared fixtures (fixtures/ascend/model.json) not available")
    return shared / "fixtures" / "ascend" / "model.json"


DT_CODES = {"DT_FLOAT": 1, "DT_FLOAT16": 2, "DT_INT32": 7, "DT_INT64": 8}
NP = {1: np.float32, 2: np.float16, 7: np.int32, 8: np.int64}


def _task_ops(data: dict) -> list[str]:
    for attr in data["attr"]:
        if attr["key"] == "task_index_op_name":
            return list(dict.fromkeys(attr["value"]["list"]["s"]))
    raise AssertionError("fixture has no task_index_op_name")


def write_dumps_for(data: dict, root: Path, op_names: list[str], rng=np.random.default_rng(0)) -> dict[str, list[np.ndarray]]:
    """Write one device-named dump per op, with outputs/inputs shaped as the om JSON says."""
    ops = {op["name"]: op for g in data["graph"] for op in g["op"]}
    d = w.dump_dir(root, model=data["name"])
    written = {}
    for k, name in enumerate(op_names):
        op = ops[name]
        outs = []
        for desc in op.get("output_desc", []):
            code = DT_CODES[desc["dtype"]]
            shape = tuple(desc.get("shape", {}).get("dim", [1]))
            arr = (rng.standard_normal(shape) * 10).astype(NP[code])
            outs.append(arr)
        specs = [w.Spec(a.tobytes(), DT_CODES[desc["dtype"]], w.FMT.get(desc.get("layout"), 2), a.shape)
                 for a, desc in zip(outs, op.get("output_desc", []))]
        inputs = [w.Spec(np.zeros(2, np.float16).tobytes(), 2, 2, (2,)) for x in op.get("input", []) if x]
        w.write(d, op["type"], w.DumpSpec(name, outputs=specs, inputs=inputs), task=k, ts=1690000000000000 + k)
        written[name] = outs
    return written


def test_fixture_ops_align_to_their_original_nodes(tmp_path, model_json):
    data = json.loads(model_json.read_text())
    written = write_dumps_for(data, tmp_path, _task_ops(data))
    dump = read_dump(tmp_path, fusion_map=str(model_json))
    assert dump.format == "ascend" and dump.meta["format_name"] == "Ascend"

    mapped = {t.name: (t.origin_names, t.meta.get("origin_output_index")) for t in dump
              if t.origin_names and t.meta["direction"] == "output"}
    assert mapped == {
        "BatchMultiClassNMS_1203": (("BatchMultiClassNMS_1203",), 0),
        "BatchMultiClassNMS_1203:1": (("BatchMultiClassNMS_1203",), 1),
        "BatchMultiClassNMS_1203:2": (("BatchMultiClassNMS_1203",), 2),
        "BatchMultiClassNMS_1203:3": (("BatchMultiClassNMS_1203",), 3),
        "Cast_1206": (("Cast_1206",), 0),
        "Concat_1211": (("Concat_1211",), 0),
        "Slice_1218": (("Slice_1218",), 0),
        "PartitionedCall_Gather_1221_gatherv2_3": (("Gather_1221",), 0),
    }
    originals = set()
    for g in data["graph"]:
        for op in g["op"]:
            for a in op.get("attr", []):
                if a["key"] == "_datadump_original_op_names":
                    originals.update(a["value"]["list"].get("s", []))
            originals.add(op["name"])
    assert all(names[-1] in originals for names, _ in mapped.values())

    npu_only = {"trans_Cast_0", "trans_Cast_2", "trans_Cast_6", "trans_Cast_7",
                "BatchMultiClassNMS_1203_Input0_TransposeBefore", "BatchMultiClassNMS_1203_Input1_TransposeBefore",
                "BatchMultiClassNMS_1203_Output0TransposeAfter"}
    assert npu_only <= set(dump.target_only)
    # model inputs are compared at their first consumer; every other op input is device-internal
    assert dump["trans_Cast_0:input:0"].origin_names == ("boxes_all",)
    assert dump["trans_Cast_2:input:0"].origin_names == ("scores_all",)
    assert dump["trans_Cast_2:input:0"].meta["fusion"] == "graph-input"
    other_inputs = {n for n in dump.names if ":input:" in n} - {"trans_Cast_0:input:0", "trans_Cast_2:input:0"}
    assert other_inputs and other_inputs <= set(dump.target_only)
    assert not set(mapped) & set(dump.target_only)
    for name in npu_only:
        assert dump[name].meta["fusion"] == "npu-only"

    # values, model facts and graph edges
    np.testing.assert_array_equal(dump["BatchMultiClassNMS_1203:3"].load(), written["BatchMultiClassNMS_1203"][3])
    assert dump["Concat_1211"].inputs == ("BatchMultiClassNMS_1203_Output0TransposeAfter", "BatchMultiClassNMS_1203:1")
    assert dump.graph_outputs == ["PartitionedCall_Gather_1221_gatherv2_3"]
    assert dump.meta["precision_mode"] == "force_fp16"
    assert "default" in dump.meta["precision_mode_source"].lower()
    assert "--soc_version=Ascend310" in dump.meta["atc_cmdline"] and dump.meta["soc_version"] == "Ascend310"
    assert dump.meta["model_name"] == "sub_model"


def test_fixture_alignment_through_the_core_aligner(tmp_path, model_json):
    data = json.loads(model_json.read_text())
    write_dumps_for(data, tmp_path, _task_ops(data))
    target = read_dump(tmp_path, fusion_map=model_json)
    # A reference as the ONNX runner would produce: tensors carry their node name and output index.
    ref_tensors = {}
    for node, k, shape in [("BatchMultiClassNMS_1203", 0, (1, 4, 100)), ("BatchMultiClassNMS_1203", 1, (1, 100)),
                           ("BatchMultiClassNMS_1203", 2, (1, 100)), ("BatchMultiClassNMS_1203", 3, (1, 8)),
                           ("Cast_1206", 0, (1, 100)), ("Concat_1211", 0, (100, 5)), ("Slice_1218", 0, (100, 4)),
                           ("Gather_1221", 0, (100,))]:
        name = f"onnx_out_{node}_{k}"
        ref_tensors[name] = Tensor.from_array(name, np.zeros(shape, np.float32), meta={"node": node, "output_index": k})
    alignment = align_dumps(Dump(ref_tensors), target)
    pairs = {m.reference: (m.target, m.method) for m in alignment.pairs}
    assert pairs["onnx_out_Gather_1221_0"] == ("PartitionedCall_Gather_1221_gatherv2_3", "fusion-map")
    assert pairs["onnx_out_BatchMultiClassNMS_1203_2"] == ("BatchMultiClassNMS_1203:2", "fusion-map")
    assert len(pairs) == len(ref_tensors)
    assert "trans_Cast_6" in alignment.target_only


def test_precision_mode_from_atc_cmdline(tmp_path, model_json):
    data = json.loads(model_json.read_text())
    for a in data["attr"]:
        if a["key"] == "atc_cmdline":
            a["value"]["s"] += " --precision_mode=allow_mix_precision"
    fmap = FusionMap(data)
    assert fmap.precision_mode() == ("allow_mix_precision", "atc_cmdline (--precision_mode)")
    data["attr"] = [a for a in data["attr"] if a["key"] != "atc_cmdline"]
    assert FusionMap(data).precision_mode()[0] == "force_fp16"


def _op(name, type_, id_, inputs=(), originals=None, outs=(), multiop=False):
    attr = []
    if originals is not None:
        attr.append({"key": "_datadump_original_op_names", "value": {"list": {"s": list(originals)} if originals else {}}})
    if multiop:
        attr.append({"key": "_datadump_is_multiop", "value": {"b": True}})
    descs = []
    for origin, idx, shape in outs:
        a = [{"key": "origin_shape", "value": {"list": {"i": list(shape)}}}, {"key": "origin_format", "value": {"s": "NCHW"}}]
        if origin:
            a += [{"key": "_datadump_origin_name", "value": {"s": origin}},
                  {"key": "_datadump_origin_output_index", "value": {"i": idx}}]
        descs.append({"dtype": "DT_FLOAT16", "layout": "NC1HWC0", "shape": {"dim": []}, "attr": a})
    return {"id": id_, "name": name, "type": type_, "input": list(inputs), "attr": attr, "output_desc": descs}


def test_relations_many_to_one_one_to_many_and_npu_only():
    data = {"name": "m", "attr": [], "graph": [{"name": "g", "op": [
        _op("conv1/Conv+relu", "Conv2D", 1, originals=["conv1/Conv", "relu1"], outs=[("relu1", 0, (1, 8, 4, 4))]),
        _op("fused_no_origin", "Conv2D", 2, originals=["a", "b", "c"], outs=[(None, 0, (1, 8, 4, 4))]),
        _op("split_part1", "MatMul", 3, originals=["fc"], outs=[(None, 0, (1, 8))], multiop=True),
        _op("split_part2", "MatMul", 4, originals=["fc"], outs=[("fc", 0, (1, 8))], multiop=True),
        _op("trans_TransData_9", "TransData", 5, originals=[], outs=[("relu1", 0, (1, 8, 4, 4))]),
        _op("plain", "Add", 6, outs=[(None, 0, (1, 8))]),
    ]}]}
    fmap = FusionMap(data)
    o = fmap.origin(fmap.ops["conv1/Conv+relu"], 0)
    assert (o.names, o.relation, o.shape, o.format) == (("conv1/Conv", "relu1"), "many-to-one", (1, 8, 4, 4), "NCHW")
    o = fmap.origin(fmap.ops["fused_no_origin"], 0)
    assert o.names == ("a", "b", "c") and o.relation == "many-to-one"
    assert fmap.origin(fmap.ops["split_part1"], 0).relation == "inner"
    o = fmap.origin(fmap.ops["split_part2"], 0)
    assert o.names == ("fc",) and o.relation == "one-to-many"
    assert fmap.origin(fmap.ops["trans_TransData_9"], 0).relation == "npu-only"
    o = fmap.origin(fmap.ops["plain"], 0)
    assert o.names == ("plain",) and o.relation == "one-to-one"


def test_fusion_map_origin_shape_strips_nc1hwc0_padding(tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 8, 4, 4)).astype(np.float16)
    dev = w.to_nc1hwc0(x, 16)
    data = {"name": "m", "attr": [], "graph": [{"name": "g", "op": [
        _op("conv1/Conv+relu", "Conv2D", 1, originals=["conv1/Conv", "relu1"], outs=[("relu1", 0, (1, 8, 4, 4))])]}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    d = w.dump_dir(tmp_path / "dump", model="m")
    w.write(d, "Conv2D", w.DumpSpec("conv1/Conv+relu", outputs=[w.Spec(dev.tobytes(), 2, w.FMT["NC1HWC0"], dev.shape)]))
    t = read_dump(tmp_path / "dump", fusion_map=path)["conv1/Conv+relu"]
    assert t.shape == (1, 8, 4, 4) and t.origin_names == ("conv1/Conv", "relu1") and t.meta["fusion"] == "many-to-one"
    np.testing.assert_array_equal(t.load(), x)


def test_bad_fusion_map(tmp_path):
    d = w.dump_dir(tmp_path / "dump")
    w.write(d, "Relu", w.DumpSpec("r", outputs=[w.Spec(np.ones(2, np.float32).tobytes(), 1, 2, (2,))]))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(AlignmentError, match="not an om JSON"):
        read_dump(tmp_path / "dump", fusion_map=bad)
    with pytest.raises(AlignmentError, match="not found"):
        read_dump(tmp_path / "dump", fusion_map=tmp_path / "missing.json")
