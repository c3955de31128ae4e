"""Transcribe a call recording to timed utterances, one per line.

  callshield transcribe CALL.wav [--model M] [--json]

Text lines look like ``[00:03.20-00:05.10] customer: ...``; with --json each
line is one object: {"speaker", "start", "end", "text", "words": [{"word",
"start", "end", "conf"}]}. Times are seconds from the start of the call.
Stereo files: left channel = customer, right = partner (--channels to change).
Progress and notes go to standard error; standard output holds only results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("wav", metavar="CALL.wav", help="the recording (16-bit PCM, mu-law or A-law WAV; mono or stereo)")
    parser.add_argument("--model", help="model directory or installed model name (default: $CALLSHIELD_MODEL, [models] model, the one installed)")
    parser.add_argument("--models-dir", metavar="DIR", help="models directory to look in")
    parser.add_argument("--json", action="store_true", help="one JSON object per utterance")
    parser.add_argument("--channels", metavar="A,B",
                        help="speaker of each channel in order, 'none' to ignore one (default: [audio] channels, else customer,partner)")


def format_time(seconds: float) -> str:
    """``mm:ss.cc`` (minutes keep counting past an hour)."""
    centis = max(0, round(seconds * 100))
    minutes, centis = divmod(centis, 6000)
    return f"{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}"


def format_line(utterance) -> str:
    return f"[{format_time(utterance.start)}-{format_time(utterance.end)}] {utterance.speaker}: {utterance.text}"


def _channel_map(text: str) -> tuple:
    from models.errors import ModelError

    names = [part.strip().lower() for part in text.split(",")]
    mapped = tuple(None if name in ("none", "-", "") else name for name in names)
    for name in mapped:
        if name not in (None, "customer", "partner"):
            raise ModelError(f"--channels: {name!r} is not customer, partner or none", code="bad_arguments")
    return mapped


def transcribe_file(path: Path, model, config=None, *, vad=None, channel_map: tuple = ("customer", "partner")) -> list:
    """Every final utterance of a recorded call (a ``models.transcriber.SharedModel``
    loaded), sorted by start: the WAV read in 100 ms chunks, each speaker's
    audio gated by voice activity (``vad``: an ``audio.vad.VadConfig``, default
    settings when None) and decoded in parallel (blocking).

    Raises ``audio.errors.WavError`` for a missing or unreadable file.
    """
    from functools import partial

    from audio.vad import Segmenter, VadConfig
    from audio.wav import WavSource
    from models.transcriber import TranscriberConfig, transcribe_chunks

    # 100 ms chunks: the segmenter works in its own frames whatever the chunk size, and an hour-long
    # recording stays a few tens of thousands of chunk objects.
    source = WavSource(path, channel_map=channel_map, chunk_ms=100, realtime=False)
    gate = partial(Segmenter, config=vad or VadConfig())
    return transcribe_chunks(list(source.chunks()), model, source.sample_rate, source.speakers, config or TranscriberConfig(),
                             gate=gate)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; audio.wav, models.transcriber (vosk, numpy) about 360 ms (python -X importtime)
    from kernel.config import default_data_dir, load_config
    from audio.wav import read_info
    from models.lookup import ModelsConfig, resolve_model
    from audio.config import AudioConfig
    from models.transcriber import SharedModel, TranscriberConfig

    config_file = load_config(args.config)
    audio = AudioConfig.from_section(config_file.section("audio"))
    channel_map = _channel_map(args.channels) if args.channels else audio.channel_map
    info = read_info(args.wav)  # a bad file fails before seconds go into loading a model
    base = config_file.path.parent if config_file.path else None
    config = ModelsConfig.from_section(config_file.section("models"), base=base)
    resolved = resolve_model(args.model, config, data_dir=default_data_dir(), models_dir_option=args.models_dir)

    note = " (data chunk cut short: transcribing what is there)" if info.truncated else ""
    print(f"transcribing {info.path.name}: {info.duration:.1f} s, {info.sample_rate} Hz {info.encoding}, "
          f"{info.channels} channel(s){note}", file=sys.stderr)
    print(f"loading model {resolved.name} ({resolved.source}: {resolved.path})", file=sys.stderr)
    # The site's speed profile (the words the agent would hear); finals only: nothing here shows partials.
    model = SharedModel.load_blocking(resolved.path, resolved.name, speed=config.decoding.speed)
    utterances = transcribe_file(info.path, model, TranscriberConfig(partials=False), vad=audio.vad, channel_map=channel_map)
    for utterance in utterances:
        if args.json:
            print(json.dumps(utterance.to_dict(), ensure_ascii=False))
        else:
            print(format_line(utterance))
    print(f"{len(utterances)} utterance(s)", file=sys.stderr)
    return 0
