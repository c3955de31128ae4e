"""Helpers for the models tests: fake model folders, zips, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_fake_model(path: Path, *, payload: int = 64 * 1024) -> Path:
    """A folder with the layout of a Vosk model (not loadable by Vosk: for install and lookup tests)."""
    for part, size in (("am/final.mdl", payload), ("conf/model.conf", 40), ("conf/mfcc.conf", 40),
                       ("graph/HCLG.fst", payload), ("graph/words.txt", 100), ("README", 20)):
        file = path / part
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(os.urandom(size))
    return path


def zip_dir(folder: Path, archive: Path, *, top: str | None = None) -> Path:
    """Zip ``folder`` as upstream does: every entry under a top folder (``top``; None: no top folder)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            rel = file.relative_to(folder).as_posix()
            zf.write(file, f"{top}/{rel}" if top else rel)
    return archive



def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess with its own data dir and no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
    env.update(CALLSHIELD_HOME=str(home), XDG_CONFIG_HOME=str(home / "config"))
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """``callshield ARGS`` in a subprocess (the real entry point, as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
