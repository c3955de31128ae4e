"""Synthetic call audio for tests: espeak-ng speaks, sox converts.

Independent of callshield's own codecs on purpose: sox writes the mu-law and
A-law files, so our decoder is checked against somebody else's encoder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Turn:
    """One turn of a synthetic call: who speaks what, after how much silence (s)."""

    speaker: str  # "customer" or "partner"
    text: str
    pause_before: float = 0.6


def require_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"tests need {', '.join(missing)} (apt-get install espeak-ng sox); .ci/run installs them")


def speak(text: str, *, lang: str = "ko", rate: int = 16000, speed: int = 150, pitch: int | None = None,
          effects: tuple[str, ...] = ()) -> np.ndarray:
    """Mono int16 samples of ``text`` spoken by espeak-ng at ``rate`` Hz. ``lang`` may name a
    variant (``ko+f3``); ``speed`` in words a minute, ``pitch`` 0-99 (espeak-ng's own 50 if None);
    ``effects``: sox effects applied after the conversion (``("reverb", "20")``)."""
    require_tools()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        out = Path(tmp) / "out.wav"
        voice = ["-p", str(pitch)] if pitch is not None else []
        subprocess.run(["espeak-ng", "-v", lang, "-s", str(speed), *voice, "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(out), *effects],
                       check=True, capture_output=True)
        return read_pcm16(out)


def read_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels()) if w.getnchannels() > 1 else data


def write_pcm16(path: Path, samples: np.ndarray, rate: int) -> Path:
    samples = np.asarray(samples, dtype="<i2")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def call_samples(turns: list[Turn], *, lang: str = "ko", rate: int = 16000, tail: float = 0.8) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A stereo call (left = customer, right = partner) and each turn's (speaker, start s, end s)."""
    pieces: list[tuple[str, np.ndarray]] = []
    spans: list[tuple[str, float, float]] = []
    t = 0
    for turn in turns:
        t += int(turn.pause_before * rate)
        voice = speak(turn.text, lang=lang, rate=rate)
        pieces.append((turn.speaker, t, voice))
        spans.append((turn.speaker, t / rate, (t + len(voice)) / rate))
        t += len(voice)
    total = t + int(tail * rate)
    stereo = np.zeros((total, 2), dtype=np.int16)
    for speaker, start, voice in pieces:
        stereo[start:start + len(voice), 0 if speaker == "customer" else 1] = voice
    return stereo, spans


def write_call(path: Path, turns: list[Turn], *, lang: str = "ko", rate: int = 16000, encoding: str = "pcm16") -> list[tuple[str, float, float]]:
    """Write a stereo call WAV. ``encoding``: ``pcm16``, ``mu-law`` or ``a-law`` (the last two by sox)."""
    stereo, spans = call_samples(turns, lang=lang, rate=rate)
    if encoding == "pcm16":
        write_pcm16(path, stereo, rate)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            pcm = write_pcm16(Path(tmp) / "pcm.wav", stereo, rate)
            subprocess.run(["sox", str(pcm), "-e", encoding, "-b", "8", str(path)], check=True, capture_output=True)
    return spans


KOREAN_CALL = [
    Turn("partner", "안녕하세요 고객센터입니다 무엇을 도와드릴까요", 0.5),
    Turn("customer", "환불을 받고 싶어요 지난달 요금이 너무 많이 나왔어요", 0.8),
    Turn("partner", "네 확인해 드리겠습니다 잠시만 기다려 주세요", 0.8),
    Turn("customer", "빨리 좀 해 주세요 오늘 안에 처리해 주세요", 0.8),
]


WARM_UP = [  # another call's lines (none of KOREAN_CALL's sentences): what an agent's recognizers heard before a measured call
    Turn("partner", "감사합니다 상담원 김민지입니다 어떤 점이 궁금하신가요", 0.5),
    Turn("customer", "주문한 물건이 아직 도착하지 않았어요", 0.8),
    Turn("partner", "주문 번호를 말씀해 주시면 배송 상황을 조회해 드릴게요", 0.8),
    Turn("customer", "카드 결제가 두 번 된 것 같아서 전화했습니다", 0.8),
    Turn("partner", "본인 확인을 위해 생년월일을 말씀해 주세요", 0.8),
    Turn("customer", "비밀번호를 잊어버려서 로그인이 안 돼요", 0.8),
    Turn("partner", "담당 부서에 전달해 드리고 내일까지 연락드리겠습니다", 0.8),
    Turn("customer", "주소를 바꾸고 싶은데 어떻게 하면 되나요", 0.8),
    Turn("partner", "문자로 안내해 드렸습니다 좋은 하루 보내세요", 0.8),
    Turn("customer", "인터넷이 자꾸 끊겨서 기사님 방문을 요청합니다", 0.8),
]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Characters edited (substituted, inserted, deleted) per character of
    ``reference``, spaces ignored (Korean word spacing varies; the letters are what counts)."""
    ref = "".join(reference.split())
    hyp = "".join(hypothesis.split())
    if not ref:
        return float(bool(hyp))
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)
