"""The caffe runner: per-layer naming, in-place chains, weights discovery, errors, LeNet vs OpenCV."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_testkit import layer, netparam, run, shared_dir, write_model

from netdiff.errors import ModelError, UnsupportedOpError
from netdiff.runners import load_model
from netdiff.runners.caffe import CaffeModel

CHAIN = '''name: "chain"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "conv1/bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "conv1/scale" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
'''


def chain_weights(rng):
    return {"conv1": [rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)],
            "conv1/bn": [rng.standard_normal(3), rng.random(3) + 0.5, [2.0]],
            "conv1/scale": [rng.standard_normal(3), rng.standard_normal(3)]}


def test_inplace_chain_gives_four_distinct_tensors(tmp_path):
    rng = np.random.default_rng(0)
    weights = chain_weights(rng)
    x = rng.standard_normal((1, 2, 5, 5))
    dump = run(tmp_path, CHAIN, weights, {"data": x})
    names = ["conv1", "conv1/bn", "conv1/scale", "relu1"]
    assert dump.names == ["data", *names, "pool1"]
    values = [dump[n].load() for n in names]
    for i in range(3):
        assert not np.allclose(values[i], values[i + 1])
    bn_w = weights["conv1/bn"]
    bn = (values[0] - (bn_w[0] / 2).reshape(1, 3, 1, 1)) / np.sqrt((bn_w[1] / 2).reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(values[1], bn, rtol=1e-4, atol=1e-5)
    g, b = weights["conv1/scale"]
    np.testing.assert_allclose(values[2], bn * g.reshape(1, 3, 1, 1) + b.reshape(1, 3, 1, 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(values[3], np.maximum(values[2], 0))
    assert dump.meta["blobs"] == {"data": ["data"], "conv1": names, "pool1": ["pool1"]}
    t = dump["conv1/scale"]
    assert (t.op_type, t.order, t.inputs) == ("Scale", 3, ("conv1/bn",))
    assert t.meta == {"node": "conv1/scale", "output_index": 0, "blob": "conv1"}
    assert dump["pool1"].inputs == ("relu1",)
    assert dump["data"].op_type == "Input" and dump["data"].order == 0
    assert dump["data"].meta == {"node": "data", "output_index": 0, "blob": "data"}
    assert dump.graph_inputs == ["data"] and dump.graph_outputs == ["pool1"]


def test_onnx_model_nodes_are_named_by_layer(tmp_path):
    from netdiff.runners.onnxrt import OnnxModel

    rng = np.random.default_rng(1)
    proto = write_model(tmp_path, CHAIN, chain_weights(rng))
    model = load_model(proto)
    assert isinstance(model, CaffeModel) and model.input_specs()[0].shape == (1, 2, 5, 5)
    onnx_model = model.onnx_model()
    by_output = {out: node.name for node in onnx_model.graph.node for out in node.output}
    for name in ["conv1", "conv1/bn", "conv1/scale", "relu1", "pool1"]:
        assert by_output[name] == name
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    again = OnnxModel.from_proto(onnx_model).run({"data": x})
    np.testing.assert_array_equal(again["relu1"].load(), model.run({"data": x})["relu1"].load())


def test_weights_discovery(tmp_path):
    text = 'input: "data" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\nlayer { name: "s" type: "Scale" bottom: "data" top: "s" }'
    proto = write_model(tmp_path / "a", text, {"s": [[3.0]]}, stem="deploy")
    (tmp_path / "a" / "deploy.caffemodel").rename(tmp_path / "a" / "trained_iter_100.caffemodel")
    x = np.ones((1, 1, 2, 2), np.float32)
    assert CaffeModel(proto).run({"data": x})["s"].load().sum() == 12  # the only caffemodel in the folder
    (tmp_path / "a" / "other.caffemodel").write_bytes(netparam([layer("s", "Scale", blobs=[[5.0]])]))
    with pytest.raises(ModelError, match="several caffemodels"):
        CaffeModel(proto).run({"data": x})
    assert CaffeModel(proto, weights=tmp_path / "a" / "other.caffemodel").run({"data": x})["s"].load().sum() == 20
    (tmp_path / "a" / "deploy.caffemodel").write_bytes(netparam([layer("s", "Scale", blobs=[[2.0]])]))
    assert CaffeModel(proto).run({"data": x})["s"].load().sum() == 8  # <stem>.caffemodel wins
    lonely = tmp_path / "b" / "net.prototxt"
    lonely.parent.mkdir()
    lonely.write_text(text)
    with pytest.raises(ModelError, match="no weights found"):
        CaffeModel(lonely).run({"data": x})


def test_missing_and_misshaped_weights(tmp_path):
    text = ('input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 1 } }')
    with pytest.raises(ModelError, match="'c' \\(Convolution\\) needs filters"):
        run(tmp_path / "a", text, {"other": [[1.0]]}, {"data": np.zeros((1, 2, 3, 3))})
    with pytest.raises(ModelError, match="expected \\[4, 2, 1, 1\\]"):
        run(tmp_path / "b", text, {"c": [np.zeros((4, 3)), np.zeros(4)]}, {"data": np.zeros((1, 2, 3, 3))})


def test_unsupported_layer_names_layer_type_and_supported(tmp_path):
    text = ('input: "data" input_shape { dim: 1 dim: 2 }\n'
            'layer { name: "weird" type: "FancyFork" bottom: "data" top: "y" }')
    with pytest.raises(UnsupportedOpError) as err:
        run(tmp_path / "a", text, {}, {"data": np.zeros((1, 2))})
    msg = str(err.value)
    assert "'weird'" in msg and "'FancyFork'" in msg and "Convolution" in msg and "PriorBox" in msg
    text = 'layer { name: "mnist" type: "Data" top: "data" }'
    with pytest.raises(UnsupportedOpError, match="training-only"):
        run(tmp_path / "b", text, {}, {})


def test_multi_top_naming_and_input_layer_indices(tmp_path):
    text = ('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 dim: 4 } } }\n'
            'layer { name: "sl" type: "Slice" bottom: "a" top: "x" top: "y" slice_param { axis: 1 } }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "y" top: "x" }\n')
    dump = run(tmp_path, text, {}, {"a": np.arange(4.0).reshape(1, 4), "b": np.zeros((1, 4))})
    assert dump.names == ["a", "b", "sl:0", "sl:1", "sum"]
    assert dump["b"].meta == {"node": "in", "output_index": 1, "blob": "b"}
    assert dump["sum"].inputs == ("sl:0", "sl:1")
    np.testing.assert_array_equal(dump["sum"].load(), [[2.0, 4.0]])
    assert dump.meta["blobs"]["x"] == ["sl:0", "sum"]


def digit_image() -> np.ndarray:
    """A hand-drawn-looking "0" on a 28x28 canvas (smooth ring), values 0..1."""
    from scipy import ndimage

    yy, xx = np.mgrid[0:28, 0:28]
    r = np.hypot((yy - 14) / 9.0, (xx - 13.5) / 6.0)
    img = ((r > 0.7) & (r < 1.0)).astype(np.float32)
    img = ndimage.gaussian_filter(img, 0.8)
    return img / img.max()


def test_lenet_matches_opencv_per_layer():
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    folder = shared_dir() / "fixtures" / "caffe" / "lenet"
    if not folder.is_dir():
        pytest.skip("LeNet fixture not found")
    proto, weights = folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"
    x = np.repeat(digit_image()[None, None], 64, axis=0).astype(np.float32)  # deploy net declares batch 64
    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    net.enableFusion(False)
    net.setInput(x)
    names = list(net.getLayerNames())
    outs = net.forward(names)
    dump = CaffeModel(proto).run({"data": x})
    assert names == [n for n in dump.names if n != "data"]
    for name, ref in zip(names, outs):
        ours = dump[name].load().astype(np.float64).ravel()
        ref = np.asarray(ref, np.float64).ravel()
        cosine = ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref))
        assert cosine >= 0.99999, (name, cosine)
    assert dump["prob"].load()[0].argmax() == 0


def test_silence_consumes_a_blob_without_output(tmp_path):
    text = ('input: "data" input_shape { dim: 1 dim: 3 }\n'
            'layer { name: "sl" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { slice_point: 1 } }\n'
            'layer { name: "quiet" type: "Silence" bottom: "b" }\n'
            'layer { name: "act" type: "TanH" bottom: "a" top: "t" }\n')
    dump = run(tmp_path, text, {}, {"data": np.ones((1, 3))})
    assert dump.names == ["data", "sl:0", "sl:1", "act"]
    assert dump.graph_outputs == ["act"]
    np.testing.assert_allclose(dump["act"].load(), np.tanh([[1.0]]), rtol=1e-6)


def test_caffe_net_runs_at_another_batch_than_declared(tmp_path):
    """A deploy prototxt's input_shape batch is a default (LeNet declares 64): Caffe reshapes to what it is fed."""
    from caffe_testkit import write_model

    from netdiff.runners.caffe import CaffeModel

    text = ('input: "data"\ninput_shape { dim: 8 dim: 2 dim: 5 dim: 5 }\n'
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 3 kernel_size: 3 } }\n'
            'layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 4 } }\n')
    rng = np.random.default_rng(0)
    w = {"conv": [rng.standard_normal((3, 2, 3, 3)).astype(np.float32), np.zeros(3, np.float32)],
         "fc": [rng.standard_normal((4, 27)).astype(np.float32), np.zeros(4, np.float32)]}
    model = CaffeModel(write_model(tmp_path, text, w))
    x = rng.standard_normal((8, 2, 5, 5)).astype(np.float32)
    full = model.run({"data": x})["fc"].load()
    one = model.run({"data": x[:1]})["fc"].load()
    assert one.shape == (1, 4) and np.allclose(one, full[:1], atol=1e-5)
    assert model.onnx_model().graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


