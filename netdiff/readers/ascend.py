"""Reader for Huawei Ascend (ACL / atc) dump trees; the work is done in :mod:`netdiff.ascend`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump


@register_reader("ascend")
class AscendReader(Reader):
    """Ascend NPU dump files (binary or inline-protobuf ``DumpData``), found recursively."""

    priority = 20
    options = {
        "fusion_map": "om JSON from `atc --mode=1 --om=model.om --json=model.json`: maps NPU ops to original nodes",
        "model": "model directory to read when the dump root holds several models",
        "data_index": "only read this data (iteration) index directory",
    }

    def sniff(self, path: Path) -> bool:
        from netdiff.ascend.dumpfile import plausible_dump
        from netdiff.ascend.names import first_dump_file

        found = first_dump_file(path)
        return found is not None and plausible_dump(found)

    def _read(self, path: Path, **options: Any) -> Dump:
        from netdiff.ascend.build import build_dump

        return build_dump(path, **options)
