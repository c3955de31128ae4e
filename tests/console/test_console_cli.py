"""``callshield users`` and ``callshield console`` as a user runs them."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from cli.main import main
from console.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_users_add_list_passwd_remove(tmp_path, store_where, capsys, monkeypatch):
    data = str(tmp_path / "data")
    config = tmp_path / "callshield.toml"  # the store the config names: the SQLite file in data, or PostgreSQL
    config.write_text(f'[console]\nstore = "{store_where}"\n' if isinstance(store_where, str) else "")
    monkeypatch.setenv("CALLSHIELD_CONFIG", str(config))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no terminal: the password is generated
    assert main(["users", "--data-dir", data, "add", "sup", "--role", "supervisor"]) == 0
    password = capsys.readouterr().out.split("password ", 1)[1].split()[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("chosen password\n"))
    assert main(["users", "--data-dir", data, "add", "ann", "--role", "partner", "--password-stdin"]) == 0
    assert main(["users", "--data-dir", data, "add", "site-a", "--role", "agent"]) == 0
    out = capsys.readouterr().out
    token = out.split("token ", 1)[1].split()[0]
    assert main(["users", "--data-dir", data, "list"]) == 0
    listing = capsys.readouterr().out
    assert "sup\tsupervisor" in listing and "ann\tpartner" in listing and "site-a\tagent" in listing

    store = Store.open(store_where)  # for SQLite, the file in data
    assert store.check_password("sup", password) == "supervisor"
    assert store.check_password("ann", "chosen password") == "partner"
    assert store.check_agent("site-a", token) == 0
    store.close()

    assert main(["users", "--data-dir", data, "add", "ann", "--role", "qa"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "--data-dir", data, "remove", "nobody"]) == 2
    assert "callshield: error: no user or agent 'nobody'" in capsys.readouterr().err
    assert main(["users", "--data-dir", data, "remove", "ann"]) == 0


def test_console_command_serves_and_stops_cleanly(tmp_path):
    env = dict(os.environ, CALLSHIELD_CONFIG=str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("[console]\nbrowser_queue = 64\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "console", "--port", "0", "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("callshield console at http://127.0.0.1:"), first
        url = first.split()[3]
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            assert json.load(r)["status"] == "ok"
        assert "no users yet" in "".join(proc.stdout.readline() for _ in range(3))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert (tmp_path / "data" / "console.db").is_file()


def test_console_command_reports_a_bad_config_in_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text('[console]\nport = "eight"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--config", str(tmp_path / "bad.toml"), "console", "--data-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["callshield: error: [console] port has the wrong type (str)"]
