"""Shipped pretrained models: a name such as ``mnist-nz8`` -> verified weights.

The weights live in ``bitswap/assets/models/`` (inside the package, so they work from any
install) as state_dict files with their config (:func:`bitswap.vae.save_model`), listed
in ``manifest.json`` with their SHA-256, dataset, depth and measured test-set -ELBO.
Loading checks the hash before reading the file and reads it with
``torch.load(weights_only=True)`` (in :func:`bitswap.vae.load_model`).

Each entry may also name the model's exact integer network (``exact``: file, SHA-256, digest,
its -ELBO next to the float one; :mod:`bitswap.export` builds it) and networks that earlier
files were coded with (``exact_retired``): a file names its network by digest, and
:func:`exact_network` finds it among both, so old files keep decoding.

``python -m bitswap.zoo add NAME FILE`` copies an exported model in and records it. This
module is the manifest's one writer (:func:`write_manifest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from .data import file_digest
from .errors import ModelError  # noqa: F401  (a model that is unknown, missing, corrupt or inconsistent)
from .fileio import atomic_write, atomic_write_bytes

ASSETS = Path(__file__).resolve().parent / "assets" / "models"
MANIFEST = ASSETS / "manifest.json"



def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def manifest() -> dict:
    if not MANIFEST.exists():
        return {}
    try:
        return json.loads(MANIFEST.read_text())
    except ValueError as exc:
        raise ModelError(f"{MANIFEST} is corrupt: {exc}") from exc


def write_manifest(entries: dict) -> None:
    """Replace the manifest (atomically): the only place that writes it."""
    atomic_write_bytes(MANIFEST, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())


def record_exact(name: str, record: dict) -> None:
    """Record ``record`` (file, sha256, digest, format, figures) as the exact network of
    shipped model ``name``."""
    entries = manifest()
    if name not in entries:
        raise ModelError(f"unknown model {name!r}")
    entries[name]["exact"] = record
    write_manifest(entries)


def record_bins(name: str, setting: str, record: dict) -> None:
    """Record the integer latent bins of shipped model ``name`` for a bin setting
    (``uniform-10``: file, sha256, digest)."""
    entries = manifest()
    if name not in entries:
        raise ModelError(f"unknown model {name!r}")
    entries[name].setdefault("bins", {})[setting] = record
    write_manifest(entries)


def exact_network(name: str, digest: str | None = None, device="cpu"):
    """The exact integer network of shipped model ``name``: its current one, or (``digest``) the
    one, current or retired, whose digest that is. Hash-checked against the manifest; a
    :class:`ModelError` says what is missing."""
    from . import exact, exact_mlp, legacy_exact
    entry = manifest().get(name)
    if not entry:
        raise ModelError(f"unknown model {name!r}; shipped models: {', '.join(available()) or 'none'}")
    records = ([entry["exact"]] if "exact" in entry else []) + list(entry.get("exact_retired", []))
    if digest is not None:
        records = [r for r in records if r.get("digest") == digest]
    if not records:
        what = f"an exact network with digest {digest[:16]}" if digest else "an exact integer network"
        raise ModelError(f"model {name!r} has no shipped {what}")
    rec = records[0]
    path = ASSETS / rec["file"]
    if not path.is_file():
        raise ModelError(f"the exact network of {name} is missing: {path}")
    readers = {f"{exact.FORMAT} {exact.VERSION}": exact.ExactNetwork,
               f"{legacy_exact.FORMAT} {legacy_exact.VERSION}": legacy_exact.ExactVAE,
               f"{exact_mlp.FORMAT} {exact_mlp.VERSION}": exact_mlp.ExactMLP}
    reader = readers.get(rec.get("format", ""))
    if reader is None:
        raise ModelError(f"the exact network of {name} has an unknown format {rec.get('format')!r}")
    try:
        net = reader.load(path, device, sha256=rec["sha256"])
    except ValueError as exc:
        raise ModelError(f"exact network of {name}: {exc}") from exc
    net.name = name
    return net


class CodingModel:
    """Everything coding needs, with no float weights: the exact integer network and, for a
    ResNet VAE, the integer latent bins of one bin setting. ``digest`` names it in files (the
    network's digest, the bins' digest and the kind, hashed together); ``protocol()`` is the
    coder's model protocol over it (:mod:`bitswap.latent_models`)."""

    kind = "resnet-vae"

    def __init__(self, name: str, network, bins):
        self.name, self.network, self.bins = name, network, bins
        self.nz = network.nz
        self.x_shape, self.z_shape = tuple(network.x_shape), tuple(network.z_shape)
        self.strategy, self.quantbits = bins.strategy, bins.quantbits
        h = hashlib.sha256(f"bitswap-coding:{self.kind}:".encode())
        h.update(bytes.fromhex(network.digest()))
        h.update(bytes.fromhex(bins.digest))
        self.digest = h.hexdigest()

    @property
    def channels(self) -> int:
        return int(self.x_shape[0])

    def protocol(self, network_batch: int | None = None):
        from .latent_models import ResNetHierarchy
        return ResNetHierarchy(self.network, self.bins, network_batch=network_batch)


