"""Compare on several input samples: per-sample first divergence, per-layer aggregate, data dependence.

What is supported:

- samples: a directory of ``.npy`` files (single-input models; the file stem is the sample id),
  of ``.npz`` files (one named array per model input), or of subdirectories holding one
  ``NAME.npy`` per model input; or an explicit list of files/arrays/dicts.
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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdiff.errors import InputError
from netdiff.types import Report


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
            if entry.is_file() and entry.suffix.lower() in (".npy", ".npz"):
                samples.append(Sample(entry.stem, entry))
            elif entry.is_dir():
                arrays = {f.stem: f for f in sorted(entry.glob("*.npy"))}
                if arrays:
                    samples.append(Sample(entry.name, arrays))
        if not samples:
            raise InputError(f"{path}: no sample found (expected .npy/.npz files or folders of NAME.npy)")
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


def compare_samples(reference: Any, target: Any, samples: str | Path | Sequence[Any], *,
                    reference_format: str | None = None, target_format: str | None = None,
                    reference_options: Mapping[str, Any] | None = None,
                    target_options: Mapping[str, Any] | None = None, **options: Any) -> Report:
    """Compare ``target`` with ``reference`` on every sample and aggregate.

    Args:
        reference: Reference model (path or :class:`netdiff.runners.Model`).
        target: Target model, or a directory of per-sample dumps ``<sample_id>/``.
        samples: A samples directory or list (see :func:`load_samples`).
        reference_format: Force the reference runner.
        target_format: Force the target's reader or runner.
        reference_options: Runner options of the reference.
        target_options: Reader/runner options of the target.
        **options: Passed to :func:`netdiff.compare` (thresholds, mapping, isolated, ...).

    Raises:
        InputError: The reference is not a model, or the target is a single dump.
    """
    from netdiff.pipeline import compare, open_source
    from netdiff.runners import Model

    items = load_samples(samples)
    ref_model = open_source(reference, reference_format, reference_options)
    if not isinstance(ref_model, Model):
        raise InputError("several samples need a reference model to run (the reference is a dump)")
    per_sample_dir = _per_sample_dir(target, items)
    tgt_model = None
    if per_sample_dir is None:
        tgt_model = open_source(target, target_format, target_options)
        if not isinstance(tgt_model, Model):
            raise InputError(f"{target}: a single target dump holds one sample; for several samples give a target "
                             f"model or a directory with one dump per sample id ({', '.join(s.id for s in items[:3])}, ...)")
    reports: list[tuple[str, Report]] = []
    for sample in items:
        if tgt_model is not None:
            report = compare(ref_model, tgt_model, sample.inputs, **options)
        else:
            report = compare(ref_model, per_sample_dir / sample.id, sample.inputs, target_format=target_format,
                             target_options=target_options, **options)
        reports.append((sample.id, report))
    return aggregate(reports)


def _per_sample_dir(target: Any, items: list[Sample]) -> Path | None:
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


def aggregate(reports: Sequence[tuple[str, Report]]) -> Report:
    """Merge per-sample reports into the worst sample's report with per-layer sample statistics."""
    from netdiff.diagnosis.samples import dataset_dependent_finding

    def badness(item: tuple[str, Report]) -> tuple[int, float]:
        report = item[1]
        cosines = [x.metrics.cosine for x in report.layers if x.metrics is not None and not math.isnan(x.metrics.cosine)]
        return sum(x.status == "diverged" for x in report.layers), -min(cosines, default=1.0)

    worst_id, base = max(reports, key=badness)
    for layer in base.layers:
        values = []
        for sample_id, report in reports:
            try:
                other = report.layer(layer.name)
            except KeyError:
                continue
            if other.metrics is not None and not math.isnan(other.metrics.cosine):
                values.append((other.metrics.cosine, sample_id, other.status))
        if not values:
            continue
        worst = min(values)
        layer.extra["samples"] = {
            "count": len(values), "mean_cosine": sum(v[0] for v in values) / len(values),
            "worst_cosine": worst[0], "worst_sample": worst[1],
            "diverged_in": [v[1] for v in values if v[2] == "diverged"]}
    base.meta["samples"] = [{"id": sid, "first_divergence": r.first_divergence} for sid, r in reports]
    base.meta["worst_sample"] = worst_id
    base.inputs = {**base.inputs, "samples": f"{len(reports)} (report shows {worst_id})"}
    finding = dataset_dependent_finding(base)
    if finding is not None:  # the headline of a multi-sample comparison: listed first
        base.findings = [finding, *base.findings]
    return base
