"""Tuning the encoder (``bench/semantic_tuning.py``, torch, training time only):
its torch twin computes what the numpy encoder computes, and what it learns,
exported as an adapter and merged by ``SentenceEncoder.adapted``, is what the
detector then runs."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ImportError:  # pragma: no cover - .ci/run installs it
    raise AssertionError("the training tools' tests need torch: .venv/bin/pip install torch==2.13.0 (.ci/run does)") from None
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import semantic_tuning  # noqa: E402

TEXTS = ["you'd better watch your back when you leave work", "i know which branch you work at and when you finish",
         "i'll be waiting for you in the car park tonight", "keep talking and see what happens to you",
         "thanks that sorted out my bill", "can you send me the form again please",
         "the parcel arrived this morning in one piece", "i'd like to change my address on the account"]
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])


def test_the_twin_computes_the_encoders_embeddings(encoder):
    twin = semantic_tuning.Twin(encoder)
    tokens, mask = twin.tokens(TEXTS)
    with torch.no_grad():
        for start in (0, 3, 6):
            got = twin.upper(twin.lower(tokens, mask, start), mask, start).numpy()
            np.testing.assert_allclose(got, encoder.embed_many(TEXTS), atol=2e-5)


def _loss(encoder, weights, bias) -> float:
    logits = encoder.embed_many(TEXTS) @ weights.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(LABELS)), LABELS].mean())


def test_what_tuning_learns_is_what_the_merged_encoder_runs(encoder):
    weights, bias = np.zeros((2, encoder.dimensions), np.float32), np.zeros(2, np.float32)
    run = lambda: semantic_tuning.tune(encoder, TEXTS, LABELS, np.ones(2), weights, bias, 1e-4, layers=2, epochs=40)  # noqa: E731
    adapter, tuned_weights, tuned_bias = run()
    assert {int(name.split(".")[1]) for name in adapter} == {4, 5}
    assert {name.split(".", 2)[2] for name in adapter if name.startswith("layer.5.")} >= {
        "qkv.a", "qkv.b", "attention_out.a", "up.b", "down.a", "qkv_bias", "output_norm.weight", "attention_norm.bias"}
    tuned = encoder.adapted(adapter)
    assert _loss(tuned, tuned_weights, tuned_bias) < 0.9 * _loss(encoder, weights, bias), "it learned, and the export carries it"
    twin = semantic_tuning.Twin(tuned)
    tokens, mask = twin.tokens(TEXTS)
    with torch.no_grad():
        np.testing.assert_allclose(twin.upper(twin.lower(tokens, mask, 0), mask, 0).numpy(), tuned.embed_many(TEXTS), atol=2e-5)
    again, _, _ = run()
    assert all(np.array_equal(adapter[name], again[name]) for name in adapter), "training is deterministic"


def test_a_seed_is_one_draw_of_the_tuning_and_the_same_seed_draws_it_again(encoder):
    """``bench/train_semantic.py --seed``: another seed is another training of the same data
    (round 11 of issue 11 judges a change of data by several), the same seed the same training."""
    weights, bias = np.zeros((2, encoder.dimensions), np.float32), np.zeros(2, np.float32)
    run = lambda seed: semantic_tuning.tune(encoder, TEXTS, LABELS, np.ones(2), weights, bias, 1e-4,  # noqa: E731
                                           layers=1, epochs=2, seed=seed)
    one, other, again = run(1), run(2), run(1)
    assert all(np.array_equal(one[0][name], again[0][name]) for name in one[0])
    assert any(not np.array_equal(one[0][name], other[0][name]) for name in one[0])


def test_a_tuned_models_header_names_the_seed_a_plain_training_draws():
    """``bench/train_semantic.py`` without ``--seed`` draws ``semantic_tuning.SEED`` and
    writes it into the model's header; with ``--seed N`` it writes N."""
    import train_semantic

    assert train_semantic.tuning_seed(None) == semantic_tuning.SEED
    assert train_semantic.tuning_seed(5) == 5
    w, b = np.zeros((len(train_semantic.CLASSES), 4), np.float32), np.zeros(len(train_semantic.CLASSES), np.float32)
    text = train_semantic.render("enc", "0" * 64, np.zeros(8), w, b, Counter(training=1), Counter(none=1),
                                 seed=train_semantic.tuning_seed(None))
    assert f"# Tuned with seed {semantic_tuning.SEED} (bench/train_semantic.py --seed)." in text.splitlines()


def test_the_shipped_stage_was_tuned_with_the_seed_a_plain_training_draws():
    """``--check`` without ``--seed`` retrains with ``semantic_tuning.SEED``: it must be the seed
    the shipped stage's header names, or ``--check`` compares the stage with another draw of the
    tuning; and every written batch the stage learnt from is shipped beside it, with its lines."""
    import train_semantic
    from detection.semantic import MODEL_FILE, TRAINING_FILES, model_dir

    header = (model_dir("en") / MODEL_FILE).read_text(encoding="utf-8").splitlines()
    assert [line for line in header if line.startswith("# Tuned with seed ")] == [
        f"# Tuned with seed {semantic_tuning.SEED} (bench/train_semantic.py --seed)."]
    trained_on = next(line for line in header if line.startswith("# Trained on: "))
    for name in TRAINING_FILES:
        source = Path(name).stem
        n = sum(label in train_semantic.CLASSES for label, _, _ in train_semantic.rows_from(model_dir("en") / name, source))
        assert f" {source} {n}," in trained_on or f" {source} {n}." in trained_on, (name, n, trained_on)
