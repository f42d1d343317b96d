"""Prototxt text for the exact rewrites lint suggests (Tile -> Concat, ReLU6 -> ReLU/Power/Eltwise, ...)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def layer_text(name: str, type_: str, bottoms: Sequence[str], tops: Sequence[str], body: str = "") -> str:
    """One ``layer { ... }`` block."""
    lines = ["layer {", f'  name: "{name}"', f'  type: "{type_}"']
    lines += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{t}"' for t in tops]
    if body:
        lines.append(f"  {body}")
    return "\n".join(lines + ["}"])


def tile_as_concat(name: str, bottom: str, top: str, axis: int, tiles: int) -> str:
    """Caffe Tile(axis, tiles) == Concat of ``tiles`` copies of the bottom along ``axis`` (exact)."""
    return layer_text(name, "Concat", [bottom] * tiles, [top], f"concat_param {{ axis: {axis} }}")


def relu6_as_supported(name: str, bottom: str, top: str) -> str:
    """min(max(x, 0), 6) == relu(x) - relu(relu(x) - 6), from ReLU, Power and Eltwise (exact)."""
    r, p, q = f"{name}_relu", f"{name}_minus6", f"{name}_over6"
    return "\n".join([
        layer_text(r, "ReLU", [bottom], [r]),
        layer_text(p, "Power", [r], [p], "power_param { power: 1 scale: 1 shift: -6 }"),
        layer_text(q, "ReLU", [p], [q]),
        layer_text(name, "Eltwise", [r, q], [top], "eltwise_param { operation: SUM coeff: 1 coeff: -1 }"),
    ])


def swish_as_supported(name: str, bottom: str, top: str) -> str:
    """x * sigmoid(x) from Sigmoid and Eltwise PROD (exact)."""
    s = f"{name}_sigmoid"
    return "\n".join([layer_text(s, "Sigmoid", [bottom], [s]),
                      layer_text(name, "Eltwise", [bottom, s], [top], "eltwise_param { operation: PROD }")])


def crop_rows(name: str, bottom: str, top: str, axis: int, keep: int) -> str:
    """Keep the first ``keep`` entries of ``axis`` with Slice (the rest goes to a Silence layer)."""
    rest = f"{name}_dropped"
    return "\n".join([
        layer_text(name, "Slice", [bottom], [top, rest], f"slice_param {{ axis: {axis} slice_point: {keep} }}"),
        layer_text(f"{name}_silence", "Silence", [rest], []),
    ])


def replace_layer(text: str, name: str, replacement: str) -> str:
    """Return prototxt ``text`` with the ``layer { name: "<name>" ... }`` block replaced.

    Raises:
        KeyError: No layer block with that name.
    """
    pattern = re.compile(r'name\s*:\s*"' + re.escape(name) + r'"')
    for match in re.finditer(r"\blayers?\s*:?\s*\{", text):
        start, depth, i = match.start(), 0, match.end() - 1
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        block = text[start:i + 1]
        inner = block[block.index("{") + 1:]
        first_nested = inner.find("{")
        head = inner if first_nested < 0 else inner[:first_nested]
        if pattern.search(head):
            return text[:start] + replacement + text[i + 1:]
    raise KeyError(name)


#: Fixes for unsupported NNIE layer types that have no exact one-layer rewrite.
GENERIC_FIXES = {
    "Interp": "use Upsample {{ scale: N }} for an integer nearest-neighbour factor; a bilinear Interp can become a "
              "fixed-weight Deconvolution (group = channels), whose border values differ from Interp's "
              "align-corners formula (check it with netdiff compare); or make it a Custom layer (CPU)",
    "Crop": "fix the input size so the crop is not needed (HAN), or use Slice on axes 2 and 3 (Slice supports every "
            "axis except 0){extra}",
    "PriorBox": "cut it from the prototxt and compute the priors on the CPU: they depend only on the input and "
                "feature-map sizes (the SDK sample runs PriorBox/Softmax/DetectionOutput of SSD in "
                "sample_svp_nnie_software.c)",
    "DetectionOutput": "cut it from the prototxt and decode boxes + NMS on the CPU, as the SDK's SSD sample does "
                       "(sample_svp_nnie_software.c); compare its inputs (loc, conf) instead",
    "Reorg": "use the extended PassThrough layer (YOLOv2 reorg, block_h/w 1-255), then check its channel order "
             "with netdiff compare",
    "ShuffleChannel": "make it a Custom layer (CPU) or restructure the net: Reshape+Permute+Reshape needs a "
                      "Permute order other than (0,2,3,1)",
}


def generic_fix(type_: str | None, in_shape: Any, out_shape: Any) -> str:
    """The suggested fix for an unsupported layer type without an exact rewrite."""
    if type_ in GENERIC_FIXES:
        extra = ""
        if type_ == "Crop" and out_shape and in_shape:
            extra = f": keep {list(out_shape[2:])} of {list(in_shape[2:])}"
        return GENERIC_FIXES[type_].format(extra=extra).replace("{{", "{").replace("}}", "}")
    return ("replace it by supported layers, or turn it into a Custom layer (custom_param { shape { dim ... } } "
            "per top) that your application runs on the CPU")
