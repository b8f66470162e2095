"""Exceptions and warnings raised by kmquant.

The library raises these typed exceptions; only the command-line layer turns them into a
one-line message and an exit code.
"""

__all__ = [
    "ImageReadError",
    "ImageWriteError",
    "KmquantError",
    "KmquantWarning",
    "OutputExistsError",
    "QualityTooLowError",
]


class KmquantError(Exception):
    """Base class of every error kmquant raises on purpose."""


class ImageReadError(KmquantError):
    """The input could not be read as an image (missing, not an image, truncated...)."""


class ImageWriteError(KmquantError):
    """The output could not be written (missing folder, exists, permission...)."""


class OutputExistsError(ImageWriteError):
    """The output file already exists and overwriting was not asked for."""


class QualityTooLowError(KmquantError):
    """No number of colours (up to 256) meets the quality target, or nothing fits the budget.

    The command line exits with code 99 for it, as pngquant does for ``--quality``.
    """


class KmquantWarning(UserWarning):
    """Something worth knowing happened, but the result is still valid.

    Raised for example when an image has fewer distinct colours than requested, or when an
    alpha channel had to be flattened.
    """
