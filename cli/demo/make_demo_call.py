"""Regenerate the demo call: ``call.wav`` (what was said) and ``call.jsonl`` (when).

    python cli/demo/make_demo_call.py            # needs espeak-ng and sox

The call is fiction, written to show the ladder: a customer angry at a bill
(anger at the company: no alert), then an insult aimed at the partner
(a caution on the partner's screen, about 11 s in), then a threat
(supervisors alerted, about 16 s in), then half a minute more of call, so a
supervisor has time to read the alert, type a reason and authorize ending
the call while it is still going on (tests/test_demo.py holds it to that).
Two espeak-ng English voices, customer on the left channel, partner on the
right, 8 kHz G.711 mu-law like a phone line (small enough to ship: under 1 MB).

``call.jsonl`` is the call's timed transcript in the shape ``callshield
transcribe`` writes (speaker, start, end, text in recognizer style; word
times spread evenly over each turn, as espeak-ng does not report them). The
demo replays it when no English speech model is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RATE = 8000

VOICES = {"customer": ("en-us+m3", 165), "partner": ("en-gb+f3", 170)}

# (speaker, pause before in seconds, what is said). Recognizer style: lowercase, no punctuation.
TURNS = [
    ("partner", 0.3, "thank you for calling my name is sam how can i help you"),
    ("customer", 0.4, "my bill this month is twice what it should be and i am really angry about it"),
    ("partner", 0.4, "i am sorry to hear that let me look at your account"),
    ("customer", 0.4, "shut up you stupid idiot"),
    ("partner", 0.4, "please i am trying to help you"),
    ("customer", 0.4, "i know where you live and you will regret this"),
    # after the alert the call goes on, so a supervisor has time to read it and authorize ending the call
    ("partner", 0.8, "sir i can not go on with this call if you threaten me"),
    ("customer", 0.6, "your company is a joke this is the third time i call about this bill"),
    ("partner", 0.6, "i can see the extra charge i will open a review for you"),
    ("customer", 0.6, "i do not want a review i want the charge gone today"),
    ("partner", 0.6, "the review takes two days and you will get an email with the answer"),
    ("customer", 0.6, "two days is ridiculous i pay you every single month"),
    ("partner", 0.6, "i understand is there anything else i can help you with today"),
    ("customer", 0.6, "no just fix my bill"),
    ("partner", 0.6, "thank you for calling goodbye"),
]


def speak(text: str, voice: str, speed: int, tmp: Path) -> np.ndarray:
    raw, out = tmp / "raw.wav", tmp / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(out)], check=True, capture_output=True)
    with wave.open(str(out), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    voiced = np.flatnonzero(np.abs(samples) > 200)  # trim espeak's leading and trailing silence
    return samples[voiced[0]: voiced[-1] + 1] if len(voiced) else samples


def main() -> int:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"make_demo_call: needs {', '.join(missing)} (apt-get install espeak-ng sox)", file=sys.stderr)
        return 2
    pieces, lines, t = [], [], 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for speaker, pause, text in TURNS:
            t += int(pause * RATE)
            voice, speed = VOICES[speaker]
            samples = speak(text, voice, speed, tmp)
            pieces.append((speaker, t, samples))
            start, end = t / RATE, (t + len(samples)) / RATE
            words = text.split()
            step = (end - start) / len(words)
            lines.append({
                "speaker": speaker, "start": round(start, 3), "end": round(end, 3), "text": text,
                "words": [{"word": w, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3), "conf": 1.0}
                          for i, w in enumerate(words)],
            })
            t += len(samples)
        total = t + int(0.5 * RATE)
        stereo = np.zeros((total, 2), dtype="<i2")
        for speaker, start, samples in pieces:
            stereo[start:start + len(samples), 0 if speaker == "customer" else 1] = samples
        pcm = tmp / "pcm.wav"
        with wave.open(str(pcm), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(stereo.tobytes())
        subprocess.run(["sox", str(pcm), "-e", "mu-law", "-b", "8", str(HERE / "call.wav")], check=True, capture_output=True)
    (HERE / "call.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    size = (HERE / "call.wav").stat().st_size
    print(f"wrote {HERE / 'call.wav'} ({total / RATE:.1f} s, {size // 1024} KB) and {HERE / 'call.jsonl'} ({len(lines)} turns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
