"""netdiff: find where, and why, a converted neural network starts to give wrong answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from netdiff.inputs import InputsLike
    from netdiff.progress import Progress
    from netdiff.types import Report, Thresholds


def compare(reference: Any, target: Any, inputs: InputsLike = None, *,
            reference_format: str | None = None, target_format: str | None = None,
            reference_options: Mapping[str, Any] | None = None, target_options: Mapping[str, Any] | None = None,
            mapping: Mapping[str, str] | str | Path | None = None, thresholds: Thresholds | None = None,
            seed: int = 0, diagnose: bool = True, isolated: str = "origins", workers: int = 2,
            precision: Any = None, progress: Progress | None = None, score_threshold: float = 0.5,
            naming: str | None = None) -> Report:
    """Compare every tensor of ``target`` with ``reference`` and return a :class:`~netdiff.types.Report`.

    Args:
        reference: A model file (.onnx, Caffe .prototxt) or a dump (directory, .npz, ...),
            or a :class:`~netdiff.types.Dump`.
        target: A model file or a dump, as for ``reference``; a second model runs on the same inputs.
        inputs: Model inputs: a dict name -> array or .npy path, a single array or path,
            or None for a seeded random input.
        reference_format: Force a reader or runner key for the reference.
        target_format: Force a reader or runner key for the target.
        reference_options: Reader/runner options for the reference (e.g. ``weights``).
        target_options: Reader/runner options for the target (e.g. ``fusion_map``).
        mapping: ``{target_name: reference_name}`` pairs or a JSON file of them.
        thresholds: Divergence thresholds (default cosine < 0.99 or rel_l2 > 0.05).
        seed: Seed of the random input used when ``inputs`` is None.
        diagnose: Run the diagnosis rules.
        isolated: Isolated-error re-runs: "origins", "all" or "none".
        workers: Threads measuring tensors in parallel.
        precision: The target's precision ("int8", "fp16", "nnie8", ... or a ``netdiff.noise.Precision``),
            for the expected noise per layer (see :func:`netdiff.pipeline.compare`).
        progress: Receives progress (silent by default).
        score_threshold: Detector heads keep boxes scoring at least this ("no boxes", lost/extra boxes).
        naming: How the target names a Caffe net's tensors, "blob" or "layer" (None: detected).

    The same function as :func:`netdiff.pipeline.compare`, imported on first call so that
    ``import netdiff`` stays light.
    """
    from netdiff.pipeline import compare as _compare

    return _compare(reference, target, inputs, reference_format=reference_format, target_format=target_format,
                    reference_options=reference_options, target_options=target_options, mapping=mapping,
                    thresholds=thresholds, seed=seed, diagnose=diagnose, isolated=isolated, workers=workers,
                    precision=precision, progress=progress, score_threshold=score_threshold,
                    naming=naming)


__all__ = ["compare", "__version__"]
