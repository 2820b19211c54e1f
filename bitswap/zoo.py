"""Shipped pretrained models: a name such as ``mnist-nz8`` -> verified weights.

The weights live in ``bitswap/assets/models/`` (inside the package, so they work from any
install) as state_dict files with their config (:func:`bitswap.vae.save_model`), listed
in ``manifest.json`` with their SHA-256, dataset, depth and measured test-set -ELBO.
Loading checks the hash before reading the file and reads it with
``torch.load(weights_only=True)`` (in :func:`bitswap.vae.load_model`).

``python -m bitswap.zoo add NAME FILE`` copies an exported model in and records it.
"""

from __future__ import annotations

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
    atomic_write_bytes(MANIFEST, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())
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
