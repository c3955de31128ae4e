"""Decoding plans, the partial-request rule, speed-profile overlays and the deferred partner, without Vosk.

The real engine runs the same code in test_models_decoding_engine.py; here a
scripted recognizer (test_models_transcriber_unit.py's) makes exact
assertions possible.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import pytest

from models.decoding import DecodingPlan, PartialPacer, overlaid_conf, overlay_model, speed_profiles
from models.errors import ModelError
from models.lookup import ModelsConfig
from models.transcriber import CallTranscriber, DeferredTranscriber, TranscriberConfig, idle_executor, recognizer_executor
from models.transcript import Partial, Utterance
from test_models_transcriber_unit import RATE, ScriptedModel, ScriptedRecognizer, chunk

# ---------------------------------------------------------------- the plan in config


def test_the_default_plan_serves_the_customer_live_and_the_partner_behind():
    plan = ModelsConfig.from_section({}).decoding
    assert plan == DecodingPlan()
    assert (plan.partner, plan.speed) == ("idle", "balanced") and plan.partner_deferred
    customer, partner = (TranscriberConfig.for_speaker(plan, s) for s in ("customer", "partner"))
    assert customer.partials and not partner.partials
    assert customer.words and partner.words, "word times feed findings' spans and QA"
    assert not customer.partial_words and customer.max_alternatives == 0, "unused Vosk options stay off"


def test_a_plan_is_read_from_models_decoding():
    config = ModelsConfig.from_section({"model": "ko", "decoding": {"partner": "finals", "speed": "fast",
                                                                    "partial_interval_ms": 250, "partial_max_interval_ms": 1000,
                                                                    "partner_backlog_s": 30}})
    assert config.model == "ko"
    assert config.decoding == DecodingPlan(partner="finals", speed="fast", partial_interval_ms=250, partial_max_interval_ms=1000,
                                           partner_backlog_s=30.0)
    assert not config.decoding.partner_deferred
    assert config.decoding.warm_recognizers == 16
    assert ModelsConfig.from_section({"decoding": {"warm_recognizers": 0}}).decoding.warm_recognizers == 0
    live = ModelsConfig.from_section({"decoding": {"partner": "live"}}).decoding
    assert TranscriberConfig.for_speaker(live, "partner").partials


@pytest.mark.parametrize("table, words", [
    ({"partner": "sometimes"}, "partner must be one of idle, after, finals, live, off"),
    ({"speed": "ludicrous"}, "speed must be one of model, fast, balanced, accurate"),
    ({"partial_interval_ms": 20}, "50 <= partial_interval_ms"),
    ({"partial_interval_ms": 900, "partial_max_interval_ms": 600}, "partial_interval_ms <= partial_max_interval_ms"),
    ({"partner_backlog_s": 0}, "partner_backlog_s must be 1 to 3600"),
    ({"beam": 9}, "unknown key(s) beam"),
    ({"warm_recognizers": -1}, "warm_recognizers must be a whole number 0 to 10000"),
    ({"warm_recognizers": 2.5}, "warm_recognizers must be a whole number"),
])
def test_a_bad_plan_is_a_one_line_config_error(table, words):
    with pytest.raises(ModelError) as err:
        ModelsConfig.from_section({"decoding": table})
    assert err.value.code == "bad_config" and words in err.value.message and "[models.decoding]" in err.value.message


def test_every_speed_profile_sets_the_three_decoder_options():
    profiles = speed_profiles()
    assert set(profiles) == {"fast", "balanced", "accurate"}
    for options in profiles.values():
        assert set(options) == {"beam", "max-active", "lattice-beam"}
    assert profiles["fast"]["beam"] < profiles["balanced"]["beam"] < profiles["accurate"]["beam"]
    assert profiles["fast"]["max-active"] < profiles["balanced"]["max-active"] < profiles["accurate"]["max-active"]


# ---------------------------------------------------------------- when a partial is asked for


def test_a_partial_is_due_only_after_new_voiced_audio_and_the_interval():
    pacer = PartialPacer(RATE, 300, 1200)
    step = RATE * 300 // 1000
    pacer.start(0)
    assert not pacer.due(0), "nothing fed yet"
    assert not pacer.due(step - 1)
    assert pacer.due(step)
    pacer.heard(step, changed=True)
    assert not pacer.due(step), "never twice for the same audio"
    assert pacer.due(2 * step)


def test_an_unchanged_hypothesis_backs_off_to_the_longest_interval_and_a_change_or_new_utterance_resets_it():
    pacer = PartialPacer(RATE, 300, 1200)
    ms = RATE // 1000
    pacer.start(0)
    at = 0
    intervals = []
    for _ in range(5):
        due_at = next(i for i in range(at + 1, at + 10 * 1200 * ms) if pacer.due(i))
        intervals.append((due_at - at) // ms)
        at = due_at
        pacer.heard(at, changed=False)
    assert intervals == [300, 600, 1200, 1200, 1200]
    pacer.heard(at, changed=True)
    assert not pacer.due(at + 299 * ms) and pacer.due(at + 300 * ms)
    pacer.heard(at + 300 * ms, changed=False)
    pacer.start(at + 10_000 * ms)
    assert pacer.due(at + 10_300 * ms), "a new utterance starts at the shortest interval"


def test_a_finals_only_stream_never_asks_for_a_partial():
    model = ScriptedModel()
    from models.transcriber import SpeakerTranscriber

    t = SpeakerTranscriber(model, "partner", RATE, None, TranscriberConfig(partials=False), gate=None)
    results = [r for i in range(150) for r in t.push_blocking(chunk(i * 0.02, 0.02, speaker="partner"))] + t.flush_blocking()
    assert model.made[0].partial_calls == 0
    assert not any(isinstance(r, Partial) for r in results)
    assert [type(r) for r in results] == [Utterance]


def test_unused_vosk_options_are_not_asked_for():
    model = ScriptedModel()
    from models.transcriber import SpeakerTranscriber

    t = SpeakerTranscriber(model, "customer", RATE, None, TranscriberConfig(), gate=None)
    t.push_blocking(chunk(0, 0.02))
    assert model.made[0].options == {"words": True, "partial_words": False, "max_alternatives": 0}


# ---------------------------------------------------------------- the speed-profile overlay


def _fake_model(root):
    model = root / "vosk-model-test"
    for folder in ("am", "conf", "graph", "ivector"):
        (model / folder).mkdir(parents=True)
    (model / "am" / "final.mdl").write_bytes(b"acoustic model")
    (model / "graph" / "HCLr.fst").write_bytes(b"graph" * 100)
    (model / "conf" / "mfcc.conf").write_text("--use-energy=false\n")
    (model / "conf" / "model.conf").write_text("--min-active=200\n--max-active=3000\n--beam=10.0\n--lattice-beam=2.0\n"
                                               "--endpoint.rule2.min-trailing-silence=0.5\n")
    (model / "README").write_text("a model\n")
    return model


def _snapshot(folder):
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_the_overlay_rewrites_model_conf_and_links_everything_else(tmp_path):
    model = _fake_model(tmp_path)
    before = _snapshot(model)
    os.chmod(model / "conf" / "model.conf", 0o444)  # an installed model may be read-only: it is only read
    out = overlay_model(model, "fast", tmp_path / "overlay")
    fast = speed_profiles()["fast"]
    conf = (out / "conf" / "model.conf").read_text().splitlines()
    assert conf == ["--min-active=200", f"--max-active={fast['max-active']}", f"--beam={float(fast['beam'])!r}",
                    f"--lattice-beam={float(fast['lattice-beam'])!r}", "--endpoint.rule2.min-trailing-silence=0.5"]
    for name in ("am", "graph", "ivector", "README"):
        assert (out / name).is_symlink() and (out / name).resolve() == (model / name).resolve()
    assert (out / "conf").is_dir() and not (out / "conf").is_symlink()
    assert (out / "conf" / "mfcc.conf").is_symlink()
    assert not (out / "conf" / "model.conf").is_symlink()
    assert _snapshot(model) == before, "the installed model is untouched"


def test_an_option_the_model_conf_lacks_is_appended():
    assert overlaid_conf("--beam=10.0\n# a comment\n", {"beam": 8.5, "max-active": 2000}) == "--beam=8.5\n# a comment\n--max-active=2000\n"


def test_an_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ModelError) as err:
        overlay_model(_fake_model(tmp_path), "warp", tmp_path / "overlay")
    assert err.value.code == "bad_config"


# ---------------------------------------------------------------- the deferred partner


def _partner(call_s: float, speaker="partner"):
    return [chunk(i * 0.02, 0.02, speaker=speaker) for i in range(int(call_s / 0.02))]


def test_a_deferred_partner_is_decoded_in_the_idle_pool_and_finished_before_flush_returns():
    decoded_in: set[str] = set()

    class WhereRecognizer(ScriptedRecognizer):
        def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802 (Vosk's name)
            decoded_in.add(threading.current_thread().name.rsplit("_", 1)[0])
            return super().AcceptWaveform(data)

    model = ScriptedModel()
    model.recognizer = lambda rate, **options: WhereRecognizer(rate)

    async def main():
        with recognizer_executor(1) as live, idle_executor(1) as idle:
            call = CallTranscriber(model, RATE, live, gate=None, plan=DecodingPlan(), idle=idle)
            assert isinstance(call.speakers["partner"], DeferredTranscriber)
            early = []
            for piece in _partner(1.0):
                early += await call.push(piece)
            threads = await asyncio.get_running_loop().run_in_executor(idle, lambda: os.getpriority(os.PRIO_PROCESS, 0))
            return early, await call.flush(), threads, call

    early, final, nice, call = asyncio.run(main())
    assert nice == 19, "the idle pool's threads run at the lowest priority"
    assert decoded_in == {"vosk-idle"}, "the partner is decoded in the idle pool, never in the customer's"
    assert not any(isinstance(r, Partial) for r in early + final)
    utterances = [r for r in early + final if isinstance(r, Utterance)]
    assert [u.speaker for u in utterances] == ["partner"] and utterances[0].end == pytest.approx(1.0)
    assert call.stats.fed_samples == RATE and call.backlog_dropped_s == 0


def test_the_after_plan_decodes_nothing_until_the_end():
    model = ScriptedModel()

    async def main():
        with recognizer_executor(1) as live, idle_executor(1) as idle:
            call = CallTranscriber(model, RATE, live, gate=None, plan=DecodingPlan(partner="after"), idle=idle)
            for piece in _partner(1.0):
                await call.push(piece)
            await asyncio.sleep(0.05)
            fed_during = call.stats.fed_samples
            return fed_during, await call.flush(), call

    fed_during, final, call = asyncio.run(main())
    assert fed_during == 0
    assert [type(r) for r in final] == [Utterance] and call.stats.fed_samples == RATE


def test_an_overfull_backlog_drops_the_oldest_partner_speech_and_counts_it():
    model = ScriptedModel()

    async def main():
        with recognizer_executor(1) as live, idle_executor(1) as idle:
            call = CallTranscriber(model, RATE, live, gate=None, plan=DecodingPlan(partner="after", partner_backlog_s=1), idle=idle)
            for piece in _partner(3.0) + [chunk(0, 0.5, speaker="customer")]:
                await call.push(piece)
            return await call.flush(), call

    final, call = asyncio.run(main())
    assert call.backlog_dropped_s == pytest.approx(2.0)
    partner = [u for u in final if u.speaker == "partner"]
    assert partner and partner[0].start == pytest.approx(2.0), "the newest second is kept, at its own call time"
    assert call.speakers["customer"].stats.backlog_dropped_samples == 0, "the customer is never dropped"


def test_an_off_partner_is_not_transcribed():
    model = ScriptedModel()

    async def main():
        with recognizer_executor(1) as live:
            call = CallTranscriber(model, RATE, live, gate=None, plan=DecodingPlan(partner="off"))
            for piece in _partner(0.5) + _partner(0.5, speaker="customer"):
                await call.push(piece)
            return await call.flush()

    final = asyncio.run(main())
    assert {u.speaker for u in final} == {"customer"} and len(model.made) == 1


def test_results_finished_while_the_call_pushes_on_are_never_lost():
    """A push that comes while the worker is decoding takes what is ready then;
    what the worker finishes afterwards comes with a later push, never lost."""
    release = threading.Event()

    class HeldRecognizer(ScriptedRecognizer):
        def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802 (Vosk's name)
            release.wait(5)  # the decode is held until the test lets it go
            return super().AcceptWaveform(data)

    model = ScriptedModel()
    model.recognizer = lambda rate, **options: HeldRecognizer(rate)

    async def main():
        with idle_executor(1) as idle:
            t = DeferredTranscriber(model, "partner", RATE, idle, TranscriberConfig(partials=False, max_utterance_s=1.0),
                                    gate=None, backlog_s=60)
            pieces = _partner(2.0)
            out = []
            for piece in pieces[:50]:  # one second: one utterance, all in the worker's first batch
                out += await t.push(piece)
            await asyncio.sleep(0.05)  # the worker took the batch and waits in the held decode
            out += await t.push(pieces[50])  # a push while it decodes
            release.set()
            while t.stats.utterances < 1:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            for piece in pieces[51:]:
                out += await t.push(piece)
            return out + await t.flush()

    utterances = asyncio.run(main())
    assert [(u.start, u.end) for u in utterances] == [(0.0, 1.0), (1.0, 2.0)]


def test_a_source_that_can_wait_loses_none_of_the_partner_to_a_full_backlog():
    model = ScriptedModel()

    async def main():
        with recognizer_executor(1) as live, idle_executor(1) as idle:
            call = CallTranscriber(model, RATE, live, gate=None, plan=DecodingPlan(partner="after", partner_backlog_s=1), idle=idle,
                                   lossless=True)
            for piece in _partner(3.0):
                await call.push(piece)
            return await call.flush(), call

    final, call = asyncio.run(main())
    assert call.backlog_dropped_s == 0
    assert call.stats.fed_samples == 3 * RATE, "a recording replayed faster than real time keeps every word"
    assert [(u.start, u.end) for u in final] == [(0.0, 3.0)]
