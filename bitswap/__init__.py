"""bitswap: lossless image compression with hierarchical VAEs and bits-back coding.

A re-creation of Bit-Swap (Kingma, Abbeel, Ho, ICML 2019) and BB-ANS (Townsend, Bird,
Barber, ICLR 2019). From Python, three functions in the style of imagecodecs:

    >>> import numpy as np, bitswap
    >>> image = np.full((28, 28), 200, np.uint8)
    >>> data = bitswap.encode(image)                  # the bytes of a .bsw file
    >>> bool((bitswap.decode(data)[0] == image).all())
    True
    >>> bitswap.info(data).images[0].width
    28

- :func:`encode` one image or a list (numpy arrays or Pillow images) into .bsw bytes,
  with the command line's options as keywords;
- :func:`decode` them back into numpy arrays of the dtypes and shapes given;
- :func:`info` describes a file as data (:class:`FileInfo`).

Everything refused raises a subclass of :class:`Error` (:class:`FormatError`,
:class:`ChecksumError`, :class:`LimitError`, :class:`ModelError`, :class:`ImageError`,
:class:`OptionError`), all of them ``ValueError``. ``import bitswap.pillow`` teaches Pillow
to open and save .bsw files; ``python -m bitswap`` is the command line.

The layers beneath, each testable on its own: :mod:`bitswap.ans` (vectorized rANS),
:mod:`bitswap.codecs` (push/pop codecs), :mod:`bitswap.vae` (the ResNet VAE),
:mod:`bitswap.coders` (Bit-Swap and BB-ANS over any hierarchical model),
:mod:`bitswap.images` (compressing images into the .bsw container, :mod:`bitswap.container`).
"""

__version__ = "0.1.0"

from .errors import ChecksumError, Error, FormatError, ImageError, LimitError, ModelError, OptionError  # noqa: E402

__all__ = ["encode", "decode", "info", "FileInfo", "ImageInfo", "Error", "FormatError", "ChecksumError",
           "LimitError", "ModelError", "ImageError", "OptionError", "__version__"]

# encode, decode and info need torch and numpy; they are imported on first use, so that
# ``import bitswap.errors`` or ``python -m bitswap --help`` stays quick.
_API = ("encode", "decode", "info", "FileInfo", "ImageInfo")


def __getattr__(name: str):
    """encode, decode, info, FileInfo and ImageInfo: imported from :mod:`bitswap.api` on first use."""
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'bitswap' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazily imported ones included."""
    return sorted(set(globals()) | set(_API))
