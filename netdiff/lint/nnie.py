"""NNIE (nnie_mapper / .wk) lint rules: layers the mapper rejects, runs on the CPU, or computes differently.

Facts and source keys come from the research notes (``/work/shared/research/nnie.md`` §4, summarized in
docs/lint.md): [P] HiSilicon primary source, [S] secondary, [T] transcription of the dev guide, [I] inference.
"""

from __future__ import annotations

from collections.abc import Iterator

from netdiff.lint import _rewrite
from netdiff.lint.base import LintLayer, LintModel, LintOptions, LintRule, register_lint_rule
from netdiff.lint.model import pooled_size
from netdiff.types import Finding

#: RuyiStudio's supported_layers list [P: CNNPY] ("Flattern" read as Flatten).
STANDARD = frozenset({
    "Convolution", "Deconvolution", "Pooling", "InnerProduct", "LRN", "BatchNorm", "Scale", "Bias", "Eltwise",
    "ReLU", "PReLU", "AbsVal", "TanH", "Sigmoid", "BNLL", "ELU", "LSTM", "RNN", "Softmax", "Exp", "Log", "Reshape",
    "Flatten", "Split", "Slice", "Concat", "SPP", "Power", "Threshold", "MVN", "Parameter", "Reduction", "Proposal",
    "Custom", "Input", "Dropout",
})
#: Extended layers that need the HiSilicon caffe.proto additions [P: TAU 4.3; S: MEG, FRESH].
EXTENDED = frozenset({"ROIPooling", "PSROIPooling", "Normalize", "Upsample", "PassThrough", "CReLU", "RReLU",
                      "ConvolutionDepthwise", "DepthwiseConvolution", "Permute"})
#: Layers that end an NNIE segment and run on the CPU [P: TAU 4.3].
CPU_TYPES = frozenset({"Proposal", "Custom"})
ROI_TYPES = frozenset({"ROIPooling", "PSROIPooling"})
ACTIVATIONS = frozenset({"ReLU", "PReLU", "Sigmoid", "TanH", "ELU", "AbsVal", "BNLL", "Power", "Threshold"})
NAME_LIMIT = 31
SEGMENTS, SEG_INPUTS, SEG_OUTPUTS, SEG_ROI, NET_ROI = 8, 16, 16, 2, 4
POWERS = (-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)
SRC_LAYERS = "nnie.md §4: RuyiStudio supported_layers [P: CNNPY], extended layers [P: TAU 4.3], SSD CPU part [P: SMP]"


def _is_cpu(layer: LintLayer) -> bool:
    return layer.type in CPU_TYPES or layer.name.endswith("_cpu")


def _where(model: LintModel, layer: LintLayer) -> str:
    return f"{layer.source_type} node {layer.name!r} (Caffe {layer.type})" if model.format == "onnx" \
        else f"{layer.type} layer {layer.name!r}"


def _tile_fix(rule: LintRule, model: LintModel, layer: LintLayer) -> Finding:
    p, ins, outs = layer.params, layer.in_shape, layer.out_shape
    axis, tiles = p.get("axis"), p.get("tiles")
    evidence: dict = {"in_shape": ins, "out_shape": outs, "axis": axis, "tiles": tiles}
    if axis is None or not tiles:
        return rule.finding(layer.name, f"{_where(model, layer)}: Tile is not an NNIE layer",
                            "replace each tiled axis by a Concat of copies of the bottom along that axis", **evidence)
    axis_name = {1: "C", 2: "H", 3: "W"}.get(axis, f"axis {axis}") if ins is not None and len(ins) == 4 else f"axis {axis}"
    message = (f"{_where(model, layer)}: Tile is not an NNIE layer (mapper rejects it); it repeats {axis_name} "
               f"{tiles} times, {list(ins) if ins else '?'} -> {list(outs) if outs else '?'}")
    if model.format == "caffe":
        rewrite = _rewrite.tile_as_concat(layer.name, layer.bottoms[0], layer.tops[0], axis, tiles)
        evidence["rewrite"] = rewrite
        fix = (f"replace it by a Concat of {tiles} copies of {layer.bottoms[0]!r} along axis {axis} (exact): "
               f'layer {{ name: "{layer.name}" type: "Concat" bottom: "{layer.bottoms[0]}" (x{tiles}) '
               f'top: "{layer.tops[0]}" concat_param {{ axis: {axis} }} }} (full text: evidence.rewrite)')
    else:
        fix = (f"export it as a concatenation of {tiles} copies along axis {axis} (torch.cat([x] * {tiles}, "
               f"dim={axis})), which becomes one Caffe Concat")
    if ins is not None and len(ins) == 4 and axis in (2, 3) and ins[axis] == 1:
        k = f"kernel_h: {tiles} kernel_w: 1 stride_h: {tiles} stride_w: 1" if axis == 2 else \
            f"kernel_h: 1 kernel_w: {tiles} stride_h: 1 stride_w: {tiles}"
        fix += (f"; or, since {axis_name} is 1, a Deconvolution with group = channels, {k}, all weights 1 and "
                "bias_term: false")
    if tiles > 255:
        fix += " (most NNIE integer parameters stop at 255: chain two Concats if the mapper refuses the bottom count)"
    return rule.finding(layer.name, message, fix, **evidence)


