"""The exact path end to end: the integer network over the shipped integer bins, coded by the
unchanged coder with the integer-table codecs, decodes the images identically (both schemes),
and the stream does not depend on how the decoder groups the images."""

from __future__ import annotations

import numpy as np
import pytest

from bitswap import zoo
from bitswap.data import PACKAGED_MNIST, load_dataset
from bitswap.coders import Coder
from bitswap.latent_models import ResNetHierarchy


@pytest.fixture(scope="module")
def mnist_test():
    return load_dataset("mnist", "test", PACKAGED_MNIST.parent, download=False)[:8]


@pytest.fixture(scope="module")
def hierarchy():
    return ResNetHierarchy(zoo.exact_network("mnist-nz8"), zoo.shipped_bins("mnist-nz8"))


@pytest.mark.slow
@pytest.mark.parametrize("bitswap", [True, False])
def test_exact_round_trip(hierarchy, bitswap, mnist_test):
    x = mnist_test[:3]
    coder = Coder(hierarchy, bitswap=bitswap, lanes=4)
    msg = coder.new_message(seed=3)
    stats = coder.encode(msg, x)
    assert np.all(stats.net_bits > 0)
    y, back = coder.decode(msg, len(x))
    assert np.array_equal(x, y)
    assert np.array_equal(back.layer_bits, stats.layer_bits)
    msg.check_initial()


@pytest.mark.slow
def test_exact_parameters_independent_of_batching(hierarchy, mnist_test):
    """An image's parameters are the same integers alone, in a batch of two or of five (the
    float network needed a batch-of-one special case and still differs between batch sizes)."""
    x = mnist_test[:5].reshape(5, -1).astype(np.int64)
    whole = hierarchy.posterior(0, x)
    for parts in ([slice(0, 1), slice(1, 3), slice(3, 5)], [slice(k, k + 1) for k in range(5)]):
        mu = np.concatenate([hierarchy.posterior(0, x[p]).mu for p in parts])
        scale = np.concatenate([hierarchy.posterior(0, x[p]).scale for p in parts])
        assert np.array_equal(mu, whole.mu) and np.array_equal(scale, whole.scale)
    z = np.random.default_rng(0).integers(0, 4, size=(5, hierarchy.z_dims))
    whole = hierarchy.likelihood(0, z)
    single = [hierarchy.likelihood(0, z[k:k + 1]) for k in range(5)]
    assert np.array_equal(np.concatenate([d.mu for d in single]), whole.mu)


def test_exact_hierarchy_checks_the_bins(hierarchy):
    with pytest.raises(ValueError, match="nz"):
        ResNetHierarchy(hierarchy.model, zoo.shipped_bins("mnist-nz2"))
