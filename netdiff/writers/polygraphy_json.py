"""Write a :class:`~netdiff.types.Dump` as a Polygraphy ``RunResults`` JSON file.

The file is what ``polygraphy run --save-outputs`` writes (one runner, one iteration), so
``polygraphy run --load-outputs FILE`` and ``RunResults.load(FILE)`` accept it. Tensors are
streamed: one array is held in memory at a time while its base64 text is written.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import IO

import numpy as np

from netdiff._io import atomic_open
from netdiff.errors import OutputError
from netdiff.types import Dump

_CHUNK = 3 * (1 << 20)  # a multiple of 3 bytes, so base64 chunks concatenate without padding
_IND = " " * 4


def write_polygraphy_json(dump: Dump, path: str | os.PathLike[str], runner_name: str = "netdiff",
                          force: bool = False) -> Path:
    """Write ``dump`` as a Polygraphy RunResults JSON with one runner and one iteration.

    Args:
        dump: Tensors to write, in dump order.
        path: Output file (written atomically).
        runner_name: Runner name recorded in the file.
        force: Overwrite ``path`` when it exists.

    Returns:
        The output path.

    Raises:
        OutputError: ``path`` exists (without ``force``) or is a directory.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; a Polygraphy JSON output must be a file path")
    if path.exists() and not force:
        raise OutputError(f"{path}: exists (use --force to overwrite)")
    with atomic_open(path, "w") as out:
        _write(out, dump, runner_name)
    return path


def _write(out: IO[str], dump: Dump, runner_name: str) -> None:
    i4, i5, i6, i7, i8 = (_IND * n for n in (4, 5, 6, 7, 8))
    out.write(f'{{\n{_IND}"lst": [\n{_IND * 2}[\n{_IND * 3}{json.dumps(runner_name)},\n{_IND * 3}[\n'
              f'{i4}{{\n{i5}"outputs": {{')
    for n, tensor in enumerate(dump):
        array = np.asarray(tensor.load())
        out.write(("," if n else "") + f'\n{i6}{json.dumps(tensor.name)}: {{\n{i7}"values": {{\n{i8}"array": "')
        _write_base64_npy(out, array)
        out.write(f'",\n{i8}"polygraphy_class": "ndarray"\n{i7}}},\n{i7}"polygraphy_class": "LazyArray"\n{i6}}}')
    out.write(f'\n{i5}}},\n{i5}"runtime": null,\n{i5}"runner_name": {json.dumps(runner_name)},\n'
              f'{i5}"polygraphy_class": "IterationResult"\n{i4}}}\n{_IND * 3}]\n{_IND * 2}]\n{_IND}],\n'
              f'{_IND}"polygraphy_class": "RunResults"\n}}\n')


def _write_base64_npy(out: IO[str], array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getbuffer()
    for start in range(0, len(data), _CHUNK):
        out.write(base64.b64encode(data[start:start + _CHUNK]).decode("ascii"))
