"""Exceptions raised by ardmzip, each carrying the CLI exit code it maps to.

``str(error)`` is always a one-line message fit to show a user as is; the
CLI prints it and exits with ``error.exit_code`` instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "ArdmzipError",
    "InputError",
    "LimitError",
    "FormatError",
    "ChecksumError",
    "ModelMismatch",
    "OutputError",
]


class ArdmzipError(Exception):
    """Base class of every error ardmzip reports to a user."""

    exit_code: int = 1


class InputError(ArdmzipError):
    """The input image is unreadable or unsupported, or an argument is bad."""

    exit_code = 2


class LimitError(InputError):
    """A picture is larger than the pixel limit (``max_pixels``, ``--max-pixels``), or a file
    claims more than a limit allows: refused before anything is allocated."""

    exit_code = 2


class FormatError(ArdmzipError):
    """The data is not an .ardm file, or is truncated, corrupt or too new."""

    exit_code = 3


class ChecksumError(FormatError):
    """Decoding finished but the pixels do not match the stored CRC."""

    exit_code = 3


class ModelMismatch(ArdmzipError):
    """The archive was made with a model we do not have (the message names it)."""

    exit_code = 4


class OutputError(ArdmzipError):
    """The output exists (and overwriting was not asked for) or cannot be written."""

    exit_code = 5
