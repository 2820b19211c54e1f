"""The exceptions of bitswap: one base class, :class:`Error`, and one subclass per kind.

A caller catches :class:`Error` for anything a file, an image, a model or a setting can do
wrong; the subclasses tell the kinds apart. Every class is also a ``ValueError`` (what the
library raised before it had its own hierarchy), so existing ``except ValueError`` code keeps
working. Messages name library settings (``max_megapixels``, ``quantbits``...) and never a
command-line flag: the command line adds its flags itself, from :attr:`LimitError.setting`
and :attr:`OptionError.option`.

The modules that raise them keep their historical names as the same classes or subclasses:
``container.ContainerError`` is a :class:`FormatError`, ``images.ChecksumMismatchError`` a
:class:`ChecksumError`, ``images.LimitError`` a :class:`LimitError` (and an
:class:`ImageError`, as before), ``zoo.ModelError`` a :class:`ModelError` and
``imageio.ImageError`` an :class:`ImageError`.
"""

from __future__ import annotations

__all__ = ["Error", "FormatError", "ChecksumError", "LimitError", "ModelError", "ImageError", "OptionError"]


class Error(ValueError):
    """Anything bitswap refuses or cannot do with what it was given."""


class FormatError(Error):
    """Data that is not a .bsw file, or a truncated, corrupt or inconsistent one."""


class ChecksumError(Error):
    """Decoded pixels (or latent bins) differ from those of the compressor: the file is
    damaged, or the decoder computed other probabilities than the encoder did."""


class LimitError(Error):
    """An image or a file over a configurable limit. :attr:`setting` names the limit
    (``max_megapixels``, ``max_total_megapixels``, ``max_memory``...) so that a caller can
    say how to raise it."""

    def __init__(self, message: str, setting: str):
        super().__init__(message)
        self.setting = setting


class ModelError(Error):
    """A model that is unknown, missing, corrupt, or not the one a file was compressed with."""


class ImageError(Error):
    """An input image that is unreadable, not an image, or that cannot be kept exactly."""


class OptionError(Error):
    """A setting outside its range. :attr:`option` is the keyword (``quantbits``, ``batch``...),
    :attr:`detail` what is wrong with it ("must be in 1..16"); the message is both."""

    def __init__(self, option: str, detail: str):
        super().__init__(f"{option} {detail}")
        self.option = option
        self.detail = detail
