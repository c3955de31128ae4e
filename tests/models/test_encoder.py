"""The sentence encoder in numpy agrees with sentence-transformers, and refuses broken folders in one line."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from models.encoder import SentenceEncoder
from models.layout import ENCODER_FILES, encoder_problems
from models.errors import ModelLoadFailed, NotAModel

# sentence-transformers itself (torch, normalize_embeddings=True), first 8 of 384 dimensions.
REFERENCE = {
    "i know where you live": (
        [0.08764, 0.02059, 0.03384, 0.02591, 0.01162, -0.07403, 0.04256, -0.00944],
        ["i", "know", "where", "you", "live"],
    ),
    "Thank you, that fixed my bill!": (
        [0.02379, 0.06251, 0.03703, -0.00454, -0.02011, -0.02798, -0.07494, -0.01202],
        ["thank", "you", ",", "that", "fixed", "my", "bill", "!"],
    ),
}


def pieces(encoder, text):
    """The word pieces of ``text`` as strings, without [CLS]/[SEP]."""
    names = {i: piece for piece, i in encoder.tokenizer.ids.items()}
    return [names[i] for i in encoder.tokenizer.encode(text, encoder.max_length)[1:-1]]


@pytest.mark.parametrize("text", list(REFERENCE))
def test_embeddings_match_sentence_transformers(encoder, text):
    expected, words = REFERENCE[text]
    assert encoder.tokenizer.words(text) == words
    assert pieces(encoder, text) == words, "every word here is one vocabulary piece"
    vector = encoder.embed(text)
    assert vector.shape == (384,) and vector.dtype == np.float32 and encoder.dimensions == 384
    # 2e-4: our GELU is the tanh form, torch's the erf form.
    np.testing.assert_allclose(vector[:8], expected, atol=2e-4)


def test_embeddings_have_unit_length_even_for_empty_text(encoder):
    vectors = encoder.embed_many(["i know where you live", "", "   "])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()
    assert pieces(encoder, "") == [] and encoder.embed("").shape == (384,)
    assert encoder.embed_many([]).shape == (0, 384)


def test_a_batch_gives_the_same_vectors_as_one_by_one(encoder):
    """Padding is masked: a short text batched with a long one is not changed by the padding."""
    texts = ["hi", "I have been on hold for forty five minutes and nobody has fixed my internet connection, "
                   "this is the third time this week and I am done being polite about it", "you again?"]
    batched = encoder.embed_many(texts)
    alone = np.stack([encoder.embed(text) for text in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert not np.allclose(alone[0], alone[2], atol=1e-2), "different texts, different vectors"


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(encoder):
    threat, paraphrase, unrelated = encoder.embed_many(
        ["i know where you live", "i know your home address", "my bill was wrong this month"])
    assert threat @ paraphrase > threat @ unrelated + 0.1


def test_rare_words_split_into_continuation_pieces_and_overlong_words_are_unknown(encoder):
    split = pieces(encoder, "Antidisestablishmentarianism")
    assert len(split) > 2 and split[0] == "anti" and all(p.startswith("##") for p in split[1:])
    assert "".join(p.removeprefix("##") for p in split) == "antidisestablishmentarianism"
    assert pieces(encoder, "call " + "x" * 101 + " me") == ["call", "[UNK]", "me"]
    assert pieces(encoder, "x" * 100) != ["[UNK]"], "100 characters is still a word"
    assert encoder.tokenizer.words("Café, NAÏVE!") == ["cafe", ",", "naive", "!"]


def test_long_text_is_cut_to_the_models_length(encoder):
    ids = encoder.tokenizer.encode("word " * 1000, encoder.max_length)
    assert len(ids) == encoder.max_length and ids[0] == encoder.tokenizer.cls and ids[-1] == encoder.tokenizer.sep
    np.testing.assert_allclose(np.linalg.norm(encoder.embed("word " * 1000)), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- broken folders


def test_a_folder_missing_files_is_not_a_model_naming_them(tmp_path, encoder_dir):
    folder = tmp_path / "half"
    folder.mkdir()
    shutil.copy(encoder_dir / "config.json", folder)
    assert encoder_problems(folder) == ["missing vocab.txt, model.safetensors"]
    with pytest.raises(NotAModel, match="missing vocab.txt, model.safetensors") as err:
        SentenceEncoder(folder)
    assert err.value.code == "not_a_model"
    with pytest.raises(NotAModel, match="not a directory"):
        SentenceEncoder(tmp_path / "nowhere")
    assert encoder_problems(encoder_dir) == [] and set(ENCODER_FILES) <= {p.name for p in encoder_dir.iterdir()}


def _copy_with_weights(encoder_dir, folder, weights: bytes):
    folder.mkdir()
    shutil.copy(encoder_dir / "config.json", folder)
    shutil.copy(encoder_dir / "vocab.txt", folder)
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_truncated_weights_fail_to_load_in_one_line(tmp_path, encoder_dir):
    with (encoder_dir / "model.safetensors").open("rb") as fh:
        head = fh.read(1000)
        (header_len,) = struct.unpack("<Q", head[:8])
        fh.seek(0)
        header_and_some_data = fh.read(8 + header_len + 1000)
    for name, weights in (("cut-in-header", head), ("cut-in-data", header_and_some_data), ("empty", b"")):
        folder = _copy_with_weights(encoder_dir, tmp_path / name, weights)
        with pytest.raises(ModelLoadFailed, match="model.safetensors") as err:
            SentenceEncoder(folder)
        assert err.value.code == "model_load_failed" and "\n" not in str(err.value), name
        assert str(folder) in str(err.value)


def test_a_config_that_is_not_bert_fails_to_load(tmp_path, encoder_dir):
    folder = tmp_path / "gpt"
    folder.mkdir()
    config = json.loads((encoder_dir / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    shutil.copy(encoder_dir / "vocab.txt", folder)
    (folder / "model.safetensors").symlink_to(encoder_dir / "model.safetensors")
    with pytest.raises(ModelLoadFailed, match="'gpt2'") as err:
        SentenceEncoder(folder)
    assert err.value.code == "model_load_failed"
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadFailed, match="config.json"):
        SentenceEncoder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    assert SentenceEncoder(folder).name == "gpt", "the same folder with a BERT config loads"


# ---------------------------------------------------------------- adapters and the weights format


def _adapter(encoder, layer: int, rank: int = 4, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    width, hidden = encoder.dimensions, encoder._layers[layer].up.shape[1]
    return {
        f"layer.{layer}.qkv.a": rng.normal(0, 0.05, (width, rank)).astype(np.float32),
        f"layer.{layer}.qkv.b": rng.normal(0, 0.05, (rank, 3 * width)).astype(np.float32),
        f"layer.{layer}.down.a": rng.normal(0, 0.05, (hidden, rank)).astype(np.float32),
        f"layer.{layer}.down.b": rng.normal(0, 0.05, (rank, width)).astype(np.float32),
        f"layer.{layer}.up_bias": rng.normal(0, 0.05, hidden).astype(np.float32),
        f"layer.{layer}.output_norm.weight": np.full(width, 1.1, np.float32),
    }


def test_an_adapter_merges_low_rank_corrections_into_a_new_encoder(encoder):
    text = "you'd better watch your back"
    before = encoder.embed(text)
    adapter = _adapter(encoder, layer=5)
    tuned = encoder.adapted(adapter)
    base, merged = encoder._layers[5], tuned._layers[5]
    np.testing.assert_allclose(merged.qkv, base.qkv + adapter["layer.5.qkv.a"] @ adapter["layer.5.qkv.b"], rtol=1e-6)
    np.testing.assert_allclose(merged.down, base.down + adapter["layer.5.down.a"] @ adapter["layer.5.down.b"], rtol=1e-6)
    assert merged.up is base.up and merged.attention_out is base.attention_out, "matrices without factors are shared"
    np.testing.assert_array_equal(merged.up_bias, adapter["layer.5.up_bias"])
    np.testing.assert_array_equal(merged.output_norm[0], adapter["layer.5.output_norm.weight"])
    assert merged.output_norm[1] is base.output_norm[1]
    assert all(a is b for a, b in zip(tuned._layers[:5], encoder._layers[:5])), "untouched layers are shared"
    after = tuned.embed(text)
    assert abs(float(np.linalg.norm(after)) - 1.0) < 1e-5
    assert float(before @ after) < 0.999, "the adapter changes the embedding"
    np.testing.assert_array_equal(encoder.embed(text), before)  # the original encoder is unchanged
    assert encoder.adapter is None and tuned.adapter is adapter
    with pytest.raises(ModelLoadFailed, match="merged already"):
        tuned.adapted(adapter)


@pytest.mark.parametrize("change, says", [
    (lambda a: a.update({"layer.9.qkv.a": a["layer.5.qkv.a"]}), "no place for: layer.9.qkv.a"),
    (lambda a: a.update({"embeddings.word_embeddings": np.zeros(3, np.float32)}), "no place for"),
    (lambda a: a.pop("layer.5.qkv.b"), "only one factor of layer.5.qkv"),
    (lambda a: a.update({"layer.5.qkv.b": np.zeros((4, 384), np.float32)}), "do not fit"),
    (lambda a: a.update({"layer.5.up_bias": np.zeros(384, np.float32)}), "layer.5.up_bias has shape"),
], ids=["foreign_layer", "foreign_name", "one_factor", "factor_shape", "vector_shape"])
def test_an_adapter_for_another_encoder_is_refused_naming_the_tensor(encoder, change, says):
    adapter = _adapter(encoder, layer=5)
    change(adapter)
    with pytest.raises(ModelLoadFailed, match="adapter") as err:
        encoder.adapted(adapter)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_safetensors_written_are_read_back(tmp_path):
    from kernel.tensors import read_safetensors, write_safetensors

    tensors = {"b.matrix": np.arange(12, dtype=np.float32).reshape(3, 4), "a.half": np.array([0.5, -2.0], np.float16),
               "c.odd": np.ones(3, np.float32)}
    path = tmp_path / "x.safetensors"
    write_safetensors(path, tensors, {"written_by": "a test"})
    back = read_safetensors(path)
    assert sorted(back) == sorted(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert header_len % 8 == 0 and json.loads(path.read_bytes()[8:8 + header_len])["__metadata__"] == {"written_by": "a test"}
    with pytest.raises(ValueError, match="int64"):
        write_safetensors(tmp_path / "y.safetensors", {"ints": np.arange(3)})
