"""Reader for NNIE simulator and board report dumps (format per secondary sources, docs/nnie.md).

``seg<S>_layer<N>_output<k>_{inst,func}.linear.hex``: one ``%08x`` signed int32 per line, Q20.12,
n/c/h/w order with stride padding already skipped. The SDK sample writes one file per output
node; PC simulation with ``[LAYER_LINEAR_PRINT_EN] 1`` writes every layer into
``inst_layer_output_linear/``. Names come from the ``net_tree`` option (cnn_net_tree.dot, JSON
or text map); without it tensors are named ``seg<S>_layer<N>`` in (segment, layer) order.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from netdiff.errors import DumpFormatError
from netdiff.nnie.net_tree import lookup, read_net_tree
from netdiff.readers._nnie_options import cfg_header
from netdiff.readers._partial import require_readable
from netdiff.readers._nnie_text import DUMP_META, any_match, count_values, find_files, lazy_tensor, read_hex_q12, strip_report
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

SIM = re.compile(r"^seg(?P<seg>\d+)_layer(?P<layer>\d+)_output(?P<k>\d+)_(?P<kind>inst|func)\.linear\.hex$")
SUBDIRS = ("inst_layer_output_linear", "func_layer_output_linear")


@register_reader("nnie-sim")
class NnieSimReader(Reader):
    """NNIE instruction/function simulation or board report dumps (``seg*_layer*_output*_*.linear.hex``)."""

    priority = 30
    options = {
        "net_tree": "cnn_net_tree.dot, or a JSON/text map '<id> <name>', naming layer ids",
        "kind": "inst or func, when a directory holds both",
        "cfg": "mapper .cfg file; its settings are shown in the report header",
    }

    def sniff(self, path: Path) -> bool:
        return any_match(path, SIM, SUBDIRS)

    def _read(self, path: Path, **options: Any) -> Dump:
        files = [path] if path.is_file() else find_files(path, SIM, SUBDIRS)
        parsed = [(f, SIM.match(f.name)) for f in files]
        kinds = {m["kind"] for _, m in parsed if m}
        kind = options.get("kind")
        if kind is not None and kind not in ("inst", "func"):
            raise DumpFormatError(f"{path}: option kind must be 'inst' or 'func', got {kind!r}")
        if kind is None and len(kinds) > 1:
            raise DumpFormatError(f"{path}: holds both inst and func dumps; choose one with the option kind=inst|func")
        mapping = read_net_tree(options["net_tree"]) if options.get("net_tree") else None
        entries = sorted(((int(m["seg"]), int(m["layer"]), int(m["k"])), f) for f, m in parsed
                         if m and (kind is None or m["kind"] == kind))
        tensors: dict[str, Tensor] = {}
        for order, ((seg, layer, k), file) in enumerate(entries):
            raw = f"seg{seg}_layer{layer}"
            entry = lookup(mapping, seg, layer) if mapping is not None else None
            base = strip_report(entry["name"]) if entry else raw
            name = base if k == 0 else f"{base}_output{k}"
            meta: dict[str, Any] = {"raw_name": entry["name"] if entry else raw, "segment": seg, "layer_id": layer,
                                    "output_index": k}
            if k:
                meta["origin_output_index"] = k
            dims = tuple(entry["shape"]) if entry and "shape" in entry else ()
            count = count_values(file)
            if count == 0 or dims and count % _prod(dims):
                if name in tensors:
                    raise DumpFormatError(f"{file}: layer name {name!r} is given to two layer ids")
                why = "holds no values" if count == 0 else \
                    f"holds {count} values, not a multiple of the layer map's shape {list(dims)}"
                tensors[name] = Tensor.unreadable(name, f"{file}: {why}", str(file))
                continue
            batch = count // _prod(dims) if dims else 1
            if not dims:
                tensor = Tensor(name=name, shape=(count,), dtype="float32", loader=functools.partial(_flat, file, count),
                                order=order, origin_names=(base,) if k else (), source=str(file), meta=meta)
            else:
                if len(dims) == 4:
                    batch, dims = dims[0], dims[1:]
                tensor = lazy_tensor(name, file, dims, functools.partial(read_hex_q12, file, _prod(dims)),
                                     batch=batch, order=order, origin_names=(base,) if k else (), meta=meta)
            if name in tensors:
                raise DumpFormatError(f"{file}: layer name {name!r} is given to two layer ids ({tensors[name].meta['raw_name']} and {raw})")
            tensors[name] = tensor
        require_readable(tensors)
        meta = dict(DUMP_META, layout="NCHW", dump_kind=kind or (next(iter(kinds)) if kinds else ""),
                    named_by="net_tree" if mapping is not None else "layer id")
        if options.get("cfg"):
            meta["mapper_cfg"] = cfg_header(options["cfg"])
        return Dump(tensors=tensors, source=str(path), format=self.name, meta=meta)


def _flat(file: Path, count: int):
    data = read_hex_q12(file)
    if data.size != count:
        raise DumpFormatError(f"{file}: holds {data.size} values, {count} lines were counted")
    return data


def _prod(dims: tuple[int, ...]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out
