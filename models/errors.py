"""Errors of the model stage (speech models and sentence encoders): finding, installing, loading, decoding.

Every one is a :class:`~kernel.errors.CallshieldError` with a stable ``code``
so the CLI prints one line and a call session can turn it into an error event.
"""

from __future__ import annotations

from kernel.errors import CallshieldError

#: The model a first-time user is told to install (small, English, 40 MB).
SUGGESTED_MODEL = "vosk-model-small-en-us-0.15"


class ModelError(CallshieldError):
    """A model (speech model or sentence encoder) could not be found, installed, loaded or used."""

    code = "model_error"


class ModelNotFound(ModelError):
    """No model where one was asked for (or none installed at all)."""

    code = "model_not_found"


class NotAModel(ModelError):
    """A directory or archive that holds neither a Vosk model nor a sentence encoder."""

    code = "not_a_model"


class DownloadFailed(ModelError):
    """A model download could not be completed (network, HTTP status, cut short)."""

    code = "download_failed"


class ChecksumMismatch(ModelError):
    """A downloaded or local archive is not the file the catalogue describes."""

    code = "checksum_mismatch"


class BadArchive(ModelError):
    """A model archive that is not a readable zip, or tries to write outside its folder."""

    code = "bad_archive"


class ModelExists(ModelError):
    """Installing over a model that is already installed (use --force)."""

    code = "model_exists"


class ModelLoadFailed(ModelError):
    """A model directory could not be loaded (Vosk refused it, or an encoder's files are broken)."""

    code = "model_load_failed"


def encoder_failed(folder: object, message: str) -> ModelLoadFailed:
    """A sentence encoder in ``folder`` that cannot be loaded: ``message`` says why, in one line."""
    return ModelLoadFailed(f"sentence encoder {folder}: {message}")


class CatalogueError(ModelError):
    """The model catalogue data file is malformed."""

    code = "bad_catalogue"


def no_model_installed(models_dir: object) -> ModelNotFound:
    """The first-run error: says exactly how to get a model."""
    return ModelNotFound(
        f"no speech model installed in {models_dir}: run 'callshield models install {SUGGESTED_MODEL}' "
        f"(or pass --model DIR; 'callshield models list' shows every language)"
    )
