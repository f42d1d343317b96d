"""User-facing errors. The CLI catches only :class:`NetdiffError`; anything else is a bug."""


class NetdiffError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class DumpFormatError(NetdiffError):
    """A dump file or directory is malformed, truncated or of an unknown format."""


class ModelError(NetdiffError):
    """A model file cannot be read or is not supported."""


class ReferenceRunError(NetdiffError):
    """Running the reference (or a simulated target) failed."""


class InputError(NetdiffError):
    """Model inputs are missing, mis-shaped or unreadable."""


class AlignmentError(NetdiffError):
    """A mapping file is malformed or names tensors that do not exist."""


class UnsupportedOpError(NetdiffError):
    """A layer or op type cannot be translated or executed."""


class OutputError(NetdiffError):
    """An output path cannot be written (exists, not empty, not writable)."""


class InternalError(Exception):
    """A bug in netdiff (deliberately not a NetdiffError)."""
