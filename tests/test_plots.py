"""cma.py and stackplot.py render from small result files written with save_results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitswap.results import result_name, save_results


def _write_results(folder: Path, dataset: str, nz: int, bitswap: bool, E=3, N=12, dims=1024,
                   seed=0, negative_layer=False, no_elbo=False) -> Path:
    rng = np.random.default_rng(seed)
    net = 1.3 + 0.05 * rng.standard_normal((E, N))
    elbo = np.full((E, N), np.nan) if no_elbo else net - 0.01
    k = np.arange(1, N + 1)
    init = np.full((E, N), 2600.0 if bitswap else 2200.0 * nz)
    total = (np.cumsum(net, axis=1) * dims + init) / (k * dims)
    layer = np.abs(0.1 * rng.standard_normal((E, N, nz + 1)))
    if negative_layer:
        layer[..., -1] = -0.05
    layer[..., 0] = net - layer[..., 1:].sum(axis=-1)
    meta = {"dataset": dataset, "nz": nz, "scheme": "bitswap" if bitswap else "bbans",
            "dims": dims, "quantbits": 10}
    return save_results(folder / result_name(dataset, nz, bitswap), meta, net=net, elbo=elbo,
                        total=total, initial_bits=init, layer_bits=layer,
                        indices=np.tile(np.arange(N), (E, 1)))


@pytest.fixture
def results(tmp_path):
    d = tmp_path / "results"
    for nz in (2, 4):
        for bs in (True, False):
            _write_results(d, "mnist", nz, bs, seed=nz + bs)
    _write_results(d, "cifar10", 2, True, dims=3072, negative_layer=True)   # others missing
    return d


def _check_outputs(paths, out: Path, stem: str):
    assert {p.name for p in paths} == {f"{stem}.png", f"{stem}.pdf"}
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert 400 <= w <= 6000 and 300 <= h <= 6000
        arr = np.asarray(im.convert("L"))
        assert arr.std() > 5          # not a blank image


def test_cma_renders(results, tmp_path, capsys):
    import cma
    out = tmp_path / "plots"
    paths = cma.main(["--results", str(results), "--out", str(out),
                      "--dataset", "mnist", "cifar10", "--nz", "2", "4", "8"])
    _check_outputs(paths, out, "cma")
    captured = capsys.readouterr()
    assert "mnist      nz=2  bitswap" in captured.out        # the paper-style table
    assert "skipped" in captured.err and "cifar10_nz4_bitswap.npz" in captured.err


def test_stackplot_renders(results, tmp_path):
    import stackplot
    out = tmp_path / "plots"
    paths = stackplot.main(["--results", str(results), "--out", str(out), "--dataset",
                            "mnist", "cifar10", "--nz", "2", "4", "--scheme", "bitswap",
                            "bbans", "--name", "stack"])
    _check_outputs(paths, out, "stack")


def test_plots_single_file_and_no_smoothing(tmp_path):
    import cma
    import stackplot
    d = tmp_path / "r"
    _write_results(d, "kodak", 8, True, N=1, E=1, no_elbo=True)   # a run without -ELBO
    out = tmp_path / "o"
    _check_outputs(cma.main(["--results", str(d), "--out", str(out), "--dataset", "kodak",
                             "--nz", "8"]), out, "cma")
    _check_outputs(stackplot.main(["--results", str(d), "--out", str(out), "--dataset",
                                   "kodak", "--nz", "8", "--smooth", "1"]), out, "stackplot")


def test_no_results_is_a_clear_error(tmp_path):
    import cma
    import stackplot
    for mod in (cma, stackplot):
        with pytest.raises(SystemExit) as exc:
            mod.main(["--results", str(tmp_path / "nothing"), "--out", str(tmp_path)])
        assert "no result files" in str(exc.value)


def test_smooth_is_a_trailing_mean():
    from bitswap.plots import _smooth
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(_smooth(a, 2), [[1.0, 1.5, 2.5, 3.5]])
    np.testing.assert_allclose(_smooth(a, 1), a)


def test_mnist_per_28x28_rescales_rates_only(results, tmp_path, capsys):
    import cma
    from bitswap.plots import find_results, per_28x28
    found = find_results(results, ["mnist", "cifar10"], [2])
    scaled = per_28x28(found)
    m, a = found[("mnist", 2, "bitswap")]
    ms, s_ = scaled[("mnist", 2, "bitswap")]
    for name in ("net", "elbo", "total", "layer_bits"):
        np.testing.assert_allclose(s_[name], a[name] * 1024 / 784)
    np.testing.assert_array_equal(s_["initial_bits"], a["initial_bits"])
    assert ms["dims"] == 784 and m["dims"] == 1024
    np.testing.assert_array_equal(scaled[("cifar10", 2, "bitswap")][1]["net"],
                                  found[("cifar10", 2, "bitswap")][1]["net"])
    out = tmp_path / "p"
    _check_outputs(cma.main(["--results", str(results), "--out", str(out), "--dataset",
                             "mnist", "--nz", "2", "--mnist-per-28x28"]), out, "cma")


def test_stream_figure_moving_average(tmp_path):
    """cma.py --stream: the BB-ANS paper's Figure 3 from single-stream results."""
    import cma
    from bitswap.plots import moving_average
    assert moving_average(np.arange(5.0), 2).tolist() == [0.5, 1.5, 2.5, 3.5]
    with pytest.raises(ValueError):
        moving_average(np.arange(3.0), 4)
    src = tmp_path / "src"
    _write_results(src, "mnist", 1, False, E=1, N=300, dims=784)
    stream = src / result_name("mnist", 1, False)
    paths = cma.main(["--stream", str(stream), str(stream), "--window", "50", "--out", str(tmp_path / "out")])
    assert [p.name for p in paths] == ["bbans_stream.png", "bbans_stream.pdf"]
    with Image.open(paths[0]) as im:
        assert im.size[0] > 2 * im.size[1]          # two panels side by side
    multi = tmp_path / "multi"
    _write_results(multi, "mnist", 1, False, E=2, N=300, dims=784)
    with pytest.raises(SystemExit, match="not one stream"):
        cma.main(["--stream", str(multi / result_name("mnist", 1, False)), "--window", "50",
                  "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        cma.main(["--stream", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "out")])
