"""Read-only decoding of files coded with the float32 network (.bsw versions 1, 2 and 3 with
inference 0): they decode bit-exactly only where the float32 network and its latent bins
compute the same floats as where they were written. Nothing new is written with it.
"""

from __future__ import annotations

from .errors import ChecksumError, LimitError, ModelError


def get_bins(model, quantbits: int, strategy: str, compute: bool = True):
    """The float latent bins files of the float32 network used: from prior samples only,
    deterministic given the model and the machine. ``compute=False``: only cached ones
    (LimitError ``allow_new_bins`` if there are none)."""
    from .discretization import BinsNotCachedError, cached_bins
    try:
        return cached_bins(model, quantbits, strategy, data=None, compute=compute)
    except BinsNotCachedError:
        raise LimitError(f"the latent bins of this file ({quantbits}-bit, {strategy}) are neither shipped nor "
                         "cached here; computing them takes minutes and memory", "allow_new_bins") from None


def check_model(header, model) -> None:
    """Raise ModelError unless ``model`` is the float model the file was compressed with."""
    from .discretization import weights_hash
    got = weights_hash(model)
    if got != header.model_hash.hex():
        raise ModelError(f"wrong model: the file was compressed with {header.model_name!r} (weights hash "
                         f"{header.model_hash.hex()[:16]}), the model given ({getattr(model, 'name', '?')!r}) "
                         f"has weights hash {got[:16]}")
    if model.nz != header.nz or int(model.x_shape[0]) != header.model_channels:
        raise ModelError("the model's depth or channel count does not match the file")


def float_decoder(c, model, device, limits, bins, allow_new_bins: bool):
    """(coder, model) of a float32-network file: the float model (``model``, or the shipped one
    the file or ``model`` names), checked against the file's weights hash, with its latent bins
    (cached, or computed if allowed). Bins that are not cached are refused as such before the
    memory check (raising the memory limit would not help); computing them is checked with the
    memory they take."""
    from . import zoo
    from .coders import Coder
    from .limits import bins_bytes, decode_memory
    h = c.header
    if model is None or isinstance(model, str):
        model = zoo.load(model or h.model_name, device=str(device or "cpu"))
    check_model(h, model)
    if bins is None:
        try:
            bins = get_bins(model, h.quantbits, h.strategy, compute=False)
        except LimitError:
            if not allow_new_bins:
                raise
            limits.check_memory(decode_memory(c, model, bins_nbytes=bins_bytes(h, model)),
                                "decoding this file (computing its latent bins)")
            bins = get_bins(model, h.quantbits, h.strategy)
    limits.check_memory(decode_memory(c, model), "decoding this file")
    if bins.digest != h.bins_digest.hex():
        raise ChecksumError(
            f"the latent bins computed here (digest {bins.digest[:16]}) differ from the ones used to compress "
            f"(digest {h.bins_digest.hex()[:16]}): the model computed different values on this hardware/software "
            "than when compressing; decode where it was compressed (same device type)")
    return Coder(model, bins, bitswap=h.bitswap, lanes=h.lanes, precision=h.precision, device=device), model
