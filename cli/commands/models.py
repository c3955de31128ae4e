"""List, install and locate models: Vosk speech models and sentence encoders.

  callshield models list [--json]           installed models (with their kind) and the catalogue
  callshield models install NAME|URL|ZIP|DIR [--name N] [--sha256 HEX] [--force]
  callshield models path [NAME] [--dir]     the model a command would use

Two kinds of model share the models directory: ``speech`` (Vosk, for
transcribing) and ``encoder`` (the sentence encoder of the detector's semantic
stage, e.g. ``callshield models install all-minilm-l6-v2``; the config file's
``[detection] encoder`` names it).

A speech model is looked up in this order: --model, $CALLSHIELD_MODEL, the
config file's [models] model, then the one speech model installed in the
models directory.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", metavar="DIR",
                        help="models directory (default: $CALLSHIELD_MODELS_DIR, [models] dir, or DATA_DIR/models)")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", parents=[common], help="installed models and the models you can install")
    p.add_argument("--json", action="store_true", help="one JSON object per model on stdout")

    p = sub.add_parser("install", parents=[common], help="download or copy a model into the models directory")
    p.add_argument("source", metavar="NAME|URL|ZIP|DIR", help="a catalogue name, an http(s)/file URL, a local zip or a model directory")
    p.add_argument("--name", help="install under this name (default: the model's own folder name)")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the zip (overrides the catalogue)")
    p.add_argument("--force", action="store_true", help="replace a model already installed under that name")

    p = sub.add_parser("path", parents=[common], help="print the directory of the model commands would use")
    p.add_argument("name", nargs="?", help="an installed model's name, speech or encoder (default: the lookup order)")
    p.add_argument("--model", help="model directory or installed name (as for 'transcribe --model')")
    p.add_argument("--dir", action="store_true", help="print the models directory instead")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; models.lookup and models.store (urllib, zipfile) about 95 ms (python -X importtime)
    from kernel.config import default_data_dir, load_config
    from models.lookup import ModelsConfig, models_dir, resolve_model
    from models.layout import ENCODER
    from models.store import ModelStore

    config_file = load_config(args.config)
    base = config_file.path.parent if config_file.path else None
    config = ModelsConfig.from_section(config_file.section("models"), base=base)
    root = models_dir(config, data_dir=default_data_dir(), option=args.models_dir)

    if args.models_command == "list":
        return _list(ModelStore(root), as_json=args.json)
    if args.models_command == "install":
        return _install(ModelStore(root), args)
    if args.dir:
        print(root)
        return 0
    named = ModelStore(root).get(args.name) if args.name else None
    if named is not None and named.kind == ENCODER:
        print(named.path)
        return 0
    resolved = resolve_model(args.name or args.model, config, data_dir=default_data_dir(), models_dir_option=args.models_dir)
    print(resolved.path)
    return 0


def _list(store, *, as_json: bool) -> int:
    from models.layout import pip_models

    installed = store.installed()
    pips = pip_models()
    rows = []
    for model in installed + pips:
        entry = store.catalogue.get(model.name)
        rows.append({
            "name": model.name, "status": "installed", "kind": model.kind, "source": model.source,
            "path": str(model.path), "language": entry.language if entry else None, "sha256": model.sha256,
        })
    have = {m.name for m in installed}
    for entry in store.catalogue.entries:
        if entry.name in have:
            continue
        rows.append({
            "name": entry.name, "status": "available", "source": "catalogue", "url": entry.url,
            "language": entry.language, "kind": entry.kind, "size": entry.size,
            "checksum": "sha256" if entry.sha256 else "md5" if entry.md5 else None,
        })
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0

    print(f"installed in {store.root}:")
    if not installed:
        print("  (none)")
    for model in installed:
        note = f"  sha256 {model.sha256}" if model.sha256 else ""
        print(f"  {model.name:<32} {model.kind:<8} {model.path}{note}")
    if pips:
        print("from pip packages (use by name, or 'callshield models install NAME' to copy in):")
        for model in pips:
            print(f"  {model.name:<32} {model.kind:<8} {model.path}")
    print("available to install ('callshield models install NAME'):")
    for entry in store.catalogue.entries:
        if entry.name in have:
            continue
        if entry.sha256:
            checksum = "sha256 known"
        elif entry.md5:
            checksum = "md5 known"
        else:
            checksum = "checksum unknown (SHA-256 recorded at install)"
        print(f"  {entry.name:<32} {entry.language_name:<13} {entry.kind:<7} {entry.size:>5}  {checksum}")
    return 0


def _install(store, args: argparse.Namespace) -> int:
    from detection.config import DetectionConfig
    from models.layout import ENCODER, model_kind
    from models.progress import ProgressPrinter

    result = store.install(args.source, name=args.name, sha256=args.sha256, force=args.force,
                           progress=ProgressPrinter(sys.stderr))
    if result.already:
        print(f"already installed: {result.name} in {result.path} (nothing downloaded; --force reinstalls)")
    else:
        print(f"installed {result.name} in {result.path}")
    if result.sha256:
        how = {"sha256": "matches the expected sha256", "md5": "md5 matches the catalogue",
               "none": "no published checksum to compare; recorded"}[result.verified]
        print(f"sha256 {result.sha256} ({how})")
    if model_kind(result.path) == ENCODER:
        default = " (the default)" if result.name == DetectionConfig().encoder else ""
        print(f'use it: [detection] encoder = "{result.name}" in the config file{default}')
    else:
        print(f"use it: callshield transcribe CALL.wav --model {result.name}")
    return 0
