"""--siprec / --sip on the command line: addresses, the [siprec] section, one server per address."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from cli.commands.ingress_options import IngressOptionError, add_ingress_arguments, ingress_from_args
from cli.settings import load_settings
from agent_process import ROOT, env_for


def parse(tmp_path, *argv, config: str = ""):
    path = tmp_path / "c.toml"
    path.write_text(config, encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_ingress_arguments(parser)
    return ingress_from_args(load_settings(path, env={"CALLSHIELD_HOME": str(tmp_path)}), parser.parse_args(argv))


def test_siprec_and_sip_flags_make_sip_servers(tmp_path):
    ingress = parse(tmp_path, "--siprec", "--sip", "127.0.0.1:5070", config='[siprec]\nport = 5080\nmax_calls = 3\n')
    assert [(c.host, c.port, c.max_calls) for c in ingress.sip] == [("127.0.0.1", 5080, 3), ("127.0.0.1", 5070, 3)]
    assert ingress.live and ingress.needs_model
    same = parse(tmp_path, "--siprec", "5070", "--sip", "127.0.0.1:5070")
    assert len(same.sip) == 1  # one server answers both kinds


@pytest.mark.parametrize("argv, message", [
    (("--siprec", "127.0.0.1:sip"), "--siprec wants [HOST:]PORT"),
    (("--sip", "99999"), "--sip port 99999 is out of range"),
])
def test_bad_sip_addresses(tmp_path, argv, message):
    with pytest.raises(IngressOptionError, match=re.escape(message)):
        parse(tmp_path, *argv)


def test_a_wildcard_host_needs_media_host(tmp_path):
    from audio.sip.message import SipError

    with pytest.raises(SipError, match="media_host"):
        parse(tmp_path, "--siprec", "0.0.0.0:5060")
    assert parse(tmp_path, "--siprec", "0.0.0.0:5060", config='[siprec]\nmedia_host = "10.0.0.5"\n').sip[0].media_address == "10.0.0.5"


def test_agent_command_refuses_a_bad_siprec_address(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cli", "agent", "--console", "ws://127.0.0.1:9", "--token", "t", "--siprec", "127.0.0.1:sip"],
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["callshield: error: --siprec wants [HOST:]PORT, not '127.0.0.1:sip'"]
