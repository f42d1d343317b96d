"""Partial reads: one broken file becomes an unreadable tensor, but a dump with nothing readable is an error."""

from __future__ import annotations

from collections.abc import Mapping

from netdiff.errors import DumpFormatError
from netdiff.types import Tensor


def require_readable(tensors: Mapping[str, Tensor]) -> None:
    """Raise the first tensor's error when every tensor of a dump is unreadable.

    A dump where only some files are broken is still compared (those layers get status
    ``error``); when all are broken there is nothing to compare, so the user gets the reason.

    Raises:
        DumpFormatError: Every tensor is unreadable (the message is the first one's reason).
    """
    if tensors and all(t.error for t in tensors.values()):
        first = next(iter(tensors.values()))
        more = f" (and {len(tensors) - 1} more unreadable file(s))" if len(tensors) > 1 else ""
        raise DumpFormatError(f"{first.error}{more}")
