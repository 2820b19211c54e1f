"""The experiment scripts write each coded stream as a version 4 .bsw file that ``bitswap
decompress`` decodes, here and under another CPU code path, to the test images the experiment
coded; weights files code with their exported model, and bare float weights are refused with
the command that exports them. Every shipped model's stream decodes identically under every
cross-environment condition of tests/test_portable.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitswap import bbans
from bitswap.__main__ import main as bitswap_main
from bitswap.container import Container
from bitswap.data import load_dataset
from bitswap.experiment_cli import main as experiment_main
from bitswap.results import load_results

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--experiments", "2", "--ndatapoints", "5", "--batch", "2", "--lanes", "32", "--quiet"]   # 32 lanes: quicker


def run_experiment(data: Path, out: Path, *extra: str) -> tuple[dict, dict]:
    assert experiment_main("mnist", 8, QUICK + ["--data", str(data), "--out", str(out), *extra]) == 0
    meta = json.loads(next(out.glob("*.json")).read_text())
    return meta, load_results(out / f"{Path(meta['streams']).name}.npz")[1]


def decoded_pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def check_streams(meta: dict, arrays: dict, data: Path, out: Path, decode, test=None) -> None:
    """Every experiment's file decodes (``decode(file, folder)``) to the test images it coded
    (``test``: (N, H, W) as the decoded PNGs hold them; default the 32x32 MNIST test set), in
    coding order, and its message is the stream the rates were measured on."""
    test = load_dataset("mnist", "test", data)[:, 0] if test is None else test
    files = sorted(Path(meta["streams"]).glob("*.bsw"))
    assert [f.name for f in files] == ["exp0000.bsw", "exp0001.bsw"]
    for e, path in enumerate(files):
        c = Container.from_bytes(path.read_bytes())
        assert c.version == 4 and c.header.batch == 1 and c.header.model_hash.hex() == meta["coding_digest"]
        assert c.header.bitswap == meta["bitswap"] and c.header.lanes == meta["lanes"]
        assert [im.name for im in c.header.images] == [f"test{i:05d}" for i in arrays["indices"][e]]
        # the file's message holds every bit the experiment counted, initial bits included
        assert arrays["total"][e, -1] * 5 * meta["dims"] == c.message().num_bits()
        assert all((im.width, im.height) == test.shape[1:] for im in c.header.images)
        folder = out / f"decoded{e}"
        decode(path, folder)
        pngs = decoded_pngs(folder)
        assert list(pngs) == sorted(f"test{i:05d}" for i in arrays["indices"][e])
        for i in arrays["indices"][e]:
            assert np.array_equal(pngs[f"test{i:05d}"], test[i])


def test_experiment_streams_decode_with_bitswap_decompress(shared_data, tmp_path, capsys):
    out = tmp_path / "results"
    meta, arrays = run_experiment(shared_data, out, "--nz", "2")
    printed = capsys.readouterr().out
    assert "exp0000.bsw" in printed and "python -m bitswap decompress" in printed
    assert meta["stream_format"] == "bsw 4" and meta["coding_digest"]
    check_streams(meta, arrays, shared_data, out,
                  lambda path, folder: bitswap_main(["decompress", str(path), "-o", str(folder), "-q"]) == 0 or
                  pytest.fail("decompress failed"))
    assert bitswap_main(["info", str(Path(meta["streams"]) / "exp0000.bsw")]) == 0
    assert "mnist-nz2" in capsys.readouterr().out


def test_weights_file_codes_with_its_exported_model(shared_data, tmp_path, capsys):
    from cli_fixtures import save_tiny_bundle
    bundle = save_tiny_bundle(tmp_path / "tiny.bswm", channels=1, nz=2, seed=3)
    weights = bundle.with_suffix(".pt")
    out = tmp_path / "results"
    meta, arrays = run_experiment(shared_data, out, "--model", str(weights), "--nz", "2", "--bins", "uniform")
    assert str(bundle) in capsys.readouterr().out          # how to decode: --model the bundle
    check_streams(meta, arrays, shared_data, out,
                  lambda path, folder: bitswap_main(["decompress", str(path), "-o", str(folder), "-q",
                                                     "--model", str(bundle)]) == 0 or pytest.fail("decompress"))
    # bare float weights: refused with the command that exports them
    bundle.unlink()
    assert experiment_main("mnist", 8, QUICK + ["--model", str(weights), "--nz", "2", "--data", str(shared_data),
                                                "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"python -m bitswap.export {weights}" in err and "Traceback" not in err


@pytest.mark.slow
def test_unshipped_bins_are_exported_beside_the_results(shared_data, tmp_path, monkeypatch, capsys):
    """A shipped model with a bin setting it does not ship: its bins are made for the run and
    written with its exact network to OUT/STEM.bswm, with which the streams decode."""
    monkeypatch.setenv("BITSWAP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    meta, arrays = run_experiment(shared_data, out, "--nz", "2", "--bins", "uniform", "--quantbits", "8")
    bundle = out / "mnist_nz2_bitswap.bswm"
    assert f"--model {bundle}" in capsys.readouterr().out and meta["stream_model"] == str(bundle)
    check_streams(meta, arrays, shared_data, out,
                  lambda path, folder: bitswap_main(["decompress", str(path), "-o", str(folder), "-q",
                                                     "--model", str(bundle)]) == 0 or pytest.fail("decompress"))


def cli_decode(path: Path, folder: Path) -> None:
    assert bitswap_main(["decompress", str(path), "-o", str(folder), "-q"]) == 0


def test_bbans_streams_decode_to_the_binarized_digits(shared_data, tmp_path, capsys):
    """A BB-ANS model's streams are .bsw files too (coding-model kind bbans-mlp, bins strategy
    'prior'): 28x28 digits, binarized ones as mode-1 images, which decompress restores."""
    out = tmp_path / "results"
    meta, arrays = run_experiment(shared_data, out, "--model", "bbans-binary")
    digits = bbans.crop28(load_dataset("mnist", "test", shared_data))
    binarized = bbans.binarize(digits, "stochastic", np.random.default_rng(meta["seed"]))[:, 0]
    check_streams(meta, arrays, shared_data, out, cli_decode, test=binarized.astype(bool))
    assert bitswap_main(["info", str(Path(meta["streams"]) / "exp0000.bsw")]) == 0
    info = capsys.readouterr().out
    assert "bbans-binary" in info and "(prior)" in info and "28x28 1," in info
    out_raw = tmp_path / "raw"
    meta, arrays = run_experiment(shared_data, out_raw, "--model", "bbans-raw")
    check_streams(meta, arrays, shared_data, out_raw, cli_decode, test=digits[:, 0])
    # other precisions are named by no coding model: raw streams, said so
    assert experiment_main("mnist", 8, QUICK + ["--model", "bbans-raw", "--posterior-precision", "16", "--data",
                                                str(shared_data), "--out", str(tmp_path / "p16")]) == 0
    assert "raw ANS messages" in capsys.readouterr().out
    assert len(list((tmp_path / "p16" / "streams").glob("*/*.ans"))) == 2


def test_prior_buckets_are_for_28x28_digits_only(shared_data, tmp_path):
    """The header of a BB-ANS file is checked: 28x28 grey or binary digits, nz 1, grey."""
    import dataclasses

    from bitswap import zoo
    from bitswap.container import Container, ContainerError
    from bitswap.images import compress
    out = tmp_path / "results"
    meta, _ = run_experiment(shared_data, out, "--model", "bbans-raw")
    c = Container.from_bytes((Path(meta["streams"]) / "exp0000.bsw").read_bytes())
    assert c.header.strategy == "prior" and c.header.nz == 1 and c.header.quantbits == 8
    for change in (dict(width=32, height=32), dict(mode="RGB")):
        bad = dataclasses.replace(c.header, images=[dataclasses.replace(c.header.images[0], **change)])
        with pytest.raises(ContainerError):
            Container(bad, c.payload).to_bytes()
    with pytest.raises(ContainerError, match="prior"):
        Container(dataclasses.replace(c.header, nz=2), c.payload).to_bytes()
    data = bytearray(c.to_bytes())
    code_at = data.index(bytes.fromhex(c.header.model_hash.hex())) + 32 + 2   # digest, channels, nz
    assert data[code_at] == 3
    with pytest.raises(zoo.ModelError, match="BB-ANS"):
        compress([np.zeros((1, 28, 28), np.uint8)], zoo.load_coding("bbans-raw", "prior", 8))


@pytest.mark.slow
@pytest.mark.parametrize("flags", [("--nz", "2", "--bitswap", "0"), ("--model", "bbans-binary")])
def test_experiment_streams_decode_on_another_cpu_code_path(shared_data, tmp_path, flags):
    """Coded here, decoded in a process whose torch runs its portable (non-vectorized) kernels:
    the exact integer networks give the same probabilities on any machine."""
    out = tmp_path / "results"
    meta, arrays = run_experiment(shared_data, out, *flags)
    test = None
    if "bbans-binary" in flags:
        digits = bbans.crop28(load_dataset("mnist", "test", shared_data))
        test = bbans.binarize(digits, "stochastic", np.random.default_rng(meta["seed"]))[:, 0].astype(bool)
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1")

    def decode(path, folder):
        proc = subprocess.run([sys.executable, "-m", "bitswap", "decompress", str(path), "-o", str(folder), "-q"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    check_streams(meta, arrays, shared_data, out, decode, test)


_DECODE_ALL = r"""
import json, sys, torch
torch.backends.mkldnn.enabled = sys.argv[1] == "1"
from bitswap.__main__ import main
flags, jobs = json.loads(sys.argv[2]), json.loads(sys.argv[3])
for path, folder in jobs:
    if main(["decompress", path, "-o", folder, "-q", *flags]) != 0:
        sys.exit(f"could not decode {path}")
