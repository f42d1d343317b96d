"""caffemodel decoding (V1/V2, legacy shapes, packed/unpacked, double, fp16 raw) and prototxt parsing."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_testkit import blob, layer, ld, netparam, run, string, write_model

from netdiff.caffe import load_net
from netdiff.caffe.proto import parse_caffemodel, read_caffemodel
from netdiff.caffe.prototxt import parse_prototxt
from netdiff.cli import main
from netdiff.errors import ModelError

W = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7 - 1


@pytest.mark.parametrize("opts", [{}, {"packed": False}, {"double": True}, {"double": True, "packed": False},
                                  {"legacy": True}, {"fp16_raw": True}])
def test_blob_encodings(opts):
    net = parse_caffemodel(netparam([layer("conv", "Convolution", ["a"], ["b"], [W, W[:, 0, 0, 0]], **opts)]))
    (lay,) = net.layers
    assert (lay.name, lay.type, lay.bottoms, lay.tops) == ("conv", "Convolution", ["a"], ["b"])
    tol = 1e-3 if opts.get("fp16_raw") else 0
    np.testing.assert_allclose(lay.blobs[0].array, W, atol=tol)
    assert lay.blobs[1].array.shape == ((1, 1, 1, 2) if opts.get("legacy") else (2,))
    assert lay.blobs[0].legacy == bool(opts.get("legacy"))


def test_v1_binary_and_unknown_fields_skipped():
    fork_param = ld(149, b"\x0d\x00\x00\x00\x40")  # a fork's upsample_param {scale: 2.0}: skipped
    data = netparam([layer("ip", "", ["x"], ["y"], [W.reshape(2, 12)], v1_type=14) + fork_param], v1=True)
    net = parse_caffemodel(data)
    assert net.v1 and net.layers[0].type == "InnerProduct" and net.layers[0].blobs[0].array.shape == (2, 12)


@pytest.mark.parametrize("cut", [1, 7, 40, -3])
def test_truncated_caffemodel_is_one_line_model_error(tmp_path, cut):
    data = netparam([layer("conv", "Convolution", ["a"], ["b"], [W])])
    path = tmp_path / "t.caffemodel"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelError) as err:
        read_caffemodel(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_caffemodel_count_mismatch_and_garbage(tmp_path):
    bad_blob = ld(7, ld(1, b"\x02\x03")) + ld(5, np.zeros(5, "<f4").tobytes())  # shape 2x3 but 5 floats
    with pytest.raises(ModelError, match="needs 6 values but the file holds 5"):
        parse_caffemodel(netparam([string(1, "x") + ld(7, bad_blob)]))
    with pytest.raises(ModelError, match="not a valid caffemodel"):
        parse_caffemodel(b"\xff" * 32)
    with pytest.raises(ModelError, match="no layers"):
        parse_caffemodel(b"")


def test_cli_reports_corrupt_model_in_one_line(tmp_path, capsys):
    proto = write_model(tmp_path, 'input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
                        'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }', {"r": []})
    (tmp_path / "net.caffemodel").write_bytes(netparam([layer("r", "ReLU")])[:-2])
    code = main(["caffe-to-onnx", str(proto), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "caffemodel" in err and "Traceback" not in err
    proto.write_text('layer { name: "r" type: "ReLU" bottom: "data" ')
    assert main(["caffe-to-onnx", str(proto), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prototxt ends early" in err


def test_prototxt_keeps_fork_fields_by_name():
    msg = parse_prototxt('''
        # comment
        layer { name: "up" type: "Upsample" upsample_param { scale: 2 upsample_h: 38 }
                interp_param: { zoom_factor: 2 } norm_param < across_spatial: false > }
        layer { name: "p" type: "Permute" permute_param { order: [0, 2, 3, 1] } }
    ''')
    up, perm = msg.getall("layer")
    assert up.sub("upsample_param").to_dict() == {"scale": 2, "upsample_h": 38}
    assert up.sub("interp_param").get("zoom_factor") == 2
    assert up.sub("norm_param").get("across_spatial") is False
    assert perm.sub("permute_param").getall("order") == [0, 2, 3, 1]


@pytest.mark.parametrize("text,where", [('layer { name: "a" type: }', "expected a value"),
                                        ('layer { name: "a" ', "ends early"),
                                        ('layer { name: "a\\q" }', "unknown escape"),
                                        ("layer { name: @ }", "cannot parse")])
def test_malformed_prototxt(tmp_path, text, where):
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    with pytest.raises(ModelError, match=where) as err:
        load_net(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_inputs_v1_layers_and_phase_filtering(tmp_path):
    text = ('name: "v1" input: "data" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3\n'
            'layers { name: "ip" type: INNER_PRODUCT bottom: "data" top: "ip" inner_product_param { num_output: 4 } }\n'
            'layers { name: "drop" type: DROPOUT bottom: "ip" top: "ip" include { phase: TRAIN } }\n'
            'layers { name: "relu" type: RELU bottom: "ip" top: "ip" exclude { phase: TRAIN } }\n')
    proto = tmp_path / "v1.prototxt"
    proto.write_text(text)
    w, b = np.ones((4, 18)), np.arange(4.0)
    model = netparam([layer("ip", "", ["data"], ["ip"], [w, b], v1_type=14),
                      layer("ip_split", "", ["ip"], ["a", "b"], v1_type=22),
                      layer("loss", "", ["ip"], ["loss"], v1_type=21)], v1=True)
    (tmp_path / "v1.caffemodel").write_bytes(model)
    net = load_net(proto, tmp_path / "v1.caffemodel")
    assert [(x.name, x.type) for x in net.layers] == [("ip", "InnerProduct"), ("relu", "ReLU")]
    assert net.inputs == {"data": (1, 2, 3, 3)} and net.blob_shapes["ip"] == (1, 4)
    assert net.layers[0].params == {"inner_product_param": {"num_output": 4}}
    x = -np.ones((1, 2, 3, 3))
    dump = run(tmp_path / "r", text, {"ip": [w, b]}, {"data": x})
    np.testing.assert_allclose(dump["relu"].load(), np.maximum(x.reshape(1, 18) @ w.T + b, 0))


def test_load_net_without_weights_infers_shapes(tmp_path):
    proto = tmp_path / "n.prototxt"
    proto.write_text('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 7 dim: 7 } } }'
                     'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                     'convolution_param { num_output: 5 kernel_size: 3 } }'
                     'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { kernel_size: 2 stride: 2 } }')
    net = load_net(proto)
    assert net.input_layers == {"data": "in"} and net.weights is None
    assert net.blob_shapes == {"data": (1, 3, 7, 7), "c": (1, 5, 5, 5), "p": (1, 5, 3, 3)}
    assert [x.blobs for x in net.layers] == [[], []]
