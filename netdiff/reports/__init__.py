"""Renderers of :class:`netdiff.types.Report`: terminal, JSON, CSV (HTML in its own module)."""
