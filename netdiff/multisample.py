"""Samples of a multi-sample comparison: what a samples directory holds and how a sample becomes inputs.

The comparison itself is :mod:`netdiff.dataset` (streamed, on worker processes or a cluster).

- samples: a directory of ``.npy`` files (single-input models; the file stem is the sample id),
  of ``.npz`` files (one named array per model input), of images (``.png``, ``.jpg``; decoded and
  preprocessed as calibration images), or of subdirectories holding one ``NAME.npy`` (or image)
  per model input; or an explicit list of files/arrays/dicts.
- reference: a model (it is run on every sample).
- target: a second model (run on every sample), or a directory of per-sample dumps
  ``TARGET/<sample_id>/...`` (each read with the target's reader). A single dump holds one
  sample's tensors, so it cannot be compared with several samples (InputError).

The report is the worst sample's report (real origins and findings of one sample), with
``layer.extra["samples"]`` aggregating every sample per layer, ``report.meta["samples"]``
listing each sample's first divergence, and a ``dataset_dependent`` finding when only some
samples diverge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdiff.errors import InputError
from netdiff.types import Report


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SAMPLE_SUFFIXES = (".npy", ".npz", *IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Sample:
    """One input sample: an id and what :func:`netdiff.inputs.resolve_feeds` accepts."""

    id: str
    inputs: Any


def load_samples(source: str | Path | Sequence[Any]) -> list[Sample]:
    """Turn a samples directory or a list of inputs into :class:`Sample` s (sorted by id for directories).

    Raises:
        InputError: The directory holds no sample, or a list is empty.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_dir():
            raise InputError(f"{path}: a samples source must be a directory (of .npy, .npz or per-sample folders)")
        samples = []
        for entry in sorted(path.iterdir()):
            if entry.is_file() and entry.suffix.lower() in SAMPLE_SUFFIXES:
                samples.append(Sample(entry.stem, entry))
            elif entry.is_dir():
                arrays = {f.stem: f for f in sorted(entry.iterdir())
                          if f.is_file() and f.suffix.lower() in (".npy", *IMAGE_SUFFIXES)}
                if arrays:
                    samples.append(Sample(entry.name, arrays))
        if not samples:
            raise InputError(f"{path}: no sample found (expected .npy/.npz/.png/.jpg files or folders of NAME.npy)")
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            raise InputError(f"{path}: sample ids repeat (same name, different suffix): "
                             f"{', '.join(sorted({i for i in ids if ids.count(i) > 1})[:5])}")
        return samples
    items = list(source)
    if not items:
        raise InputError("no samples given")
    samples = []
    for i, item in enumerate(items):
        if isinstance(item, Sample):
            samples.append(item)
        elif isinstance(item, (str, Path)):
            samples.append(Sample(Path(item).stem, Path(item)))
        else:
            samples.append(Sample(f"sample{i}", item))
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise InputError(f"sample ids repeat: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    return samples


def sample_args(values: Sequence[str]) -> list[Path] | Path | None:
    """Samples meant by ``--input`` values: one directory, or several unnamed existing files; else None."""
    if len(values) == 1 and Path(values[0]).is_dir():
        return Path(values[0])
    plain = [v for v in values if Path(v).is_file()]
    if len(values) > 1 and len(plain) == len(values):
        return [Path(v) for v in values]
    return None


def compare_samples(reference: Any, target: Any, samples: str | Path | Sequence[Any], **options: Any) -> Report:
    """Compare ``target`` with ``reference`` on every sample and aggregate (see
    :func:`netdiff.dataset.compare_dataset`; without ``jobs`` it uses every core)."""
    from netdiff.dataset import compare_dataset

    return compare_dataset(reference, target, samples, **options)


def sample_feeds(sample: Sample, specs: Sequence[Any], preprocess: Any = None) -> dict[str, np.ndarray]:
    """The model inputs of one sample: arrays, .npy/.npz files, or images (decoded and preprocessed)."""
    from netdiff.calibration import IMAGE_SUFFIXES, Preprocess, image_to_input, read_image
    from netdiff.inputs import fit_to_spec, resolve_feeds

    def image(path: Path, spec: Any) -> np.ndarray:
        return fit_to_spec(image_to_input(read_image(path), spec, preprocess or Preprocess()), spec)

    inputs = sample.inputs
    if isinstance(inputs, Path) and inputs.suffix.lower() in IMAGE_SUFFIXES:
        if len(specs) != 1:
            raise InputError(f"{inputs}: an image sample needs a single-input model (this one has {len(specs)})")
        return {specs[0].name: image(inputs, specs[0])}
    if isinstance(inputs, Mapping):
        by_name = {s.name: s for s in specs}
        images = {n: image(v, by_name[n]) for n, v in inputs.items()
                  if isinstance(v, Path) and v.suffix.lower() in IMAGE_SUFFIXES and n in by_name}
        if images:
            inputs = {**inputs, **images}
    return resolve_feeds(specs, inputs)[0]


def per_sample_dir(target: Any, items: list[Sample]) -> Path | None:
    """The directory of per-sample target dumps ``TARGET/<sample_id>``, or None when ``target`` is not one."""
    if not isinstance(target, (str, Path)):
        return None
    path = Path(target)
    if not path.is_dir():
        return None
    present = [s.id for s in items if (path / s.id).exists()]
    if not present:
        return None
    missing = [s.id for s in items if s.id not in present]
    if missing:
        raise InputError(f"{path}: no target dump for sample(s) {', '.join(missing[:5])} "
                         f"(expected {path}/<sample_id>/ for every sample)")
    return path
