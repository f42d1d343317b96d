"""netdiff: find where, and why, a converted neural network starts to give wrong answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from netdiff.types import Report


def compare(reference: Any, target: Any, inputs: Any = None, **options: Any) -> Report:
    """Compare a reference with a target and return a :class:`~netdiff.types.Report`.

    Args:
        reference: A model file (.onnx, Caffe .prototxt) or a dump (directory, .npz, ...).
        target: A model file or a dump, as for ``reference``.
        inputs: Model inputs: a dict name -> array or .npy path, a single array or path,
            or None for a seeded random input.
        **options: See :func:`netdiff.pipeline.compare`.
    """
    from netdiff.pipeline import compare as _compare

    return _compare(reference, target, inputs=inputs, **options)


__all__ = ["compare", "__version__"]
