"""Reader for msit / ait golden directories (``msit debug compare``: ``dump_data/onnx`` and friends).

msit runs the framework model on the CPU and saves every node output as
``{node}.{output_index}.{timestamp}.npy`` (``msquickcmp/common/dump_data.py``): the node name has
``.`` and ``/`` replaced by ``_``, the timestamp is ``round(time.time() * 1e6)``. Model inputs may
be saved as ``input_{name}.{i}.{timestamp}.npy``. A file name longer than 255 characters is
stored under a numeric name and listed in ``mapping.csv`` as ``numeric_name,original_name``.

netdiff names output 0 of a node ``{node}`` and output k > 0 ``{node}:{k}``; each tensor also
carries ``meta["node"]``/``meta["output_index"]`` and the fusion-map hint ``origin_names=(node,)``
with ``meta["origin_output_index"] = k`` so it aligns with a reference node's k-th output. When a
(node, output) pair was saved several times, the newest timestamp wins. Input files become
graph inputs (``Dump.graph_inputs``) named ``{name}``, so they are compared with the reference's
inputs (an input mismatch is the first thing to rule out).
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path
from typing import Any

from netdiff._io import load_npy, npy_header
from netdiff.errors import DumpFormatError
from netdiff.readers._partial import require_readable
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

_GOLDEN = re.compile(r"^(?P<name>.+)\.(?P<index>\d+)\.(?P<ts>\d{10,20})\.npy$")
MAPPING = "mapping.csv"
_INPUT_PREFIX = "input_"


@register_reader("msit")
class MsitReader(Reader):
    """A directory of msit golden ``{node}.{index}.{timestamp}.npy`` files."""

    priority = 10

    def sniff(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        files = [p.name for p in path.glob("*.npy")]
        if not files:
            return False
        mapped = _mapping(path, strict=False)
        return all(_GOLDEN.match(mapped.get(name, name)) for name in files)

    def _read(self, path: Path, **options: Any) -> Dump:
        if not path.is_dir():
            raise DumpFormatError(f"{path}: an msit golden dump is a directory of .npy files")
        mapped = _mapping(path, strict=True)
        newest: dict[tuple[str, int], tuple[int, Path]] = {}
        skipped = 0
        for file in sorted(path.glob("*.npy")):
            name = mapped.get(file.name, file.name)
            match = _GOLDEN.match(name)
            if match is None:
                raise DumpFormatError(f"{file}: file name is not {{node}}.{{output_index}}.{{timestamp}}.npy "
                                      "(an msit golden file)")
            key = (match["name"], int(match["index"]))
            stamp = int(match["ts"])
            if key in newest:
                skipped += 1
                if newest[key][0] >= stamp:
                    continue
            newest[key] = (stamp, file)
        # msit writes nodes in graph order, so the timestamps give the topological order
        ordered = sorted(newest.items(), key=lambda item: (item[1][0], item[0][1]))
        tensors: dict[str, Tensor] = {}
        inputs: list[str] = []
        nodes = {node for node, _ in newest if not node.startswith(_INPUT_PREFIX)}
        for order, ((node, index), (stamp, file)) in enumerate(ordered):
            is_input = node.startswith(_INPUT_PREFIX) and node[len(_INPUT_PREFIX):] not in nodes
            base = node[len(_INPUT_PREFIX):] if is_input else node
            name = base if index == 0 else f"{base}:{index}"
            if is_input and name in tensors:
                name = node if index == 0 else f"{node}:{index}"
            meta = {"timestamp": stamp, "node": base, "output_index": index}
            try:
                shape, dtype = npy_header(file)
            except DumpFormatError as e:  # one broken file: an unreadable tensor, the rest of the dump is read
                tensors[name] = Tensor.unreadable(name, str(e), str(file))
                if is_input:
                    inputs.append(name)
                continue
            origin: tuple[str, ...] = ()
            if not is_input:
                meta["origin_output_index"] = index
                origin = (node,)
            else:
                inputs.append(name)
            tensors[name] = Tensor(name=name, shape=shape, dtype=dtype.name, order=order, origin_names=origin,
                                   source=str(file), loader=functools.partial(load_npy, file), meta=meta)
        require_readable(tensors)
        meta: dict[str, Any] = {"older_files_skipped": skipped} if skipped else {}
        return Dump(tensors=tensors, source=str(path), format=self.name, graph_inputs=inputs, meta=meta)


def _mapping(directory: Path, strict: bool) -> dict[str, str]:
    """``mapping.csv``: numeric file name -> original golden file name."""
    file = directory / MAPPING
    if not file.is_file():
        return {}
    result: dict[str, str] = {}
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.reader(handle), 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip():
                    if strict:
                        raise DumpFormatError(f"{file}:{line_no}: expected 'numeric_name,original_name', got {row!r}")
                    continue
                result[row[0].strip()] = row[1].strip()
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        if strict:
            raise DumpFormatError(f"{file}: cannot read ({e})") from e
    return result
