"""Fixtures of the ingress tests: the recognizer executor of a test module's
agents, and a private PulseAudio server with a null sink, so the sound-device
path runs against a real PortAudio device.

The server runs as whoever runs the tests (root in CI: PulseAudio warns but
works in user mode), with its runtime, state and cookie in a temporary
directory, anonymous auth on its own socket, and no other module loaded. The
tests reach it through ``$PULSE_SERVER`` (set only while the fixture lives)
and PortAudio's ALSA ``pulse`` device (the ALSA plugin ships with Debian's
``pulseaudio`` package through ``libasound2-plugins``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def executor():
    """The recognizer executor the agents of one test module share (two threads)."""
    from models.transcriber import recognizer_executor

    pool = recognizer_executor(2)
    yield pool
    pool.shutdown()


@dataclass(frozen=True)
class PulseSink:
    server: str  # value for $PULSE_SERVER
    sink: str  # the null sink's name; its monitor is the capture source
    rate: int

    def play(self, wav: Path) -> subprocess.Popen:
        """Start playing ``wav`` into the sink (returns the running ``paplay``)."""
        env = dict(os.environ, PULSE_SERVER=self.server)
        return subprocess.Popen(["paplay", f"--device={self.sink}", str(wav)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def pulse_sink(tmp_path_factory):
    for tool in ("pulseaudio", "pactl", "paplay"):
        assert shutil.which(tool), f"{tool} is required (apt-get install pulseaudio pulseaudio-utils)"
    home = tmp_path_factory.mktemp("pulse")
    socket = home / "native"
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home), PULSE_RUNTIME_PATH=str(home / "run"),
               XDG_CONFIG_HOME=str(home / "config"), PULSE_STATE_PATH=str(home / "state"))
    env.pop("PULSE_SERVER", None)
    rate = 16000
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--disallow-module-loading=no",
         "-n", "--use-pid-file=no", "--system=false", "--log-target=stderr", "--log-level=error",
         "-L", f"module-native-protocol-unix auth-anonymous=1 socket={socket}",
         "-L", f"module-null-sink sink_name=callshield_test rate={rate} channels=2 sink_properties=device.description=callshield_test"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    server = f"unix:{socket}"
    client_env = dict(os.environ, PULSE_SERVER=server)
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=client_env, capture_output=True).returncode != 0:
            assert daemon.poll() is None, f"pulseaudio exited: {daemon.stderr.read().decode(errors='replace')}"
            assert time.monotonic() < deadline, "pulseaudio did not come up within 15 s"
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-sink", "callshield_test"], env=client_env, check=True, capture_output=True)
        subprocess.run(["pactl", "set-default-source", "callshield_test.monitor"], env=client_env, check=True, capture_output=True)
        old = os.environ.get("PULSE_SERVER")
        os.environ["PULSE_SERVER"] = server
        _reinit_portaudio()  # PortAudio lists devices once, when it starts
        try:
            yield PulseSink(server=server, sink="callshield_test", rate=rate)
        finally:
            if old is None:
                os.environ.pop("PULSE_SERVER", None)
            else:
                os.environ["PULSE_SERVER"] = old
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        _reinit_portaudio()


def _reinit_portaudio() -> None:
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()
