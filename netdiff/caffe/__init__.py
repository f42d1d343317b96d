"""Caffe without Caffe: read deploy prototxt + caffemodel and translate them to ONNX.

``load_net(prototxt, weights=None)`` returns a :class:`CaffeNet` (layers with type, name,
bottoms, tops, params and weights; inferred blob shapes). ``translate(net)`` builds the ONNX
graph that :mod:`netdiff.runners.caffe` runs with onnxruntime. See docs/caffe.md.
"""

from __future__ import annotations

from netdiff.caffe.net import CaffeNet, Layer, load_net


def translate(net: CaffeNet):  # noqa: ANN201  (lazy re-export)
    """Translate ``net`` into ONNX; see :func:`netdiff.caffe.to_onnx.translate`."""
    from netdiff.caffe.to_onnx import translate as _translate

    return _translate(net)


def supported_types() -> list[str]:
    """Caffe layer types netdiff executes, sorted."""
    from netdiff.caffe.to_onnx import supported_types as _supported

    return _supported()


__all__ = ["CaffeNet", "Layer", "load_net", "supported_types", "translate"]