"""


@pytest.mark.slow
def test_every_shipped_models_streams_decode_in_every_environment(shared_data, tmp_path):
    """An experiment stream of every shipped model (the ResNet VAEs with the experiments'
    adaptive bins, the BB-ANS paper's MLPs with their prior buckets), coded here, decodes under
    each of the cross-environment conditions (other ISA, oneDNN limited or off, one thread,
    numpy SIMD off, network batch 1) to exactly the pixels it decodes to here, which are the
    test images the experiment coded."""
    from test_portable import DECODERS, child_env

    from bitswap import zoo
    streams = {}
    for name in zoo.available():
        dataset = "cifar10" if name.startswith("cifar") else "mnist"
        out = tmp_path / name
        assert experiment_main(dataset, 8, ["--model", name, "--experiments", "1", "--ndatapoints", "2",
                                            "--batch", "2", "--lanes", "16", "--quiet", "--data", str(shared_data),
                                            "--out", str(out)]) == 0
        meta = json.loads(next(out.glob("*.json")).read_text())
        stem = Path(meta["streams"])
        streams[name] = (stem / "exp0000.bsw", load_results(out / f"{stem.name}.npz")[1])
    assert {"mnist-nz8", "cifar10-nz8", "bbans-raw", "bbans-binary"} <= set(streams)

    test = load_dataset("mnist", "test", shared_data)[:, 0]
    reference = {}
    for name, (path, arrays) in streams.items():
        assert bitswap_main(["decompress", str(path), "-o", str(tmp_path / f"{name}-here"), "-q"]) == 0
        reference[name] = decoded_pngs(tmp_path / f"{name}-here")
        assert list(reference[name]) == sorted(f"test{i:05d}" for i in arrays["indices"][0])
        if name.startswith("mnist-"):
            assert all(np.array_equal(reference[name][f"test{i:05d}"], test[i]) for i in arrays["indices"][0])
    for condition, (env, mkldnn, flags) in DECODERS.items():
        jobs = [(str(path), str(tmp_path / f"{name}-{condition.replace(' ', '_')}"))
                for name, (path, _) in streams.items()]
        r = subprocess.run([sys.executable, "-c", _DECODE_ALL, "1" if mkldnn else "0", json.dumps(flags),
                            json.dumps(jobs)], env=child_env(env), capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, f"{condition}: {r.stderr[-2000:]}"
        for (name, _), (_, folder) in zip(streams.items(), jobs):
            got = decoded_pngs(Path(folder))
            assert list(got) == list(reference[name]), (condition, name)
            assert all(np.array_equal(got[k], reference[name][k]) for k in got), (condition, name)
