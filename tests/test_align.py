"""Alignment: by name only, with a recorded method; layouts reconciled."""

from __future__ import annotations

import numpy as np
import pytest

from netdiff.align import align_dumps, normalize_name, reconcile_shapes
from netdiff.errors import AlignmentError
from netdiff.types import Dump, Tensor


def dump(**arrays: np.ndarray) -> Dump:
    return Dump({k: Tensor.from_array(k, v) for k, v in arrays.items()})


def test_normalize_name_applies_toolchain_escaping():
    assert normalize_name("/model.0/conv/Conv_output_0") == "model_0_conv_conv_output_0"
    assert normalize_name("a\\b:c d-e") == "a_b_c_d_e"


def test_exact_then_normalized_and_unmatched_both_sides():
    a = np.ones((2, 3), np.float32)
    ref = Dump({n: Tensor.from_array(n, a) for n in ["/conv1/Conv", "conv2", "only_ref"]})
    tgt = Dump({n: Tensor.from_array(n, a) for n in ["conv1_Conv", "conv2", "only_target"]})
    al = align_dumps(ref, tgt)
    methods = {m.reference: (m.target, m.method) for m in al.matches if m.reference}
    assert methods["/conv1/Conv"] == ("conv1_Conv", "normalized")
    assert methods["conv2"] == ("conv2", "exact")
    assert methods["only_ref"] == (None, "unmatched")
    assert any(m.target == "only_target" and m.reference is None for m in al.matches)


def test_never_pairs_by_substring_or_position():
    a = np.ones(4, np.float32)
    ref = dump(conv1=a, conv10=a)
    tgt = dump(conv1_out=a, conv10_out=a)
    al = align_dumps(ref, tgt)
    assert al.pairs == []


def test_ambiguous_normalized_name_is_not_guessed():
    a = np.ones(4, np.float32)
    ref = Dump({n: Tensor.from_array(n, a) for n in ["a/b", "a.b"]})
    tgt = dump(a_b=a)
    al = align_dumps(ref, tgt)
    assert al.pairs == []
    assert "several" in [m for m in al.matches if m.target == "a_b"][0].reason


def test_user_mapping_wins_and_is_validated():
    a = np.ones(4, np.float32)
    ref = dump(x=a, y=a)
    tgt = dump(x=a, z=a)
    al = align_dumps(ref, tgt, {"z": "y"})
    assert {(m.reference, m.target, m.method) for m in al.pairs} == {("x", "x", "exact"), ("y", "z", "map")}
    with pytest.raises(AlignmentError, match="not in the target"):
        align_dumps(ref, tgt, {"nope": "y"})


def test_fusion_map_origin_names_resolve_node_names():
    a = np.ones((1, 2), np.float32)
    ref = Dump({
        "conv_out": Tensor.from_array("conv_out", a, meta={"node": "Conv_0", "output_index": 0}),
        "relu_out": Tensor.from_array("relu_out", a, meta={"node": "Relu_1", "output_index": 0}),
    })
    tgt = Dump({"ConvRelu": Tensor.from_array("ConvRelu", a, origin_names=("Conv_0", "Relu_1"))})
    al = align_dumps(ref, tgt)
    (pair,) = al.pairs
    assert (pair.reference, pair.method) == ("relu_out", "fusion-map")
    assert "conv_out" in al.not_observable


def test_blob_named_target_pairs_last_inplace_writer():
    a = np.ones((1, 2), np.float32)
    ref = Dump({n: Tensor.from_array(n, a) for n in ["conv1", "bn1", "relu1"]},
               meta={"blobs": {"conv1": ["conv1", "bn1", "relu1"]}})
    tgt = Dump({"conv1": Tensor.from_array("conv1", a)}, meta={"tensor_names": "blob"})
    al = align_dumps(ref, tgt)
    (pair,) = al.pairs
    assert (pair.reference, pair.method) == ("relu1", "blob")
    assert set(al.not_observable) == {"conv1", "bn1"}


def test_truncated_names():
    a = np.ones(2, np.float32)
    long = "backbone_stage4_block12_conv_expand_output"
    ref = dump(**{long: a})
    tgt = Dump({long[:31]: Tensor.from_array(long[:31], a)}, meta={"name_limit": 31})
    (pair,) = align_dumps(ref, tgt).pairs
    assert pair.method == "truncated"


