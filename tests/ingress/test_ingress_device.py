"""Sound-device capture: the queueing alone (a fake PortAudio), then for real
through PortAudio's ALSA ``pulse`` device from a PulseAudio null sink."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from audio.device import DeviceCapture, DeviceConfig, DeviceError, list_devices
from speech import write_pcm16


# --------------------------------------------------------------------------- a fake PortAudio (isolates the queue)


class FakeStream:
    """Calls back from its own thread with numbered blocks, like PortAudio."""

    def __init__(self, *, device, channels, samplerate, dtype, blocksize, callback, blocks=40, gap_s=0.002):
        self.channels, self.blocksize, self.callback = channels, blocksize, callback
        self.blocks, self.gap_s = blocks, gap_s
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.closed = False

    def _run(self):
        for n in range(self.blocks):
            block = np.full((self.blocksize, self.channels), n, dtype=np.int16)
            block[:, -1] = -n
            status = type("Status", (), {"input_overflow": n == 5})()
            self.callback(block, self.blocksize, None, status)
            time.sleep(self.gap_s)

    def start(self):
        self.thread.start()

    def stop(self):
        self.thread.join()

    def close(self):
        self.closed = True


class FakeSd:
    def __init__(self, channels=2):
        self.channels = channels
        self.streams = []
        self.default = type("Default", (), {"device": [0, 1]})()

    def query_devices(self, device=None, kind=None):
        info = {"name": "Fake line-in", "index": 0, "hostapi": 0, "max_input_channels": self.channels,
                "max_output_channels": 0, "default_samplerate": 16000.0}
        if device is None and kind is None:
            return [info, dict(info, name="Fake speaker", index=1, max_input_channels=0, max_output_channels=2)]
        if device not in (None, 0, "Fake line-in"):
            raise ValueError(f"No input device matching {device!r}")
        return info

    def query_hostapis(self):
        return [{"name": "ALSA"}]

    def InputStream(self, **kw):
        stream = FakeStream(**kw)
        self.streams.append(stream)
        return stream


def test_stereo_blocks_split_into_speakers_on_one_time_line():
    async def main():
        sd = FakeSd()
        async with DeviceCapture(DeviceConfig(sample_rate=8000), sd=sd) as capture:
            got = []
            async for chunk in capture.chunks():
                got.append(chunk)
                if len(got) == 80:
                    capture.stop()
        return capture, got, sd

    capture, got, sd = asyncio.run(main())
    customer = [c for c in got if c.speaker == "customer"]
    partner = [c for c in got if c.speaker == "partner"]
    assert len(customer) == len(partner) == 40 and capture.dropped_blocks == 0 and capture.overflows == 1
    assert [c.start_sample for c in customer] == [160 * n for n in range(40)]
    assert all(int(c.samples[0]) == n for n, c in enumerate(customer)) and all(int(c.samples[0]) == -n for n, c in enumerate(partner))
    assert sd.streams[0].closed and capture.samples_captured == {"customer": 6400, "partner": 6400}


def test_a_slow_consumer_drops_the_oldest_blocks_counted_without_shifting_time():
    async def main():
        sd = FakeSd()
        async with DeviceCapture(DeviceConfig(sample_rate=8000, queue_blocks=5), sd=sd) as capture:
            await asyncio.sleep(0.5)  # the device runs on while nobody reads
            capture.stop()
            got = [chunk async for chunk in capture.chunks()]
        return capture, got

    capture, got = asyncio.run(main())
    assert capture.blocks == 40 and capture.dropped_blocks == 35
    assert [c.start_sample for c in got if c.speaker == "customer"] == [160 * n for n in range(35, 40)]  # the newest, at their true time


def test_two_devices_one_per_speaker():
    async def main():
        sd = FakeSd(channels=1)
        async with DeviceCapture(DeviceConfig(customer=0, partner="Fake line-in"), sd=sd) as capture:
            await asyncio.sleep(0.3)
            capture.stop()
            got = [chunk async for chunk in capture.chunks()]
        return capture, got, sd

    capture, got, sd = asyncio.run(main())
    assert len(sd.streams) == 2 and [s.channels for s in sd.streams] == [1, 1]
    assert capture.speakers == ("customer", "partner")
    assert {c.speaker for c in got} == {"customer", "partner"} and capture.samples_captured["partner"] == 40 * 320


def test_device_errors_are_one_line_with_a_code():
    with pytest.raises(DeviceError) as err:
        asyncio.run(DeviceCapture(DeviceConfig(stereo="no such card"), sd=FakeSd()).start())
    assert err.value.code == "no_device"
    with pytest.raises(DeviceError) as err:
        asyncio.run(DeviceCapture(DeviceConfig(stereo=0, partner_channel=3), sd=FakeSd()).start())
    assert err.value.code == "no_device" and "4" in err.value.message
    for bad in ({"sample_rate": 44100}, {"stereo": 1, "customer": 2}, {"partner": 1}, {"nope": 1}, {"stereo": True}, {"customer_channel": 1}):
        with pytest.raises(DeviceError) as err:
            DeviceConfig.from_section(bad)
        assert err.value.code == "bad_config"
    assert DeviceConfig.from_section({"customer": "USB", "partner": 3, "sample_rate": 8000}).block_frames == 160


def test_list_devices_marks_defaults():
    devices = list_devices(FakeSd())
    assert [(d.index, d.name, d.hostapi, d.max_input_channels, d.default_input, d.default_output) for d in devices] == [
        (0, "Fake line-in", "ALSA", 2, True, False), (1, "Fake speaker", "ALSA", 0, False, True)]


# --------------------------------------------------------------------------- the real thing: PortAudio + PulseAudio


def test_a_stereo_line_in_is_split_into_customer_and_partner_through_portaudio(pulse_sink, tmp_path):
    rate = 16000
    t = np.arange(rate // 2) / rate
    beep = (12000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    quiet = np.zeros_like(beep)
    stereo = np.stack([np.concatenate([beep, quiet, quiet]), np.concatenate([quiet, beep, quiet])], axis=1)  # customer left, then partner right
    wav = write_pcm16(tmp_path / "stereo.wav", stereo, rate)

    async def main():
        async with DeviceCapture(DeviceConfig(stereo="pulse", sample_rate=rate)) as capture:
            player = pulse_sink.play(wav)
            await asyncio.get_running_loop().run_in_executor(None, player.wait)
            await asyncio.sleep(0.3)
            capture.stop()
            got = [chunk async for chunk in capture.chunks()]
        return capture, got, player.returncode

    capture, got, rc = asyncio.run(main())
    assert rc == 0 and capture.dropped_blocks == 0 and capture.overflows == 0
    customer = np.concatenate([c.samples for c in got if c.speaker == "customer"]).astype(np.float64)
    partner = np.concatenate([c.samples for c in got if c.speaker == "partner"]).astype(np.float64)
    assert len(customer) == len(partner) >= 1.5 * rate
    loud_c = np.flatnonzero(np.abs(customer) > 4000)
    loud_p = np.flatnonzero(np.abs(partner) > 4000)
    assert len(loud_c) > 0.3 * rate and len(loud_p) > 0.3 * rate  # both channels arrived, each with its own beep
    assert loud_c[-1] < loud_p[0]  # the customer's beep came first, as played
    starts = [c.start_sample for c in got if c.speaker == "customer"]
    assert starts == sorted(starts) and starts[0] == 0


def test_devices_command_lists_the_pulse_device(pulse_sink, capsys):
    from cli.main import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "pulse" in out and "stereo line-in" in out
    assert main(["devices", "--json"]) == 0
    assert '"name": "pulse"' in capsys.readouterr().out