class BBANSCodingModel:
    """A BB-ANS paper model as a coding model (the ``bbans-mlp`` kind): its exact integer MLP
    (:mod:`bitswap.exact_mlp`) with the buckets it stores (``2**latent_bits`` equiprobable under
    the N(0, 1) prior: the bin strategy ``prior``) and the posterior and likelihood precisions
    of :data:`bitswap.bbans.CODING`. It codes whole 28x28 grey digits, no patches: binarized ones
    (a Bernoulli model; their images have mode ``1``, pixels 0 or 255, coded as 0/1) or 8-bit
    ones (a beta-binomial model). ``digest`` hashes the kind, the MLP's digest and the two
    precisions, so a file names everything its decoder computes with."""

    kind = "bbans-mlp"
    strategy = "prior"
    channels = 1
    nz = 1
    x_shape = (1, 28, 28)

    def __init__(self, name: str, network):
        from .bbans import CODING
        self.name, self.network = name, network
        default = CODING[network.config.likelihood]
        self.posterior_precision = int(default["posterior_precision"])
        self.likelihood_precision = int(default["likelihood_precision"])
        self.quantbits = int(network.latent_bits)
        self.z_shape = (int(network.latent),)
        self.binary = not network.raw
        h = hashlib.sha256(f"bitswap-coding:{self.kind}:".encode())
        h.update(bytes.fromhex(network.digest()))
        h.update(bytes([self.posterior_precision, self.likelihood_precision]))
        self.digest = h.hexdigest()

    @property
    def mode(self) -> str:
        """The mode of the images it codes: ``1`` binarized, ``L`` 8-bit."""
        return "1" if self.binary else "L"

    def to_units(self, planes):
        """An image's (1, 28, 28) planes -> what the model codes (0/1 for a binary model)."""
        return planes // 255 if self.binary else planes

    def to_planes(self, units):
        """The inverse of :meth:`to_units`."""
        return units * 255 if self.binary else units

    def protocol(self, network_batch: int | None = None):
        from .bbans import BBANSCoding
        return BBANSCoding(self.network, self.posterior_precision, self.likelihood_precision, network_batch)


def shipped_bins(name: str, strategy: str = "uniform", quantbits: int = 10):
    """The integer latent bins (:class:`bitswap.intbins.IntLatentBins`) shipped with model
    ``name`` for a bin setting, SHA-256 and digest checked against the manifest."""
    from .intbins import IntLatentBins, setting
    entry = manifest().get(name, {}).get("bins", {}).get(setting(strategy, quantbits))
    if entry is None:
        raise ModelError(f"no {quantbits}-bit {strategy} integer latent bins are shipped for model {name!r}")
    path = ASSETS / entry["file"]
    if not path.is_file() or file_digest(path, "sha256") != entry["sha256"]:
        raise ModelError(f"integer latent bins of {name} are missing or corrupt: {path}")
    try:
        bins = IntLatentBins.load(path)
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    if bins.digest != entry["digest"] or (bins.strategy, bins.quantbits) != (strategy, quantbits):
        raise ModelError(f"integer latent bins of {name}: the file's bins differ from the manifest's")
    return bins


def is_bbans_name(name: str) -> bool:
    """Whether a shipped model codes with an exact BB-ANS MLP."""
    from . import exact_mlp
    return manifest().get(name, {}).get("exact", {}).get("format") == f"{exact_mlp.FORMAT} {exact_mlp.VERSION}"


BUNDLE_FORMAT, BUNDLE_VERSION, BUNDLE_SUFFIX = "bitswap-coding", 1, ".bswm"


def load_coding(name: str, strategy: str = "uniform", quantbits: int = 10, device="cpu") -> CodingModel:
    """The coding model for a bin setting of a shipped model ``name`` (its current exact
    network and its integer bins, hash-checked) or of an exported model file (``X.bswm``,
    :func:`bitswap.export.export_bundle`; given the float weights ``X.pt``, the ``X.bswm``
    beside them). The float weights are never read."""
    if name in manifest() and is_bbans_name(name):
        coding = BBANSCodingModel(name, exact_network(name, device=device))
        if (strategy, quantbits) != (coding.strategy, coding.quantbits):
            raise ModelError(f"{name} codes with {coding.quantbits}-bit {coding.strategy} buckets, not "
                             f"{quantbits}-bit {strategy} latent bins")
        return coding
    if name in manifest():
        return CodingModel(name, exact_network(name, device=device), shipped_bins(name, strategy, quantbits))
    path = Path(name)
    if path.suffix != BUNDLE_SUFFIX:
        bundle = path.with_suffix(BUNDLE_SUFFIX)
        if not bundle.is_file():
            if path.is_file():
                raise ModelError(f"{path} holds float weights, which do not code files: export them first "
                                 f"(python -m bitswap.export {path} writes {bundle})")
            raise ModelError(f"unknown model {name!r}; shipped models: {', '.join(available()) or 'none'} "
                             f"(or an exported model {BUNDLE_SUFFIX} file)")
        path = bundle
    return load_bundle(path, strategy, quantbits, device)