INTERP = '''name: "interp"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "up" type: "Interp" bottom: "conv1" top: "up" interp_param { height: 16 width: 16 } }
layer { name: "relu" type: "ReLU" bottom: "up" top: "out" }
'''


def test_interp_against_a_half_pixel_target_names_the_resize_convention(tmp_path):
    """Caffe's Interp aligns corners; a target that resized with half-pixel centres (as PyTorch's default
    bilinear and many NPU kernels do) is named by the resize_semantics rule, from a plain dump."""
    import netdiff

    rng = np.random.default_rng(1)
    proto = write_model(tmp_path / "net", INTERP, {"conv1": [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]})

    def half_pixel(device):
        for node in device.graph.node:
            for attribute in node.attribute:
                if node.op_type == "Resize" and attribute.name == "coordinate_transformation_mode":
                    attribute.s = b"half_pixel"

    x = {"data": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    report = netdiff.compare(proto, _device_dump(tmp_path, proto, half_pixel, x), x)
    assert report.first_divergence == "up"
    top = report.findings[0]
    assert (top.kind, top.layer) == ("resize_semantics", "up")
    assert top.evidence["reference"]["coordinate_transformation_mode"] == "align_corners"
    assert top.evidence["target_matches"]["coordinate_transformation_mode"] == "half_pixel"


FC_NET = '''name: "fc"
input: "data"
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
'''


def test_inner_product_fed_an_hwc_flattened_map_is_named(tmp_path):
    """Caffe's InnerProduct flattens inside the layer, so the FC layer is the origin; a device that
    holds conv1 as NHWC and flattens it as it is gives the flatten_order finding at fc."""
    from onnx import helper

    import netdiff

    rng = np.random.default_rng(2)
    proto = write_model(tmp_path / "net", FC_NET, {"conv1": [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
                                                   "fc": [rng.standard_normal((5, 144)), rng.standard_normal(5)]})

    def flatten_nhwc(device):
        flatten = next(n for n in device.graph.node if n.op_type == "Flatten")
        source = flatten.input[0]
        flatten.input[0] = source + "_nhwc"
        index = list(device.graph.node).index(flatten)
        device.graph.node.insert(index, helper.make_node("Transpose", [source], [source + "_nhwc"], perm=[0, 2, 3, 1]))

    x = {"data": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    report = netdiff.compare(proto, _device_dump(tmp_path, proto, flatten_nhwc, x), x)
    assert report.first_divergence == "fc"
    top = report.findings[0]
    assert (top.kind, top.layer) == ("flatten_order", "fc")
    assert top.evidence["target_order"] == "HWC" and top.evidence["cosine_reproduced"] > 0.9999


def _device_dump(tmp_path, proto, edit, feeds):
    """A device-style dump: the Caffe net's ONNX translation, edited by ``edit``, run and written as a dump."""
    import onnx

    from netdiff.manifest import write_dump
    from netdiff.runners.onnxrt import OnnxModel

    device = onnx.ModelProto()
    device.CopyFrom(load_model(proto).onnx_model())
    edit(device)
    write_dump(OnnxModel.from_proto(device).run(feeds), tmp_path / "device")
    return tmp_path / "device"