@register_lint_rule("nnie", "unsupported-layer", kind="unsupported_layer", severity="error", source=SRC_LAYERS,
                    summary="Layer types outside the mapper's standard and extended lists (Tile, Interp, Crop, "
                            "PriorBox, DetectionOutput, ReLU6, ...), and ONNX ops with no Caffe layer.")
def check_unsupported(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        if layer.type is None:
            reason = layer.params.get("reason") or f"Caffe has no {layer.source_type} layer"
            yield rule.finding(layer.name, f"{layer.source_type} node {layer.name!r}: {reason}; the ONNX->Caffe "
                               "conversion fails here", "replace it in the source model by ops that map to Caffe "
                               "layers, or fold it with onnx-simplifier when it only computes constants",
                               onnx_op=layer.source_type)
        elif layer.type in STANDARD or layer.type in EXTENDED:
            continue
        elif layer.type == "Tile":
            yield _tile_fix(rule, model, layer)
        elif layer.type in ("ReLU6", "Swish") and model.format == "caffe":
            make = _rewrite.relu6_as_supported if layer.type == "ReLU6" else _rewrite.swish_as_supported
            rewrite = make(layer.name, layer.bottoms[0], layer.tops[0])
            how = "relu(x) - relu(relu(x) - 6): ReLU, Power {shift: -6}, ReLU, Eltwise SUM {coeff: 1, -1}" \
                if layer.type == "ReLU6" else "x * sigmoid(x): Sigmoid, Eltwise PROD"
            yield rule.finding(layer.name, f"{_where(model, layer)}: {layer.type} is not an NNIE layer",
                               f"compose it from supported layers, exactly as {how} (full prototxt: "
                               "evidence.rewrite)", rewrite=rewrite)
        elif layer.type == "ReLU6":
            yield rule.finding(layer.name, f"{_where(model, layer)}: ReLU6 is not an NNIE layer",
                               "export it as relu(x) - relu(relu(x) - 6) (exact; becomes ReLU, Power, ReLU and "
                               "Eltwise SUM in Caffe)")
        else:
            yield rule.finding(layer.name, f"{_where(model, layer)}: {layer.type} is not an NNIE layer (absent from "
                               "the mapper's standard and extended lists)", _rewrite.generic_fix(layer.type, layer.in_shape, layer.out_shape))


@register_lint_rule("nnie", "cpu-layer", kind="unsupported_layer", severity="info",
                    source="nnie.md §4: Proposal/Custom non-support layers [P: TAU 4.3]; _cpu suffix [P: MSD]",
                    summary="Proposal, Custom and *_cpu layers: run by your application on the CPU, segment boundary.")
def check_cpu_layers(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        if _is_cpu(layer):
            yield rule.finding(layer.name, f"{_where(model, layer)} runs on the CPU and splits the net into NNIE "
                               "segments", "implement it in the application; its inputs are reported NNIE outputs")


@register_lint_rule("nnie", "permute-order", kind="unsupported_layer", severity="error",
                    source="nnie.md §4: mapper error 'Permute can only support (0,1,2,3) -> (0,2,3,1) order!' "
                           "[S: FRESH, HYC]",
                    summary="Permute (ONNX Transpose) with an order other than (0,2,3,1).")
def check_permute(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        order = tuple(layer.params.get("order", ())) if layer.type == "Permute" else None
        if order is not None and order != (0, 2, 3, 1):
            yield rule.finding(layer.name, f"{_where(model, layer)} has order {list(order)}; nnie_mapper only "
                               "accepts (0,2,3,1) ('Permute can only support (0,1,2,3) -> (0,2,3,1) order!')",
                               "remove the Permute (keep NCHW to the output and transpose on the CPU), or move it "
                               "after the last NNIE layer", order=list(order))


@register_lint_rule("nnie", "reshape-batch", kind="unsupported_layer", severity="error",
                    source="nnie.md §4: 'Reshape must be 4-D with dim: 0 first; the batch dimension cannot change' "
                           "[S: HYC]",
                    summary="Reshape/Flatten that changes the batch dimension (error) or is not 4-D with dim: 0 "
                            "first (warning).")
def check_reshape(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        if layer.type not in ("Reshape", "Flatten"):
            continue
        ins, outs = layer.in_shape, layer.out_shape
        evidence = {"in_shape": ins, "out_shape": outs}
        if ins and outs and ins[0] is not None and outs[0] is not None and ins[0] != outs[0]:
            yield rule.finding(layer.name, f"{_where(model, layer)} changes the batch dimension "
                               f"({list(ins)} -> {list(outs)})", "keep N first: reshape_param { shape { dim: 0 "
                               "dim: ... } } with 4 dims, and move batch-mixing reshapes to the CPU", **evidence)
            continue
        if layer.type != "Reshape":
            continue
        dims = tuple(layer.params.get("shape") or ())
        first_not_zero = model.format == "caffe" and layer.params.get("axis", 0) == 0 and dims and dims[0] != 0
        if (outs is not None and len(outs) != 4) or first_not_zero:
            want = list(outs) if outs else "?"
            yield rule.finding(layer.name, f"{_where(model, layer)} reshapes to {want}: NNIE wants a 4-D Reshape "
                               "with dim: 0 first", "write shape { dim: 0 dim: C dim: H dim: W } (pad the shape "
                               "with 1s), or use Flatten before an InnerProduct", severity="warning",
                               dims=list(dims), **evidence)


@register_lint_rule("nnie", "slice-axis0", kind="unsupported_layer", severity="error",
                    source="nnie.md §4: 'Slice cannot cut axis 0' [S: FRESH]",
                    summary="Slice (ONNX Slice/Split) along axis 0.")
def check_slice(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        axes = layer.params.get("axes", (layer.params.get("axis"),)) if layer.type == "Slice" else ()
        if 0 in axes:
            yield rule.finding(layer.name, f"{_where(model, layer)} slices axis 0 (the batch), which NNIE cannot do",
                               "slice along C/H/W instead, or split the batch in the application (run the .wk "
                               "once per sample)", axes=list(axes))


def _pool_sizes(layer: LintLayer) -> tuple[list[int], list[int]] | None:
    p, ins = layer.params, layer.in_shape
    if p.get("global") or not p.get("kernel") or not ins or len(ins) != 4 or None in ins[2:]:
        return None
    if p.get("pad_end") is not None and p.get("pad_end") != p.get("pad"):
        return None  # asymmetric padding: rule asymmetric-pad explains the size difference
    begin, end = p.get("pad") or (0, 0), p.get("pad_end") or p.get("pad") or (0, 0)
    src = [pooled_size(ins[2 + i], p["kernel"][i], begin[i], end[i], p["stride"][i], p.get("ceil", True))
           for i in range(2)]
    nnie = [pooled_size(ins[2 + i], p["kernel"][i], begin[i], begin[i], p["stride"][i], True) for i in range(2)]
    return src, nnie


@register_lint_rule("nnie", "pooling-rounding", kind="semantic_mismatch", severity="error",
                    source="nnie.md §4: the .wk has no ceil_mode and pools with ceil [P: TAU 4.2.3]; PyTorch floors "
                           "[S: BLOG u012374012]",
                    summary="Pooling whose output size differs between NNIE's ceil and the source's floor rounding.")
def check_pooling(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        sizes = _pool_sizes(layer) if layer.type == "Pooling" else None
        if sizes is None:
            continue
        src, nnie = sizes
        p, ins = layer.params, layer.in_shape
        floor = [pooled_size(ins[2 + i], p["kernel"][i], p["pad"][i], p["pad"][i], p["stride"][i], False)
                 for i in range(2)]
        evidence = {"in_shape": ins, "kernel": p["kernel"], "stride": p["stride"], "pad": p["pad"],
                    "source_size": src, "nnie_size": nnie}
        if src != nnie:
            fix = ("export/train with ceil_mode=True, or keep the first "
                   f"{src[0]} rows and {src[1]} columns with Slice layers after it (exact: the first windows are "
                   "the same); changing pad alters the values")
            if model.format == "caffe" and layer.tops:
                top = layer.tops[0]
                axes = [a for a in (2, 3) if src[a - 2] != nnie[a - 2]]
                names = [f"{top}_ceil"] + [f"{layer.name}_keep{a}" for a in axes[:-1]] + [top]
                rewrite = "\n".join(_rewrite.crop_rows(f"{layer.name}_keep{a}", names[i], names[i + 1], a, src[a - 2])
                                    for i, a in enumerate(axes))
                evidence["rewrite"] = rewrite
                fix += (f"; in Caffe: rename the Pooling top to {top + '_ceil'!r} and add Slice layers writing "
                        f"{top!r} (full prototxt: evidence.rewrite)")
            yield rule.finding(layer.name, f"{_where(model, layer)}: the source rounds down to {src[0]}x{src[1]}, "
                               f"NNIE pools with ceil to {nnie[0]}x{nnie[1]}: every later layer is shifted by one "
                               "row/column", fix, **evidence)
        elif model.format == "caffe" and p.get("ceil", True) and floor != nnie and not p.get("explicit_rounding"):
            yield rule.finding(layer.name, f"{_where(model, layer)} pools to {nnie[0]}x{nnie[1]} with Caffe's ceil; "
                               f"a floor-rounding framework (PyTorch's default) gives {floor[0]}x{floor[1]}",
                               "nothing to do if the net was trained in Caffe or with ceil_mode=True; otherwise "
                               "slice off the last row/column (see docs/lint.md)", severity="info", heuristic=True,
                               floor_size=floor, **evidence)


@register_lint_rule("nnie", "asymmetric-pad", kind="semantic_mismatch", severity="error",
                    source="caffe.proto: pad / pad_h / pad_w apply to both sides of an axis",
                    summary="ONNX Conv/Pool pads that differ at the start and end of an axis (Caffe pads both "
                            "sides equally).")
def check_asymmetric_pad(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        p = layer.params
        if model.format != "onnx" or "pad_end" not in p or p.get("pad") == p.get("pad_end"):
            continue
        yield rule.finding(layer.name, f"{_where(model, layer)} pads {list(p['pad'])} at the start and "
                           f"{list(p['pad_end'])} at the end; Caffe has one pad per axis", "pad symmetrically in "
                           "the source model, or put an explicit pad in the previous layer's output (e.g. a larger "
                           "input and a Slice)", pad_begin=list(p["pad"]), pad_end=list(p["pad_end"]))


@register_lint_rule("nnie", "power-exponent", kind="unsupported_layer", severity="error",
                    source="nnie.md §4: Power exponents limited to +-1/2, +-1, +-2, +-3 [S: MEG]",
                    summary="Power (ONNX Pow/Sqrt/Reciprocal) with an exponent NNIE does not support.")
def check_power(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        if layer.type == "Power" and "power" in layer.params:
            e = float(layer.params["power"])
            if not any(abs(e - q) < 1e-6 for q in POWERS):
                yield rule.finding(layer.name, f"{_where(model, layer)} has exponent {e:g}; NNIE supports "
                                   "+-1/2, +-1, +-2, +-3", "compose the power from supported ones (x^4 = (x^2)^2 "
                                   "via two Power layers) or compute it on the CPU", power=e)


@register_lint_rule("nnie", "conv-group", kind="unsupported_layer", severity="error",
                    source="nnie.md §4: conv group <= 2048 [S: MEG]",
                    summary="Convolution/Deconvolution with group > 2048.")
def check_group(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        if int(layer.params.get("group", 1)) > 2048:
            yield rule.finding(layer.name, f"{_where(model, layer)} has group {layer.params['group']} > 2048",
                               "split the channels into several convolutions joined by Concat",
                               group=layer.params["group"])


@register_lint_rule("nnie", "param-range", kind="unsupported_layer", severity="warning", heuristic=True,
                    source="nnie.md §4: 'Most integer params are limited to 1-255; most widths to <= 4096' "
                           "(which params is not listed)",
                    summary="Kernel/stride/pad above 255 or a blob wider than 4096.")
def check_param_range(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        big = {k: list(layer.params[k]) for k in ("kernel", "stride", "pad") if layer.params.get(k)
               and max(layer.params[k]) > 255}
        wide = [list(s) for s in layer.out_shapes if s and len(s) >= 2 and s[-1] is not None and s[-1] > 4096]
        if big or wide:
            what = ", ".join(f"{k} {v}" for k, v in big.items()) or f"output width {wide[0][-1]}"
            yield rule.finding(layer.name, f"{_where(model, layer)}: {what} is beyond the usual NNIE limits "
                               "(integer params 1-255, widths <= 4096)", "split the layer (e.g. two poolings "
                               "instead of one large kernel) and check with nnie_mapper's is_check_prototxt: 1",
                               params=big, wide_outputs=wide)


def _reported(model: LintModel) -> dict[str, LintLayer | None]:
    """Blob names the device reports: net inputs/outputs, *_report tops, tops read by CPU layers."""
    producer = {t: layer for layer in model.layers for t in layer.tops}
    out: dict[str, LintLayer | None] = {n: None for n in model.inputs}
    for blob in model.outputs:
        out[blob] = producer.get(blob)
    for layer in model.layers:
        for t in layer.tops:
            if t.endswith("_report"):
                out[t] = layer
        if _is_cpu(layer):
            for b in layer.bottoms:
                out.setdefault(b, producer.get(b))
    return out


@register_lint_rule("nnie", "name-length", kind="semantic_mismatch", severity="warning", heuristic=True,
                    source="nnie.md §2: SVP_NNIE_NODE_NAME_LEN is 32 [P: HDR]; cutting at 31 chars is inferred",
                    summary="Reported node names longer than 31 characters (cut in the .wk; an error when two "
                            "collide).")
def check_names(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    cut: dict[str, list[str]] = {}
    for blob, layer in _reported(model).items():
        for name in {blob, layer.name if layer else blob}:
            if len(name) > NAME_LIMIT:
                cut.setdefault(name[:NAME_LIMIT], []).append(name)
    for prefix, names in cut.items():
        names = sorted(set(names))
        layer = names[0]
        if len(names) > 1:
            yield rule.finding(layer, f"names {', '.join(names)} all become {prefix!r} after the 31-character cut: "
                               "the application cannot tell these nodes apart", "rename them to 31 characters or "
                               "fewer", severity="error", truncated=prefix, names=names)
        else:
            yield rule.finding(layer, f"node name {layer!r} has {len(layer)} characters; the .wk keeps 31 "
                               f"({prefix!r})", "rename it to 31 characters or fewer so names match between "
                               "reference, mapper dumps and the board", truncated=prefix, length=len(layer))


@register_lint_rule("nnie", "report-suffix", kind="semantic_mismatch", severity="warning",
                    source="nnie.md §2: _report rules quoted from the dev guide [T: FRESH]",
                    summary="_report on a Custom top (error), on Proposal/_cpu/input tops (ignored), or on a "
                            "layer name instead of a top.")
def check_report_suffix(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    for layer in model.layers:
        tops = [t for t in layer.tops if t.endswith("_report")]
        if tops and layer.type == "Custom":
            yield rule.finding(layer.name, f"Custom layer {layer.name!r} has a _report top ({tops[0]}): the mapper "
                               "rejects _report on Custom tops", "remove the suffix; Custom inputs are reported "
                               "anyway", severity="error", tops=tops)
        elif tops and _is_cpu(layer):
            yield rule.finding(layer.name, f"{_where(model, layer)}: _report on a CPU layer's top ({tops[0]}) is "
                               "silently ignored", "remove the suffix", tops=tops)
        elif layer.name.endswith("_report") and not tops and model.format == "caffe":
            yield rule.finding(layer.name, f"layer {layer.name!r} ends in _report but the suffix only works on "
                               "top (blob) names", f"rename its top to {layer.tops[0] + '_report'!r}" if layer.tops
                               else "rename its top", tops=list(layer.tops))
        if tops and layer.type in ACTIVATIONS and list(layer.bottoms) == list(layer.tops):
            yield rule.finding(layer.name, f"in-place {layer.type} {layer.name!r} writes {tops[0]}: the reported "
                               "value is the post-activation blob, never the producer's raw output", "make the "
                               "activation non-in-place to report the pre-activation value", severity="info",
                               tops=tops)
    for blob in model.inputs:
        if blob.endswith("_report"):
            yield rule.finding(None, f"input {blob!r}: _report on a data layer is silently ignored",
                               "remove the suffix", blob=blob)


@register_lint_rule("nnie", "hp-suffix", kind="semantic_mismatch", severity="info",
                    source="nnie.md §1: compile_mode 2 runs layers named *_hp at 16 bits [T: FRESH]",
                    summary="Layers named *_hp: 16-bit only when the cfg sets compile_mode 2.")
def check_hp_suffix(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    hp = [layer.name for layer in model.layers if layer.name.endswith("_hp")]
    if hp:
        yield rule.finding(hp[0], f"{len(hp)} layer(s) named *_hp ({', '.join(hp[:5])}) run at 16 bits only with "
                           "[compile_mode] 2; with 0 they are 8-bit, with 1 every layer is 16-bit",
                           "set [compile_mode] 2 in the mapper cfg if these layers need high precision", layers=hp)


def _segments(model: LintModel) -> list[list[LintLayer]]:
    """NNIE layer runs between CPU layers, in model order (an estimate of the mapper's segments)."""
    segments: list[list[LintLayer]] = [[]]
    for layer in model.layers:
        if _is_cpu(layer):
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(layer)
    return [s for s in segments if s]


@register_lint_rule("nnie", "segment-limits", kind="unsupported_layer", severity="error",
                    source="nnie.md §4: per wk at most 8 segments, 16 inputs and 16 outputs per segment, 2 ROI "
                           "layers per segment and 4 per net [P: HDR]",
                    summary="Too many segments, segment inputs/outputs or ROI layers (segments estimated from "
                            "CPU-layer positions).")
def check_segments(rule: LintRule, model: LintModel, options: LintOptions) -> Iterator[Finding]:
    segments = _segments(model)
    if len(segments) > SEGMENTS:
        yield rule.finding(None, f"about {len(segments)} NNIE segments (runs between CPU layers); a .wk holds at "
                           f"most {SEGMENTS}", "merge CPU steps or split the net into several .wk files",
                           heuristic=True, segments=len(segments))
    if len(model.inputs) > SEG_INPUTS:
        yield rule.finding(None, f"{len(model.inputs)} net inputs; a segment takes at most {SEG_INPUTS}",
                           "concatenate inputs into fewer blobs", inputs=len(model.inputs))
    reported = [b for b in _reported(model) if b not in model.inputs]
    if len(segments) <= 1 and len(reported) > SEG_OUTPUTS:
        yield rule.finding(None, f"{len(reported)} reported outputs; a segment returns at most {SEG_OUTPUTS}",
                           "concatenate outputs or drop _report suffixes", outputs=len(reported))
    rois = [layer.name for layer in model.layers if layer.type in ROI_TYPES]
    if len(rois) > NET_ROI:
        yield rule.finding(rois[0], f"{len(rois)} ROI/PSROI pooling layers; a net may have {NET_ROI}",
                           "split the net", roi_layers=rois)
    for seg in segments:
        in_seg = [layer.name for layer in seg if layer.type in ROI_TYPES]
        if len(in_seg) > SEG_ROI:
            yield rule.finding(in_seg[0], f"{len(in_seg)} ROI/PSROI pooling layers in one segment; the limit is "
                               f"{SEG_ROI}", "put a CPU layer between them", heuristic=True, roi_layers=in_seg)
