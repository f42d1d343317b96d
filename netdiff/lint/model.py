"""Turn a Caffe prototxt or an ONNX model into a :class:`~netdiff.lint.base.LintModel`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from netdiff._input_files import read_capped
from netdiff.errors import ModelError, NetdiffError
from netdiff.lint.base import LintLayer, LintModel, Shape


def load_lint_model(model: Any, *, weights: str | Path | None = None, with_onnx: bool = False) -> LintModel:
    """Prepare ``model`` (a .prototxt/.onnx path, or an ONNX ModelProto) for linting.

    Args:
        model: Model path or ModelProto.
        weights: Caffe weights (only used when ``with_onnx`` asks for the translated graph).
        with_onnx: Also provide the ONNX graph of a Caffe net (needs its caffemodel; when none is
            found, a note says which checks were skipped).

    Raises:
        ModelError: The file is missing, of an unknown kind, or malformed.
    """
    if not isinstance(model, (str, Path)):
        from netdiff.lint.onnx_to_caffe import onnx_lint_model

        return onnx_lint_model(model, "<in-memory ONNX model>")
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such file (expected a Caffe .prototxt or an .onnx model)")
    suffix = path.suffix.lower()
    if suffix in (".prototxt", ".pt"):
        result = caffe_lint_model(path)
        if with_onnx:
            _attach_caffe_onnx(result, path, weights)
        return result
    if suffix == ".onnx":
        from netdiff.lint.onnx_to_caffe import onnx_lint_model
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=True)
        except Exception as e:  # onnx raises DecodeError, OSError, ValueError...
            raise ModelError(f"{path}: not a readable ONNX model ({e})") from e
        return onnx_lint_model(proto, str(path))
    raise ModelError(f"{path}: unknown model kind {suffix!r}; lint reads a Caffe .prototxt or an .onnx model")


def _attach_caffe_onnx(result: LintModel, path: Path, weights: str | Path | None) -> None:
    from netdiff.runners.caffe import CaffeModel

    try:
        result.onnx = CaffeModel(path, weights=weights).onnx_model()
    except NetdiffError as e:
        result.notes.append(f"weights not checked: {e}")


def caffe_lint_model(path: str | Path) -> LintModel:
    """A Caffe deploy prototxt as lint layers (shapes from Caffe's formulas, weights not read)."""
    from netdiff.caffe.net import load_net

    net = load_net(path, shapes=False)
    shapes = _caffe_shapes(net)
    layers: list[LintLayer] = []
    current: dict[str, Shape | None] = dict(net.inputs)
    for index, layer in enumerate(net.layers):
        ins = tuple(current.get(b) for b in layer.bottoms)
        outs = tuple(shapes.get(layer.name, [None] * len(layer.tops)))
        outs = outs + (None,) * (len(layer.tops) - len(outs))
        for top, shape in zip(layer.tops, outs):
            current[top] = shape
        layers.append(LintLayer(layer.name, layer.type, layer.type, tuple(layer.bottoms), tuple(layer.tops),
                                caffe_params(layer), ins, outs, index))
    return LintModel(str(path), "caffe", layers, inputs=dict(net.inputs), outputs=_caffe_outputs(net),
                     input_dtypes={n: "float32" for n in net.inputs}, text=read_capped(path, "prototxt", 256 * 2**20, ModelError).decode("utf-8", "replace"))


def _caffe_outputs(net: Any) -> list[str]:
    """Blobs that no later layer reads (Caffe's net outputs)."""
    available = list(net.inputs)
    for layer in net.layers:
        for b in layer.bottoms:
            if b in available:
                available.remove(b)
        for t in layer.tops:
            if t in available:
                available.remove(t)
            available.append(t)
    return available


def _caffe_shapes(net: Any) -> dict[str, list[Shape]]:
    """Top shapes per layer, for every layer netdiff's Caffe translator can shape.

    Layers of types netdiff does not execute (and everything that reads their tops) are left out.
    """
    from netdiff.caffe.net import CaffeNet
    from netdiff.caffe.to_onnx import infer_shapes, supported_types

    known = set(supported_types())
    produced = set(net.inputs)
    kept = []
    for layer in net.layers:
        if layer.type in known and all(b in produced for b in layer.bottoms):
            kept.append(layer)
            produced.update(layer.tops)
    if not kept:
        return {}
    partial = CaffeNet(net.name, net.source, dict(net.inputs), dict(net.input_layers), kept)
    try:
        infer_shapes(partial)
    except NetdiffError:
        pass  # shapes computed before the failing layer are kept
    return {k: list(v) for k, v in partial.layer_shapes.items()}


def _ints(values: list[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _spatial(p: Any, base: str, default: int | None) -> tuple[int, int] | None:
    """Caffe's (h, w) parameter from ``<base>_h``/``<base>_w`` or a repeated/single ``<base>``."""
    single = {"kernel": "kernel_size"}.get(base, base)
    if p.get(f"{base}_h") is not None or p.get(f"{base}_w") is not None:
        return int(p.get(f"{base}_h", default or 0)), int(p.get(f"{base}_w", default or 0))
    values = p.getall(single)
    if not values:
        return None if default is None else (default, default)
    return (int(values[0]), int(values[-1]))


def caffe_params(layer: Any) -> dict[str, Any]:
    """Normalized parameters of a Caffe layer (see :class:`~netdiff.lint.base.LintLayer`)."""
    t = layer.type
    if t == "Permute":
        return {"order": _ints(layer.param("permute_param").getall("order"))}
    if t == "Reshape":
        p = layer.param("reshape_param")
        return {"shape": _ints(p.sub("shape").getall("dim")), "axis": int(p.get("axis", 0)),
                "num_axes": int(p.get("num_axes", -1))}
    if t == "Slice":
        p = layer.param("slice_param")
        axis = p.get("slice_dim") if p.get("axis") is None and p.get("slice_dim") is not None else p.get("axis", 1)
        return {"axis": int(axis), "slice_points": _ints(p.getall("slice_point"))}
    if t == "Tile":
        p = layer.param("tile_param")
        return {"axis": int(p.get("axis", 1)), "tiles": int(p.get("tiles", 0))}
    if t == "Power":
        p = layer.param("power_param")
        return {"power": float(p.get("power", 1.0)), "scale": float(p.get("scale", 1.0)),
                "shift": float(p.get("shift", 0.0))}
    if t == "Pooling":
        p = layer.param("pooling_param")
        method = str(p.get("pool", "MAX")).upper()
        ceil = str(p.get("round_mode", "CEIL")).upper() not in ("FLOOR", "1") and p.get("ceil_mode", True) is not False
        return {"global": bool(p.get("global_pooling", False)), "kernel": _spatial(p, "kernel", None),
                "stride": _spatial(p, "stride", 1), "pad": _spatial(p, "pad", 0), "pad_end": _spatial(p, "pad", 0),
                "ceil": ceil, "method": {"0": "MAX", "1": "AVE"}.get(method, method),
                "explicit_rounding": p.get("round_mode") is not None or p.get("ceil_mode") is not None}
    if t in ("Convolution", "Deconvolution", "ConvolutionDepthwise", "DepthwiseConvolution"):
        p = layer.param("convolution_param")
        return {"group": int(p.get("group", 1)), "num_output": int(p.get("num_output", 0)),
                "kernel": _spatial(p, "kernel", None), "stride": _spatial(p, "stride", 1),
                "pad": _spatial(p, "pad", 0), "dilation": _spatial(p, "dilation", 1)}
    if t == "Interp":
        return {k: v for k, v in layer.param("interp_param").to_dict().items()}
    if t == "Upsample":
        return {k: v for k, v in layer.param("upsample_param").to_dict().items()}
    if t == "Concat":
        p = layer.param("concat_param")
        axis = p.get("concat_dim") if p.get("axis") is None and p.get("concat_dim") is not None else p.get("axis", 1)
        return {"axis": int(axis)}
    return {}


def pooled_size(size: int, kernel: int, pad_begin: int, pad_end: int, stride: int, ceil: bool) -> int:
    """Pooled length with floor or ceil rounding (Caffe's rule that the last window starts inside)."""
    num = size + pad_begin + pad_end - kernel
    out = (math.ceil(num / stride) if ceil else num // stride) + 1
    if ceil and (pad_begin or pad_end) and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out