def t(shape, layout=None):
    return Tensor.from_array("t", np.zeros(shape, np.float32), layout=layout)


def test_reconcile_nhwc_unique_permutation():
    tr, alts, _ = reconcile_shapes(t((1, 16, 8, 4)), t((1, 8, 4, 16)))
    assert tr.permutation == (0, 3, 1, 2) and tr.description == "NHWC->NCHW"


def test_reconcile_ambiguous_offers_alternatives():
    tr, alts, _ = reconcile_shapes(t((1, 32, 8, 8)), t((1, 8, 8, 32)))
    assert tr.permutation == (0, 3, 1, 2)
    assert alts and alts[0].permutation == (0, 3, 2, 1)


def test_reconcile_layout_tag_even_when_shapes_equal():
    tr, _, _ = reconcile_shapes(t((1, 8, 8, 8)), t((1, 8, 8, 8), layout="NHWC"))
    assert tr.permutation == (0, 3, 1, 2)


def test_reconcile_squeeze_flatten_and_mismatch():
    tr, _, _ = reconcile_shapes(t((1, 10)), t((10,)))
    assert tr.reshape and tr.permutation is None
    tr, _, _ = reconcile_shapes(t((1, 3, 4, 5)), t((4, 5, 3)))
    assert tr.squeeze and tr.permutation == (2, 0, 1)
    value = np.arange(60).reshape(1, 3, 4, 5)
    assert np.array_equal(tr.apply(value[0].transpose(1, 2, 0), (1, 3, 4, 5)), value)
    tr, _, reason = reconcile_shapes(t((1, 3, 4, 5)), t((1, 3, 4, 6)))
    assert tr is None and "cannot" in reason


def test_output_index_suffix_resolves_multi_output_nodes():
    a = np.ones(2, np.float32)
    ref = Dump({
        "split_out0": Tensor.from_array("split_out0", a, meta={"node": "/split/Split", "output_index": 0}),
        "split_out1": Tensor.from_array("split_out1", a, meta={"node": "/split/Split", "output_index": 1}),
    })
    tgt = dump(**{"split_Split:1": a})
    (pair,) = align_dumps(ref, tgt).pairs
    assert pair.reference == "split_out1" and pair.method == "normalized"


def test_tensor_name_wins_over_a_node_of_the_same_name():
    """tf2onnx names a MatMul node 'dense_2' (output 'dense_20') and the Add after it outputs 'dense_2'."""
    a = np.ones(2, np.float32)
    ref = Dump({
        "dense_20": Tensor.from_array("dense_20", a, meta={"node": "dense_2", "output_index": 0}),
        "dense_2": Tensor.from_array("dense_2", a, meta={"node": "Add_7", "output_index": 0}),
    })
    tgt = dump(dense_20=a, dense_2=a)
    pairs = {m.target: (m.reference, m.method) for m in align_dumps(ref, tgt).pairs}
    assert pairs == {"dense_20": ("dense_20", "exact"), "dense_2": ("dense_2", "exact")}


def test_original_op_from_a_dump_header_pairs_renamed_tensors():
    """A fused op named by the converter (no name rule applies) is paired through the original op its
    dump header names; a name rule still wins when it applies."""
    a = np.ones((1, 4), np.float32)
    ref = Dump({name: Tensor.from_array(name, a, meta={"node": node, "output_index": 0})
                for name, node in [("/relu1/Relu_output_0", "/relu1/Relu"), ("/fc/Gemm_output_0", "/fc/Gemm")]})
    tgt = Dump({"conv1conv1_reluconv1_bn": Tensor.from_array("conv1conv1_reluconv1_bn", a,
                                                             meta={"original_op": ["/relu1/Relu", 0]}),
                "/fc/Gemm_output_0": Tensor.from_array("/fc/Gemm_output_0", a, meta={"original_op": ["elsewhere", 0]}),
                "stray": Tensor.from_array("stray", a, meta={"original_op": ["not_in_reference", 0]})})
    al = align_dumps(ref, tgt)
    by_target = {m.target: (m.reference, m.method) for m in al.matches if m.target}
    assert by_target["conv1conv1_reluconv1_bn"] == ("/relu1/Relu_output_0", "original-op")
    assert by_target["/fc/Gemm_output_0"] == ("/fc/Gemm_output_0", "exact")
    assert by_target["stray"] == (None, "unmatched")
