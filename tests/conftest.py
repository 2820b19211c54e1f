"""Shared test fixtures: where the read-only datasets live when they are available."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """../shared/data beside the checkout (how CI runs), or $BITSWAP_TEST_DATA."""
    env = os.environ.get("BITSWAP_TEST_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data",
                                                     ROOT.parents[1] / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared datasets not available (../shared/data)")
    return path


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (small models; reproducible timings and results)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
