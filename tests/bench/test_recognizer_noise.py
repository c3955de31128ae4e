"""Recognition errors made on purpose (bench/recognizer_noise.py): seeded, at
the rate asked for, and made of words that sound alike."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from recognizer_noise import Noise, _SOUNDS  # noqa: E402

TEXTS = [f"i want to speak to the manager about the bill for march number {n}" for n in range(200)]
VOCABULARY = frozenset("i want to speak the manager about bill for march number kill fill mill built peak speech".split())


def test_no_errors_at_rate_zero_and_the_same_errors_every_run():
    assert Noise(0.0, VOCABULARY).apply(TEXTS[0]) == TEXTS[0]
    assert [Noise(0.1, VOCABULARY, seed=3).apply(t) for t in TEXTS] == [Noise(0.1, VOCABULARY, seed=3).apply(t) for t in TEXTS]
    assert [Noise(0.1, VOCABULARY, seed=3).apply(t) for t in TEXTS] != [Noise(0.1, VOCABULARY, seed=4).apply(t) for t in TEXTS]


def test_about_the_rate_of_words_change():
    words = sum(len(t.split()) for t in TEXTS)
    for rate in (0.05, 0.10):
        noise = Noise(rate, VOCABULARY, seed=1)
        changed = 0
        for text in TEXTS:
            out = noise.apply(text).split()
            original = text.split()
            changed += len(original) - len(out) + sum(1 for w in out if w not in original)
        assert 0.5 * rate * words <= changed <= 1.6 * rate * words, (rate, changed, words)


def test_replacements_sound_alike_and_come_from_the_vocabulary():
    assert "fill" in _SOUNDS.alike("kill") and "bill" in _SOUNDS.alike("kill")
    noise = Noise(0.5, VOCABULARY, seed=2)
    replaced = 0
    for text in TEXTS[:50]:
        out = noise.apply(text).split()
        assert set(out) <= VOCABULARY | set(text.split())
        replaced += sum(1 for word in out if word not in text.split())
    assert replaced > 0, "half of the errors replace a word with one that sounds alike"
