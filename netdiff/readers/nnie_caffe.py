"""Reader for RuyiStudio's Caffe reference dumps (``CNN_convert_bin_and_print_featuremap.py``).

``<blob>_output<n>_<dims>_caffe.linear.float``: ``np.savetxt`` of the whole blob (all N), one float
per line, named by top blob (``/`` replaced by ``_``); dims omit the batch. ``<n>`` loops over the
batch but every file holds the whole blob, so only the lowest ``<n>`` of each blob is read.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

from netdiff.errors import DumpFormatError
from netdiff.readers._partial import require_readable
from netdiff.readers._nnie_text import (DUMP_META, any_match, count_values, find_files, lazy_tensor, parse_dims,
                                        read_float_text, strip_report)
from netdiff.readers.base import Reader, register_reader
from netdiff.types import Dump, Tensor

CAFFE = re.compile(r"^(?P<blob>.+)_output(?P<n>\d+)_(?P<dims>\d+(?:_\d+)*)_caffe\.linear\.float$")
SUBDIRS = ("output", "data/output")


@register_reader("nnie-caffe")
class NnieCaffeReader(Reader):
    """RuyiStudio Caffe reference dump directory (``*_caffe.linear.float``)."""

    priority = 30

    def sniff(self, path: Path) -> bool:
        return any_match(path, CAFFE, SUBDIRS)

    def _read(self, path: Path, **options: Any) -> Dump:
        files = [path] if path.is_file() else find_files(path, CAFFE, SUBDIRS)
        chosen: dict[str, tuple[int, Path, re.Match[str]]] = {}
        for file in files:
            m = CAFFE.match(file.name)
            if m is None:
                continue
            name = strip_report(m["blob"])
            n = int(m["n"])
            if name not in chosen or n < chosen[name][0]:
                chosen[name] = (n, file, m)
        tensors: dict[str, Tensor] = {}
        for name, (_, file, m) in chosen.items():
            try:
                dims = parse_dims(m["dims"], file)
                per = math.prod(dims)
                lines = count_values(file)
                if lines == 0 or lines % per:
                    raise DumpFormatError(f"{file}: holds {lines} lines, not a multiple of the {per} values its name declares")
            except DumpFormatError as e:  # one broken file: an unreadable tensor, the rest of the dump is read
                tensors[name] = Tensor.unreadable(name, str(e), str(file))
                continue
            tensors[name] = lazy_tensor(name, file, dims, functools.partial(read_float_text, file, per),
                                        batch=lines // per, meta={"raw_name": m["blob"]})
        require_readable(tensors)
        return Dump(tensors=tensors, source=str(path), format=self.name, meta=dict(DUMP_META, layout="NCHW"))
