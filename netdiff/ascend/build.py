"""Assemble a :class:`~netdiff.types.Dump` from an Ascend dump tree (and an optional om JSON).

Naming scheme (see docs/ascend.md):

- output 0 of op ``X`` is the tensor ``X``; output ``k > 0`` is ``X:k``;
- input ``k`` of op ``X`` is ``X:input:k`` (``meta["direction"] == "input"``), listed in
  ``Dump.target_only`` because its value is the producer's output, compared there; except,
  with a fusion map, the first consumer's input of each model input (a ``Data`` op), which is
  mapped to that model input (``meta["fusion"] == "graph-input"``) so the device-side input
  (after AIPP / TransData) is compared with the reference input;
- ``X`` is the real op name: from the om JSON when given, else from the dump header's
  ``op_name``, else the escaped file-name form.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from netdiff.ascend import formats
from netdiff.ascend.dumpfile import DumpFile, TensorRecord, read_header
from netdiff.ascend.fusion import INSERTED_NAME, NPU_ONLY_TYPES, FusionMap, OpInfo, Origin
from netdiff.ascend.names import DumpName, escape_name, scan
from netdiff.errors import DumpFormatError
from netdiff.readers._partial import require_readable
from netdiff.types import Dump, Tensor

#: More elements than any real tensor has (2**48): such a shape comes from a corrupt header.
MAX_ELEMENTS = 1 << 48


def _load(path: Path, offset: int, nbytes: int, code: int, count: int, conversion: formats.Conversion) -> np.ndarray:
    raw = formats.load_bytes(path, offset, nbytes)
    return conversion.apply(formats.decode(raw, code, count))


def select_files(names: list[DumpName], root: Path, fmap: FusionMap | None, model: str | None,
                 data_index: int | None) -> tuple[dict[str, DumpName], dict[str, int], str | None]:
    """Pick one file per op: filter by model/data index, then keep the last by timestamp."""
    models = sorted({n.model for n in names if n.model})
    chosen = model
    if chosen is None and len(models) > 1:
        wanted = escape_name(fmap.name) if fmap and fmap.name else None
        if wanted not in models:
            raise DumpFormatError(f"{root}: dumps of several models ({', '.join(models)}); choose one with the "
                                  "reader option model=NAME")
        chosen = wanted
    if chosen is not None:
        keep = [n for n in names if n.model in (chosen, escape_name(chosen))]
        if not keep:
            raise DumpFormatError(f"{root}: no dumps of model '{chosen}' (found: {', '.join(models) or 'none'})")
        names = keep
    if data_index is not None:
        indices = sorted({n.data_index for n in names if n.data_index is not None})
        names = [n for n in names if n.data_index == int(data_index)]
        if not names:
            raise DumpFormatError(f"{root}: no dumps with data index {data_index} (found: {indices or 'none'})")
    latest: dict[str, DumpName] = {}
    counts: dict[str, int] = {}
    for n in names:
        counts[n.op_name] = counts.get(n.op_name, 0) + 1
        best = latest.get(n.op_name)
        if best is None or (n.timestamp, str(n.path)) > (best.timestamp, str(best.path)):
            latest[n.op_name] = n
    return latest, counts, chosen or (models[0] if len(models) == 1 else None)


def build_dump(root: Path, fusion_map: str | Path | None = None, model: str | None = None,
               data_index: int | None = None) -> Dump:
    """Read every dump file under ``root`` into a lazy :class:`Dump`.

    Raises:
        DumpFormatError: No dump files, ambiguous models, or a malformed file.
        AlignmentError: The fusion map cannot be read.
    """
    names = scan(root)
    if not names:
        raise DumpFormatError(f"{root}: no Ascend dump files found (expected names like "
                              "'Conv2D.conv1.3.1.1690000000000000' under {time}/{device}/{model}/{model_id}/{index}/)")
    fmap = FusionMap.load(fusion_map) if fusion_map else None
    latest, counts, model_name = select_files(names, root, fmap, model, data_index)
    entries = []
    for escaped, dn in latest.items():
        try:
            header: DumpFile | DumpFormatError = read_header(dn.path)
        except DumpFormatError as e:  # one broken file: its op is listed as unreadable, the rest is read
            header = e
        op = fmap.by_escaped.get(escaped) if fmap else None
        entries.append((dn, header, op))
    entries.sort(key=lambda e: ((e[2].id if e[2] else 1 << 62), e[0].timestamp, str(e[0].path)))

    tensors: dict[str, Tensor] = {}
    target_only: list[str] = []
    skipped: list[str] = []
    producers: dict[str, tuple[str, ...]] = {}
    seen_inputs: set[str] = set()
    for order, (dn, header, op) in enumerate(entries, start=1):
        if isinstance(header, DumpFormatError):
            name = op.name if op is not None else dn.op_name
            if name not in tensors:
                tensors[name] = Tensor.unreadable(name, str(header), str(dn.path))
            continue
        name = _real_name(dn, header, op)
        common = {"file": str(dn.path), "timestamp": dn.timestamp, "files_for_op": counts[dn.op_name],
                  "dump_variant": header.variant, "op_name": name}
        for rec in header.outputs:
            tname = name if rec.index == 0 else f"{name}:{rec.index}"
            origin = fmap.origin(op, rec.index) if (fmap and op) else None
            tensor = _tensor(tname, rec, header, dn, order, origin, common, skipped)
            if tensor is None or tname in tensors:
                continue
            tensors[tname] = tensor
            if origin is not None and origin.relation in ("npu-only", "inner"):
                target_only.append(tname)
            elif origin is None and (dn.op_type in NPU_ONLY_TYPES or INSERTED_NAME.search(name)):
                target_only.append(tname)
            if op is not None:
                producers[tname] = op.inputs
        for rec in header.inputs:
            tname = f"{name}:input:{rec.index}"
            extra = {"producer": op.inputs[rec.index]} if op is not None and rec.index < len(op.inputs) else {}
            origin = fmap.input_origin(op, rec.index) if (fmap and op) else None
            if origin is not None and origin.names[-1] in seen_inputs:
                origin = None  # a model input is compared once, at its first consumer
            tensor = _tensor(tname, rec, header, dn, order, origin, dict(common, **extra), skipped)
            if tensor is not None and tname not in tensors:
                tensors[tname] = tensor
                if origin is None:
                    target_only.append(tname)
                else:
                    seen_inputs.add(origin.names[-1])
    require_readable(tensors)
    _link_inputs(tensors, producers)
    return Dump(tensors=tensors, source=str(root), format="ascend",
                graph_outputs=_graph_outputs(fmap, tensors), target_only=target_only,
                meta=_meta(fmap, fusion_map, model_name, len(names), len(entries), skipped))


def _real_name(dn: DumpName, header: DumpFile, op: OpInfo | None) -> str:
    if op is not None:
        return op.name
    if header.op_name and escape_name(header.op_name) == dn.op_name:
        return header.op_name
    return dn.op_name


def _tensor(tname: str, rec: TensorRecord, header: DumpFile, dn: DumpName, order: int, origin: Origin | None,
            common: dict, skipped: list[str]) -> Tensor | None:
    info = formats.dtype_info(rec.data_type)
    if info is None:
        skipped.append(f"{tname}: unsupported data type code {rec.data_type}")
        return None
    for dims in (rec.shape, rec.original_shape):
        if math.prod(d for d in dims if d) > MAX_ELEMENTS:  # zero dims hide nothing: the rest must be sane too
            return Tensor.unreadable(tname, f"{dn.path}: {rec.direction}[{rec.index}] has an absurd shape {list(dims)} "
                                     "(corrupt header)", str(dn.path))
    count = formats.element_count(rec.data_type, rec.shape, rec.size)
    nbytes = formats.stored_bytes(rec.data_type, count)
    if nbytes > rec.size:
        return Tensor.unreadable(tname, f"{dn.path}: {rec.direction}[{rec.index}] of shape {list(rec.shape)} and type "
                                 f"{info[0]} needs {nbytes} bytes but only {rec.size} are stored", str(dn.path))
    device_shape = rec.shape or (count,)
    original_shape = rec.original_shape or (origin.shape if origin else ())
    conversion = formats.plan(rec.format, device_shape, original_shape, origin.format if origin else None,
                              rec.sub_format)
    meta = dict(common, direction=rec.direction, index=rec.index, device_format=formats.format_name(rec.format),
                device_shape=list(device_shape), device_dtype=info[0])
    if original_shape:
        meta["original_shape"] = list(original_shape)
    if conversion.note:
        meta["note"] = conversion.note
    if rec.original_op:
        meta["original_op"] = list(rec.original_op)
    origin_names: tuple[str, ...] = ()
    if origin is not None:
        meta["fusion"] = origin.relation
        if origin.names:
            origin_names = origin.names
            meta["origin_output_index"] = origin.output_index
    loader = functools.partial(_load, dn.path, rec.offset, nbytes, rec.data_type, count, conversion)
    return Tensor(name=tname, shape=conversion.shape, dtype=info[2], loader=loader, layout=conversion.layout,
                  op_type=dn.op_type, order=order, origin_names=origin_names, source=str(dn.path), meta=meta)


def _link_inputs(tensors: dict[str, Tensor], producers: dict[str, tuple[str, ...]]) -> None:
    """Fill ``Tensor.inputs`` from the om graph edges ("producer:idx"), for tensors in the dump."""
    import dataclasses

    for tname, edges in producers.items():
        names = []
        for edge in edges:
            op_name, _, idx = edge.rpartition(":")
            if not op_name or idx == "-1":  # control edge
                continue
            candidate = op_name if idx in ("", "0") else f"{op_name}:{idx}"
            if candidate in tensors:
                names.append(candidate)
        if names:
            tensors[tname] = dataclasses.replace(tensors[tname], inputs=tuple(names))


def _graph_outputs(fmap: FusionMap | None, tensors: dict[str, Tensor]) -> list[str]:
    if fmap is None:
        return []
    outs = []
    for op_name, idx in fmap.output_nodes():
        name = op_name if idx == 0 else f"{op_name}:{idx}"
        if name in tensors:
            outs.append(name)
    return outs


def _meta(fmap: FusionMap | None, fusion_map: str | Path | None, model_name: str | None, files: int, ops: int,
          skipped: list[str]) -> dict:
    meta: dict = {"format_name": "Ascend", "dump_files": files, "ops": ops}
    if model_name:
        meta["model_name"] = model_name
    if fmap is not None:
        mode, source = fmap.precision_mode()
        meta.update(fusion_map=str(fusion_map), precision_mode=mode, precision_mode_source=source)
        if fmap.atc_cmdline:
            meta["atc_cmdline"] = fmap.atc_cmdline
        if fmap.attrs.get("soc_version"):
            meta["soc_version"] = fmap.attrs["soc_version"]
    else:
        meta.update(precision_mode="force_fp16",
                    precision_mode_source="ATC default (assumed: no fusion map given, so atc_cmdline is unknown)")
    if skipped:
        meta["skipped"] = skipped
    return meta
