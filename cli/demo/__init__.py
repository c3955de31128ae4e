"""The bundled demo call (``callshield serve --demo``).

``call.wav``: a fictional English call, customer left, partner right, 8 kHz
mu-law, made by ``make_demo_call.py`` with espeak-ng; ``call.jsonl``: the same
call's timed transcript, replayed when no English speech model is installed.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
CALL_WAV = DEMO_DIR / "call.wav"
CALL_TRANSCRIPT = DEMO_DIR / "call.jsonl"
LANGUAGE = "en"