def load_bundle(path, strategy: str = "uniform", quantbits: int = 10, device="cpu") -> CodingModel:
    """The coding model of an exported model file for a bin setting (``weights_only`` load;
    the network's bounds and the bins' digest are checked as for shipped ones)."""
    import io

    import torch

    from .exact import BoundError, ExactNetwork
    from .intbins import IntLatentBins, setting
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"exported model not found: {path}") from None
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable exported model ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT \
            or payload.get("version") != BUNDLE_VERSION:
        raise ModelError(f"{path}: not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} file")
    key = setting(strategy, quantbits)
    stored = payload.get("bins", {})
    if key not in stored:
        raise ModelError(f"{path} has no {quantbits}-bit {strategy} latent bins (it has: "
                         f"{', '.join(sorted(stored)) or 'none'}; python -m bitswap.export makes others)")
    try:
        network = ExactNetwork(payload["network"], device)
        bins = IntLatentBins.load(io.BytesIO(stored[key].numpy().tobytes()))
    except (BoundError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path}: invalid exported model ({exc})") from None
    return CodingModel(str(payload.get("name") or path.stem), network, bins)


def available() -> list[str]:
    return sorted(manifest())


def default_name(dataset: str, nz: int) -> str:
    return f"{dataset}-nz{nz}"


def resolve(name_or_path: str) -> tuple[str, Path, dict]:
    """(name, path, manifest entry or {}) for a shipped name or a weights file path."""
    entries = manifest()
    if name_or_path in entries:
        entry = entries[name_or_path]
        return name_or_path, ASSETS / entry["file"], entry
    path = Path(name_or_path)
    if path.suffix in (".pt", ".pth") or path.exists():
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return path.stem, path, {}
    raise ModelError(f"unknown model {name_or_path!r}; shipped models: {', '.join(available()) or 'none'}"
                     " (or give the path of a weights file)")


def load_payload(payload, map_location="cpu"):
    """The model of a loaded weights file: a ResNet VAE (``bitswap-vae``) or one of the BB-ANS
    paper's VAEs (``bitswap-bbans``), by the file's ``format``."""
    from . import bbans
    from .vae import load_model
    if isinstance(payload, dict) and payload.get("format") == bbans.FORMAT:
        return bbans.load_model(payload, map_location)
    return load_model(payload, map_location=map_location)


def load(name_or_path: str, device: str = "cpu"):
    """Load a shipped model by name (hash-checked) or an exported weights file."""
    import torch

    name, path, entry = resolve(name_or_path)
    if not path.is_file():
        raise ModelError(f"weights of {name} are missing: {path} (reinstall or re-export them)")
    if entry and _sha256(path) != entry["sha256"]:
        raise ModelError(f"weights of {name} are corrupt: the SHA-256 of {path} does not match the manifest")
    try:
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: not a loadable bitswap-vae weights file ({e})") from e
        model = load_payload(payload, device)
    except ModelError:
        raise
    except Exception as exc:  # a clear message for any unreadable file
        raise ModelError(f"cannot load model {name} from {path}: {exc}") from exc
    if entry and (model.nz != entry["nz"]):
        raise ModelError(f"{name}: the weights have nz={model.nz}, the manifest says {entry['nz']}")
    model.name = name
    return model.to(device).eval()


def add(name: str, file: str | os.PathLike) -> dict:
    """Copy an exported model into the package and record it in the manifest."""
    src = Path(file)
    payload = __import__("torch").load(src, map_location="cpu", weights_only=True)
    model = load_payload(payload)
    dest = ASSETS / f"{name.replace('-', '_')}.pt"
    ASSETS.mkdir(parents=True, exist_ok=True)
    if src.resolve() != dest.resolve():
        with open(src, "rb") as fsrc:
            atomic_write(dest, lambda f: shutil.copyfileobj(fsrc, f))
    entries = manifest()
    entries[name] = {
        "file": dest.name, "sha256": _sha256(dest), "nz": model.nz,
        "dataset": payload.get("config", {}).get("dataset", ""),
        "test_elbo": payload.get("test_elbo"), "train": payload.get("train", {}),
    }
    write_manifest(entries)
    return entries[name]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "add":
        print(json.dumps(add(sys.argv[2], sys.argv[3]), indent=2))
    else:
        print("shipped models:", ", ".join(available()) or "none")
        for name, entry in sorted(manifest().items()):
            print(f"  {name:20s} {entry.get('dataset', ''):8s} nz={entry.get('nz')}  "
                  f"test -ELBO {entry.get('test_elbo', float('nan')):.4f} bits/dim")
        print("usage: python -m bitswap.zoo add NAME EXPORTED_WEIGHTS.pt")
