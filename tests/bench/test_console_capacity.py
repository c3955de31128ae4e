"""bench/console_capacity.py runs end to end at a tiny size: every setup
(one SQLite console; two replicas on PostgreSQL linked through NATS, and
through LISTEN/NOTIFY), every alert on every supervisor's screen, every final
line stored, and the table printed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import console_capacity  # noqa: E402


def test_the_capacity_bench_loses_nothing_at_a_small_size(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(console_capacity.ROOT))
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(console_capacity, "RUNS_IN", str(runs))  # where each run makes its folder
    trace = tmp_path / "trace.jsonl"
    args = argparse.Namespace(calls="4", seconds=4.0, turn=0.5, supervisors=2, agents=2, setups="sqlite1,pg2,notify2", trace=str(trace),
                              drain=60.0, keep=False)
    assert asyncio.run(console_capacity.main_async(args)) == 0
    out = capsys.readouterr().out
    assert "| SQLite, 1 replica | 4 |" in out and "| PostgreSQL+NATS, 2 replicas | 4 |" in out
    assert "| PostgreSQL+LISTEN/NOTIFY, 2 replicas | 4 |" in out
    assert out.count("| 0 of 2 |") == 3  # one threatening call in four, two supervisors: both alerts seen, in every setup
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sum("start" in line for line in lines) == 3  # a trace of each run
    assert sum("alert" in line and line["seen"] is not None for line in lines) == 3  # each run's one alert, seen
    assert all(len(line["links"]) == 2 for line in lines if "links" in line)
    assert list(runs.iterdir()) == [], "each run's folder is removed after a run that did not fail (--keep keeps it)"
