"""Replay the coverage-guided fuzzer's corpus (tests/fuzz_corpus) through its harness, without atheris.

The corpus is what ``benchmarks/fuzz_atheris.py`` found to reach new code of the version 4
reader (minimised with libFuzzer's ``-merge=1``); each input must end in success or in a
:class:`bitswap.errors.Error`, never in another exception.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fuzz_corpus"


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_atheris", ROOT / "benchmarks" / "fuzz_atheris.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def harness():
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    mod = _harness()
    yield mod, mod.load_models()
    torch.set_num_threads(n)


def test_the_corpus_ends_in_success_or_a_bitswap_error(harness):
    mod, models = harness
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    assert len(files) >= 20, "the committed corpus is missing"
    outcomes = {}
    for path in files:
        outcome = mod.run_one(path.read_bytes(), models)      # anything but bitswap.errors.Error raises
        assert outcome == "decoded" or outcome.startswith("error: ") or outcome == "empty", (path.name, outcome)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # the corpus reaches the decoder: some inputs decode, others end in several kinds of error
    assert outcomes.get("decoded", 0) > 0 and len(outcomes) >= 3, outcomes


def test_crc_repair_lets_a_mutation_through_to_the_decoder(harness):
    """The harness's repair mode: a flipped payload byte of a valid file gets past both CRCs and
    is refused by the decoder (pixel checksum or ANS state), not by the container's CRC."""
    mod, models = harness
    seed = next(p for p in sorted(CORPUS.iterdir()) if p.name.startswith("seed-grey-crc"))
    data = bytearray(seed.read_bytes())
    assert mod.run_one(bytes(data), models) == "decoded"
    data[-40] ^= 0x10                                           # inside the ANS message's tail words
    raw = mod.run_one(bytes([0]) + bytes(data[1:]), models)
    repaired = mod.run_one(bytes(data), models)
    assert raw == "error: FormatError"                          # caught by the file's CRC
    assert repaired in ("error: ChecksumError", "error: FormatError", "decoded"), repaired
    assert mod.fix_crcs(bytes(data[1:])) != bytes(data[1:])


# What the fuzzers found: each file (tests/fuzz_findings, both CRCs valid) once ended in another
# exception than a bitswap.errors.Error. (file, the error it must end in when decoded with the
# fuzz model as a CodingModel, words of its message); through bitswap.decode, given the model's
# exported file, it must end in some bitswap.errors.Error.
FINDINGS = [
    # a header whose quantbits (1) and precision (9) agree with each other but not with the
    # 10-bit latent bins of the coding model its digest names: ValueError from the codec
    ("quantbits-unlike-the-models.bsw", "FormatError", "1-bit uniform latent bins"),
]


@pytest.mark.parametrize("name,error,words", FINDINGS)
def test_fuzz_findings_end_in_a_clear_error(harness, name, error, words):
    import bitswap
    from bitswap import images
    from bitswap.container import Container
    mod, models = harness
    data = (ROOT / "tests" / "fuzz_findings" / name).read_bytes()
    assert mod.run_one(bytes([0]) + data, models) == f"error: {error}"
    c = Container.from_bytes(data)
    model = models.get(c.header.model_hash.hex()) or next(iter(models.values()))
    with pytest.raises(getattr(bitswap.errors, error), match=words):
        images.decompress(c, model, limits=images.Limits(0.05, 0.1, 96))
    with pytest.raises(bitswap.errors.Error):
        bitswap.decode(data, model=mod._bundle_for(data, models))
