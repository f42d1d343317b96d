"""Reader for nnie_mapper's ``mapper_quant/`` dumps (format per secondary sources, docs/nnie.md).

* ``<layer>_output<k>_<C>_<H>_<W>_quant.linear.hex``: the layer output, one signed 32-bit
  two's-complement hex word per line, Q20.12 (value / 4096), NCHW flattened.
* ``<layer>_input<k>_<C>_<H>_<W>_anti_quant.linear.float``: the layer input after log
  quantization, dequantized (one float per line). Listed as target-only tensors ``<layer>:input<k>``.
* ``_quant.nonlinear.hex`` (log codes, bit layout unverified), weights and biases are skipped.

Only the last image of the calibration list is dumped (batch 1); N is taken from the value count.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from netdiff.errors import DumpFormatError
from netdiff.readers._nnie_options import as_bool, cfg_header
from netdiff.readers._partial import require_readable
from netdiff.readers._nnie_text import (DUMP_META, any_match, count_values, find_files, lazy_tensor, parse_dims, read_float_text,
                                        read_hex_q12, strip_report)
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

OUTPUT = re.compile(r"^(?P<layer>.+)_output(?P<k>\d+)_(?P<dims>\d+(?:_\d+)*)_quant\.linear\.hex$")
INPUT = re.compile(r"^(?P<layer>.+)_input(?P<k>\d+)_(?P<dims>\d+(?:_\d+)*)_anti_quant\.linear\.float$")
SKIPPED = re.compile(r".*(_quant\.nonlinear\.hex|_weight\.hex|_bias\.hex|_weight-anti\.float)$")
SUBDIRS = ("mapper_quant",)


def output_name(layer: str, index: int) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """Tensor name, origin names and meta for output ``index`` of ``layer`` (``_report`` stripped)."""
    base = strip_report(layer)
    meta: dict[str, Any] = {"raw_name": layer, "output_index": index}
    if index == 0:
        return base, (), meta
    meta["origin_output_index"] = index
    return f"{base}_output{index}", (base,), meta


@register_reader("nnie-mapper")
class NnieMapperReader(Reader):
    """nnie_mapper ``mapper_quant/`` directory (or the mapper output directory holding it)."""

    priority = 30
    options = {
        "cfg": "mapper .cfg file; its settings are shown in the report header",
        "inputs": "also list the dequantized layer inputs (<layer>:input<k>) as target-only tensors (default true)",
    }

    def sniff(self, path: Path) -> bool:
        return any_match(path, OUTPUT, SUBDIRS)

    def _read(self, path: Path, **options: Any) -> Dump:
        with_inputs = as_bool(options.get("inputs", True), "inputs", path)
        files = [path] if path.is_file() else find_files(path, re.compile(r".*\.(hex|float)$"), SUBDIRS)
        tensors: dict[str, Tensor] = {}
        target_only: list[str] = []
        skipped: list[str] = []
        for file in files:
            m = OUTPUT.match(file.name)
            try:
                if m:
                    name, origins, meta = output_name(m["layer"], int(m["k"]))
                    dims = parse_dims(m["dims"], file)
                    tensor = lazy_tensor(name, file, dims, functools.partial(read_hex_q12, file, _prod(dims)),
                                         batch=_batch(file, dims), origin_names=origins, meta=meta)
                elif with_inputs and (m := INPUT.match(file.name)):
                    layer = strip_report(m["layer"])
                    name = f"{layer}:input{m['k']}"
                    target_only.append(name)
                    dims = parse_dims(m["dims"], file)
                    tensor = lazy_tensor(name, file, dims, functools.partial(read_float_text, file, _prod(dims)),
                                         batch=_batch(file, dims), meta={"raw_name": m["layer"], "input_of": layer, "input_index": int(m["k"])})
            except DumpFormatError as e:  # one broken file: an unreadable tensor, the rest of the dump is read
                tensor = Tensor.unreadable(name, str(e), str(file))
            if not m:
                if SKIPPED.match(file.name):
                    skipped.append(file.name)
                continue
            if name in tensors:
                raise DumpFormatError(f"{file}: tensor {name!r} appears twice (also in {Path(tensors[name].source).name})")
            tensors[name] = tensor
        require_readable(tensors)
        if not any(n not in target_only for n in tensors):
            raise DumpFormatError(f"{path}: no '<layer>_output<k>_<C>_<H>_<W>_quant.linear.hex' files found")
        meta: dict[str, Any] = dict(DUMP_META, layout="NCHW")
        if skipped:
            meta["skipped_files"] = len(skipped)
        if options.get("cfg"):
            meta["mapper_cfg"] = cfg_header(options["cfg"])
        return Dump(tensors=tensors, source=str(path), format=self.name, meta=meta, target_only=target_only)


def _batch(file: Path, dims: tuple[int, ...]) -> int:
    count = count_values(file)
    per = _prod(dims)
    if count == 0 or count % per:
        raise DumpFormatError(f"{file}: holds {count} values, not a multiple of the {per} its name declares ({list(dims)})")
    return count // per


def _prod(dims: tuple[int, ...]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out
