"""Resize semantics: re-run an origin Resize/Upsample with other sampling conventions.

Converters and NPUs implement resizing with their own conventions: Caffe's Interp and many NPUs
align corners, PyTorch's default bilinear uses half-pixel centres, PyTorch's nearest is asymmetric
with floor rounding, TensorFlow 1 had its own. A resize converted with another convention gives
no error message, only a slightly shifted image that later layers amplify. For a Resize/Upsample
origin, the op is re-run by onnxruntime on the target's own input under every convention; one that
reproduces the target's output while the reference's does not names the cause. When the target did
not dump the resize's input or output, the reference subgraph from the nearest dumped tensors to the
origin is re-run with each convention instead (:mod:`netdiff.diagnosis._sites`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from netdiff.diagnosis._common import cosine, explain_origins, pick, severity_at, variant_explains
from netdiff.diagnosis._sites import Site
from netdiff.diagnosis.base import Context, register_rule
from netdiff.types import Finding

RESIZE_OPS = ("Resize", "Upsample")
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
#: Opset of the re-run Resize nodes (every coordinate mode above, sizes input).
_OPSET = 13


@register_rule("resize-semantics")
def resize_semantics(context: Context) -> Iterator[Finding]:
    """Name the resize convention (coordinate mode, nearest rounding) that reproduces an origin."""
    yield from explain_origins(context, RESIZE_OPS, _explain)


def conventions(mode: str) -> list[dict[str, Any]]:
    """Resize attribute sets to try for a reference resize of ``mode`` (nearest, linear, cubic):
    every nearest and linear convention (converters also swap the interpolation, e.g. to a
    nearest-only Upsample), and the cubic ones for a cubic reference."""
    trials: list[dict[str, Any]] = [{"mode": "nearest", "coordinate_transformation_mode": c, "nearest_mode": n}
                                    for c in COORDINATE_MODES for n in NEAREST_MODES]
    trials += [{"mode": "linear", "coordinate_transformation_mode": c} for c in COORDINATE_MODES]
    if mode == "cubic":
        trials += [{"mode": "cubic", "coordinate_transformation_mode": c, "cubic_coeff_a": a}
                   for c in COORDINATE_MODES for a in (-0.75, -0.5)]
    return trials


def resize_attributes(node: Any) -> dict[str, Any]:
    """A Resize/Upsample node's sampling attributes with the ONNX defaults filled in."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    mode = attrs.get("mode", "nearest")
    out: dict[str, Any] = {"mode": "linear" if mode == "bilinear" else mode}
    if node.op_type == "Upsample":  # Upsample samples like an asymmetric Resize with floor rounding
        out["coordinate_transformation_mode"] = "asymmetric"
        if out["mode"] == "nearest":
            out["nearest_mode"] = "floor"
        return out
    out["coordinate_transformation_mode"] = attrs.get("coordinate_transformation_mode", "half_pixel")
    if out["mode"] == "nearest":
        out["nearest_mode"] = attrs.get("nearest_mode", "round_prefer_floor")
    if out["mode"] == "cubic":
        out["cubic_coeff_a"] = attrs.get("cubic_coeff_a", -0.75)
    return out


def _explain(context: Context, site: Site) -> Finding | None:
    node, name, target_out, shape = site.node, site.name, site.target_out, site.op_shape
    data = np.asarray(site.feeds.get(node.input[0])) if node.input and node.input[0] in site.feeds else None
    if data is None or data.ndim != 4 or len(shape) != 4 or data.shape[:2] != shape[:2]:
        return None
    own = resize_attributes(node)
    scores = []
    for trial in conventions(own["mode"]):
        out = site.forward(_resize(data, shape, trial))
        if out is not None and out.shape == target_out.shape:
            scores.append((cosine(out, target_out), trial))
    as_own = next((c for c, t in scores if t == own), None)
    best_cos = max((c for c, _ in scores if c == c), default=None)  # NaN: a side is all zero
    if as_own is None or best_cos is None or as_own != as_own:
        return None
    # conventions that sample identically here tie: name the one closest to the reference's
    tied = [t for c, t in scores if c >= best_cos - 1e-9]
    best = min(tied, key=lambda t: sum(t.get(k) != v for k, v in own.items()))
    if own in tied or not variant_explains(best_cos, as_own):
        return None
    severity = severity_at(context, as_own)
    evidence = {"reference": own, "target_matches": best, "cosine_reproduced": best_cos,
                "cosine_reference_convention": as_own, "equivalent": [_describe(t) for t in tied if t != best],
                "conventions_tried": len(scores)}
    message = (f"{name}: a {_describe(best)} resize reproduces the target's output (cosine {best_cos:.5f}), "
               f"the reference's {_describe(own)} only reaches {as_own:.5f} on the same input: the target "
               f"resizes with another sampling convention")
    return Finding("resize_semantics", name, severity, message, evidence, _fix(context, own, best))


def _describe(attrs: dict[str, Any]) -> str:
    words = [attrs["mode"], attrs["coordinate_transformation_mode"]]
    if "nearest_mode" in attrs:
        words.append(attrs["nearest_mode"])
    if "cubic_coeff_a" in attrs:
        words.append(f"a={attrs['cubic_coeff_a']}")
    return " / ".join(words)


def _fix(context: Context, own: dict[str, Any], best: dict[str, Any]) -> str:
    target_mode = best["coordinate_transformation_mode"]
    hint = {
        "align_corners": "the target aligns corners (Caffe Interp, align_corners=True)",
        "asymmetric": "the target samples asymmetrically (PyTorch nearest, TF1 resize without half_pixel_centers)",
        "half_pixel": "the target uses half-pixel centres (PyTorch align_corners=False, OpenCV)",
        "pytorch_half_pixel": "the target uses PyTorch's half-pixel convention",
        "tf_half_pixel_for_nn": "the target uses TF's half_pixel_centers for nearest",
    }.get(target_mode, f"the target uses {target_mode}")
    if best.get("nearest_mode") != own.get("nearest_mode") and target_mode == own["coordinate_transformation_mode"]:
        hint = f"the target rounds nearest neighbours with {best['nearest_mode']}"
    if best["mode"] != own["mode"]:
        hint = f"the target interpolates {best['mode']} ({target_mode}), the model {own['mode']}"
    return pick(context,
                nnie=f"{hint}: NNIE's Upsample (nearest) and Interp (bilinear, corners aligned) have fixed "
                     "conventions; export the model with the same one, or replace the resize by a Deconvolution "
                     "with fixed weights",
                generic=f"{hint}: make both sides sample alike: set the converter's or runtime's resize to the "
                        f"model's {_describe(own)}, or export the model with the target's convention")


def _resize(data: np.ndarray, shape: tuple[int, ...], attrs: dict[str, Any]) -> np.ndarray | None:
    """``data`` resized to ``shape`` by onnxruntime's Resize with ``attrs`` (None when refused)."""
    from onnx import TensorProto, helper

    from netdiff.isolated import NodeRunner

    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [int(d) for d in shape])
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)
    runner = NodeRunner(node, ["x"], ["y"], {"sizes": sizes}, [helper.make_opsetid("", _OPSET)], 8)
    try:
        return runner.run({"x": np.ascontiguousarray(data)})[0]
    except Exception:  # onnxruntime refuses a combination: that convention is not a candidate
        return None
