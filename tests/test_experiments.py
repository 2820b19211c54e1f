"""The paper's protocol end to end on a tiny model, the compress CLI, and the model zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bitswap import zoo
from bitswap.coders import Coder
from bitswap.experiment_cli import main as compress_main
from bitswap.experiments import experiment_indices, run_experiments, summarize
from bitswap.vae import ResNetVAE, VAEConfig, save_model


def tiny(nz=2, seed=0):
    torch.manual_seed(seed)
    return ResNetVAE(VAEConfig(x_channels=1, nz=nz, zchannels=1, width=8, blocks=2,
                               nprocessing=1, dropout=0.0)).eval()


def test_experiment_indices():
    idx = experiment_indices(1000, 5, 100, seed=3)
    assert idx.shape == (5, 100)
    assert all(len(set(row)) == 100 for row in idx)
    assert np.array_equal(idx[:2], experiment_indices(1000, 2, 100, seed=3))
    assert not np.array_equal(idx, experiment_indices(1000, 5, 100, seed=4))
    with pytest.raises(ValueError):
        experiment_indices(10, 1, 11)


def test_run_experiments_accounts_exactly(tmp_path):
    from cli_fixtures import tiny_coding, tiny_model
    from bitswap.container import Container
    from bitswap.experiment_cli import StreamFiles
    from bitswap.images import decompress
    images = np.random.default_rng(0).integers(0, 256, (200, 1, 32, 32), dtype=np.uint8)
    coding = tiny_coding(1, 2, seed=0, quantbits=8)
    model = tiny_model(1, 2, seed=0).eval()
    coder = Coder(coding.protocol(), lanes=32)          # fewer chunks per tensor: a quicker test
    idx = experiment_indices(len(images), 3, 4, seed=1)
    elbo = lambda x: model.negative_elbo(torch.from_numpy(x)).detach().numpy()
    files = StreamFiles(tmp_path / "s", coding, coder, images, idx)
    meta, arr = run_experiments(coder, images, idx, seed=1, batch=2, elbo=elbo, on_stream=files, progress=False)
    assert arr["net"].shape == (3, 4) and arr["layer_bits"].shape == (3, 4, 3)
    assert np.allclose(arr["net"], arr["layer_bits"].sum(2))
    assert np.all(np.diff(arr["initial_bits"], axis=1) >= 0)
    # the total after the last image is the size of the stream in its .bsw file, and the file
    # (experiments 0-1 coded side by side, 2 alone) decodes to the experiment's images
    for e in range(3):
        c = Container.from_bytes(files.path(e).read_bytes())
        assert c.header.seed == 1 + 2 * (e // 2)
        assert arr["total"][e, -1] * 4 * 1024 == c.message().num_bits()
        decoded = decompress(c, coding)
        assert [entry.name for entry, _ in decoded] == [f"test{i:05d}" for i in idx[e]]
        for (_, px), i in zip(decoded, idx[e]):
            assert np.array_equal(px, images[i])
    files.verify_first()
    s = summarize(meta, arr)
    assert meta["lossless"] and s["total_after"][1] > s["total_after"][4]


def test_stream_names_stay_unique_when_an_image_repeats():
    from bitswap.experiment_cli import _stream_names
    assert _stream_names(np.array([7, 12])) == ["test00007", "test00012"]
    assert _stream_names(np.array([7, 12, 7])) == ["0-test00007", "1-test00012", "2-test00007"]


def test_compress_cli_errors_are_one_line(tmp_path, capsys):
    assert compress_main("mnist", 8, ["--model", "no-such-model", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no-such-model" in err and "Traceback" not in err
    assert compress_main("cifar10", 8, ["--model", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_zoo_checks_hashes(tmp_path, monkeypatch):
    assets = tmp_path / "models"
    assets.mkdir()
    monkeypatch.setattr(zoo, "ASSETS", assets)
    monkeypatch.setattr(zoo, "MANIFEST", assets / "manifest.json")
    save_model(tiny(), tmp_path / "exported.pt", test_elbo=9.9)
    entry = zoo.add("mnist-nz2", tmp_path / "exported.pt")
    assert entry["nz"] == 2 and entry["test_elbo"] == 9.9
    assert zoo.available() == ["mnist-nz2"]
    assert zoo.load("mnist-nz2").nz == 2
    with pytest.raises(zoo.ModelError, match="unknown model"):
        zoo.load("mnist-nz3")
    weights = assets / entry["file"]
    data = bytearray(weights.read_bytes())
    data[-100] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(zoo.ModelError, match="corrupt"):
        zoo.load("mnist-nz2")
    weights.unlink()
    with pytest.raises(zoo.ModelError, match="missing"):
        zoo.load("mnist-nz2")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(zoo.ModelError):
        zoo.load(str(tmp_path / "junk.pt"))


def test_results_table_is_generated_from_result_files(tmp_path):
    import results_table
    summary = {"net": 1.3, "elbo": 1.29, "gap": 0.01, "total_after": {"1": 3.5, "50": 1.33, "100": 1.31},
               "initial_bits_first": 2000.0, "initial_bits_end": 2100.0,
               "encode_images_per_s": 50.0, "decode_images_per_s": 50.0}
    for scheme in ("bitswap", "bbans"):
        (tmp_path / f"mnist_nz8_{scheme}.json").write_text(json.dumps(
            {"summary": summary, "model": "mnist-nz8", "experiments": 10, "ndatapoints": 100}))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results -->\nold\n<!-- /results -->\nend\n")
    assert results_table.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    u = 1024 / 784     # MNIST is reported per 28x28 pixel, as in the paper
    assert (f"| mnist (per 28x28 pixel) | 8 | mnist-nz8 | {u * 1.29:.3f} | {u * 1.3:.3f} | "
            f"{u * 3.5:.2f} / {u * 1.33:.2f} / {u * 1.31:.2f} |") in text
    assert "old" not in text and text.startswith("intro") and text.endswith("end\n")


def test_photo_tables_are_generated_from_the_folder_summary(tmp_path):
    import results_table
    rows = [{"image": "a.png", "width": 64, "height": 32, "bits_per_subpixel": 4.0, "png": 5.0,
             "webp": 3.0, "jpegxl": 2.5},
            {"image": "b.png", "width": 32, "height": 32, "bits_per_subpixel": 5.0, "png": 6.0,
             "webp": 4.0, "jpegxl": 3.5}]
    (tmp_path / "kodak").mkdir()
    (tmp_path / "kodak" / "imagenetcrop_kodak.json").write_text(json.dumps(
        {"model": "cifar10-nz8", "bitswap": True, "folder": "x/kodak", "images": rows,
         "means": {"bits_per_subpixel": 4.5, "png": 5.5, "webp": 3.5, "jpegxl": 3.0}}))
    readme, doc = tmp_path / "README.md", tmp_path / "doc.md"
    readme.write_text("<!-- results -->\n<!-- /results -->\n")
    doc.write_text("a\n<!-- photos -->\nold\n<!-- /photos -->\nb\n")
    assert results_table.main(["--results", str(tmp_path), "--readme", str(readme),
                               "--photos-doc", str(doc)]) == 0
    assert "| kodak (2) | cifar10-nz8 | Bit-Swap | 4.500 | 5.500 | 3.500 | 3.000 |" in readme.read_text()
    text = doc.read_text()
    assert "| a | 64x32 | 4.000 | 5.000 | 3.000 | 2.500 |" in text
    assert "| **mean** | | **4.500** | 5.500 | 3.500 | 3.000 |" in text and "old" not in text
    (tmp_path / "other.md").write_text("no markers\n")
    assert results_table.main(["--results", str(tmp_path), "--photos-doc", str(tmp_path / "other.md")]) == 2
