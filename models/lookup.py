"""Which speech model a command uses, and where models are installed.

The model, first found wins:

1. the command line (``--model``),
2. ``$CALLSHIELD_MODEL``,
3. the config file (``[models] model = ...``),
4. the models directory, when exactly one model is installed there.

Each level gives a path to a model directory or the name of an installed
model (``callshield models list``). A level that is set but wrong is an error,
never silently skipped: a typo must not quietly fall back to another language.

The sentence encoder of the detector's semantic stage (:func:`resolve_encoder`)
is named by ``[detection] encoder`` (default ``all-minilm-l6-v2``): a path, or
the name of an installed encoder (models directory, then pip packages).

The models directory, first found wins: ``--models-dir``,
``$CALLSHIELD_MODELS_DIR``, ``[models] dir``, then ``DATA_DIR/models`` where
``DATA_DIR`` is the caller's data directory (``kernel.config.default_data_dir()``
for the command line; ``models`` does not import ``agent``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kernel.sections import read_section, setting
from models.catalogue import load_catalogue
from models.decoding import DecodingPlan
from models.errors import ModelError, ModelNotFound, no_model_installed
from models.layout import ENCODER, SPEECH, check_model_dir, encoder_problems, folder_name, pip_models
from models.store import ModelStore

ENV_MODEL = "CALLSHIELD_MODEL"
ENV_MODELS_DIR = "CALLSHIELD_MODELS_DIR"


@dataclass(frozen=True)
class ModelsConfig:
    """The ``[models]`` section of the config file.

    Attributes:
        model: model directory path or installed model name; None: look further.
        dir: the models directory; None: ``$CALLSHIELD_MODELS_DIR`` or the default.
        decoding: ``[models.decoding]``, how each speaker is decoded and the
            decoder's speed profile (:class:`~models.decoding.DecodingPlan`).
    """

    model: str | None = setting(default=None, read=lambda value: _non_empty("model", value))
    dir: Path | None = setting(default=None, read=lambda value: Path(_non_empty("dir", value)).expanduser())
    decoding: DecodingPlan = field(default_factory=DecodingPlan)

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, base: Path | None = None) -> "ModelsConfig":
        """Build from a parsed ``[models]`` table; relative paths are relative to ``base`` (the config's folder)."""
        config = read_section(cls, section, section="[models]", error=lambda message: ModelError(message, code="bad_config"))
        model, directory = config.model, config.dir
        if model and base is not None and _looks_like_path(model) and not Path(model).expanduser().is_absolute():
            model = str(base / model)
        if directory is not None and base is not None and not directory.is_absolute():
            directory = base / directory
        return dataclasses.replace(config, model=model, dir=directory)


def _non_empty(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    return value


@dataclass(frozen=True)
class ResolvedModel:
    """The model a command will load.

    Attributes:
        path: the model directory (verified to be a Vosk model).
        name: its name (folder name or installed name).
        source: which level chose it: ``--model``, ``$CALLSHIELD_MODEL``,
            ``config``, or ``models directory``.
    """

    path: Path
    name: str
    source: str


def models_dir(config: ModelsConfig = ModelsConfig(), *, data_dir: Path, option: str | Path | None = None,
               env: Mapping[str, str] | None = None) -> Path:
    """The models directory (see the module docstring for the order)."""
    env = os.environ if env is None else env
    if option:
        return Path(option).expanduser()
    if env.get(ENV_MODELS_DIR, "").strip():
        return Path(env[ENV_MODELS_DIR]).expanduser()
    if config.dir is not None:
        return config.dir
    return Path(data_dir) / "models"


def resolve_model(option: str | None = None, config: ModelsConfig = ModelsConfig(), *, data_dir: Path,
                  models_dir_option: str | Path | None = None, env: Mapping[str, str] | None = None) -> ResolvedModel:
    """The model to load, or :class:`ModelNotFound` naming the install command."""
    env = os.environ if env is None else env
    root = models_dir(config, data_dir=data_dir, option=models_dir_option, env=env)
    store = ModelStore(root, load_catalogue())
    levels = ((option, "--model"), (env.get(ENV_MODEL, "").strip() or None, f"${ENV_MODEL}"), (config.model, "config"))
    for value, source in levels:
        if value:
            return _resolve_value(value, source, store)
    installed = [m for m in store.installed() if m.kind == SPEECH]
    if len(installed) == 1:
        return ResolvedModel(path=installed[0].path, name=installed[0].name, source="models directory")
    if not installed:
        raise no_model_installed(root)
    names = ", ".join(m.name for m in installed)
    raise ModelNotFound(f"several models installed in {root} ({names}): choose one with --model NAME, "
                        f"${ENV_MODEL} or [models] model in the config file")


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.startswith(("~", "."))


def _resolve_value(value: str, source: str, store: ModelStore) -> ResolvedModel:
    path = Path(value).expanduser()
    if _looks_like_path(value) or path.is_dir():
        check_model_dir(path)
        return ResolvedModel(path=path, name=folder_name(path), source=source)
    model = store.get(value)
    if model is not None and model.kind != SPEECH:
        raise ModelNotFound(f"{value!r} (from {source}) is a sentence encoder, not a speech model; see 'callshield models list'")
    if model is not None:
        return ResolvedModel(path=model.path, name=model.name, source=source)
    if store.catalogue.get(value) is not None:
        raise ModelNotFound(f"model {value!r} (from {source}) is not installed in {store.root}: "
                            f"run 'callshield models install {value}'")
    known = [m.name for m in store.installed() + pip_models()]
    hint = f" (installed: {', '.join(known)})" if known else ""
    raise ModelNotFound(f"model {value!r} (from {source}) is neither a model directory nor an installed model{hint}; "
                        f"see 'callshield models list'")


def resolve_encoder(value: str, config: ModelsConfig = ModelsConfig(), *, data_dir: Path,
                    env: Mapping[str, str] | None = None) -> ResolvedModel:
    """The sentence encoder ``value`` names (a path, or an installed encoder's
    name), or :class:`ModelNotFound` saying how to install it."""
    path = Path(value).expanduser()
    if _looks_like_path(value) or path.is_dir():
        problems = encoder_problems(path)
        if problems:
            raise ModelNotFound(f"sentence encoder {path}: {'; '.join(problems)}")
        return ResolvedModel(path=path, name=folder_name(path), source="config")
    root = models_dir(config, data_dir=data_dir, env=env)
    store = ModelStore(root, load_catalogue())
    model = store.get(value)
    if model is not None and model.kind == ENCODER:
        return ResolvedModel(path=model.path, name=value, source=model.source)
    if model is not None:
        raise ModelNotFound(f"{value!r} is a speech model, not a sentence encoder ([detection] encoder)")
    entry = store.catalogue.get(value)
    if entry is not None and entry.kind == ENCODER:
        hint = f"run 'callshield models install {value}'"
    else:
        known = ", ".join(e.name for e in store.catalogue.entries if e.kind == ENCODER)
        hint = f"{value!r} is not a catalogue encoder (known: {known}); install one with 'callshield models install NAME' or give a folder"
    raise ModelNotFound(f"sentence encoder {value!r} is not installed in {root}: {hint} "
                        f"(or set [detection] semantic = false to screen with the rules alone)")
