"""The sentence encoder the detector's semantic stage runs, in numpy.

The rules know the wording they were written for; a caller who says "you got
kids, right? it'd be a shame" in words no rule lists is still threatening.
This module turns an utterance into a sentence embedding: a BERT-style
transformer (the default is sentence-transformers' ``all-MiniLM-L6-v2``: six
layers, 384 dimensions, 22 M weights, English) run forward in numpy, mean-pooled
over the words and scaled to unit length, exactly as sentence-transformers
does. No deep-learning framework is needed at run time: the weights are read
from the model's ``model.safetensors`` (memory-mapped, so every process on the
machine shares one copy of the pages) and the WordPiece vocabulary from its
``vocab.txt``.

An encoder folder (its layout: ``models.layout.encoder_problems``) is installed like a speech model
(``callshield models install all-minilm-l6-v2``, see :mod:`models.store`;
found by :func:`models.lookup.resolve_encoder`) and holds ``config.json``,
``vocab.txt`` and ``model.safetensors``.

Cost: one utterance of about 15 word pieces takes a few milliseconds of one
core (``bench/detection_speed.py`` prints the figure); numpy releases the GIL
in the matrix products, so the agent runs it in its detection executor.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from kernel.tensors import TensorFileError, read_safetensors
from models.errors import NotAModel, encoder_failed
from models.layout import encoder_problems, folder_name
from models.wordpiece import WordPiece

@dataclass(frozen=True)
class Reading:
    """One text as the encoder reads it (:meth:`SentenceEncoder.read`).

    Attributes:
        embedding: the text's unit-length embedding (``dimensions`` long).
        words: ``[words, dimensions]``: each word's unit-length vector in
            context (past the encoder's length: the mean of the pieces that
            fit, zero when none does).
    """

    embedding: np.ndarray
    words: np.ndarray


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray  # [hidden, 3*hidden]: query, key, value side by side
    qkv_bias: np.ndarray
    attention_out: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


class SentenceEncoder:
    """One loaded encoder; immutable after loading, shared by every call and thread.

    Attributes:
        path: the encoder folder.
        name: its folder name (``PKG`` for a package's ``PKG/model``).
        dimensions: length of an embedding.
        depth: how many transformer layers it has.
        adapter: the adaptation merged into it (:meth:`adapted`), or None as loaded.
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        problems = encoder_problems(path)
        if problems:
            raise NotAModel(f"{path} is not a sentence encoder: {'; '.join(problems)}")
        self.path = path
        self.name = folder_name(path)
        self.adapter: Mapping[str, np.ndarray] | None = None  # see adapted()
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise encoder_failed(path, f"cannot read config.json: {exc}") from exc
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise encoder_failed(path, f"not a BERT encoder with GELU (model_type {config.get('model_type')!r})")
        self.dimensions = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.max_length = min(int(config.get("max_position_embeddings", 512)), 256)
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = WordPiece.load(path / "vocab.txt")
        try:
            weights = read_safetensors(path / "model.safetensors")
        except TensorFileError as exc:
            raise encoder_failed(path, exc.message) from exc
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def tensor(name: str, transpose: bool = False) -> np.ndarray:
            try:
                value = weights[prefix + name]
            except KeyError:
                raise encoder_failed(path, f"model.safetensors lacks {prefix + name}") from None
            return np.ascontiguousarray(value.T, dtype=np.float32) if transpose else np.asarray(value, dtype=np.float32)

        self._words = tensor("embeddings.word_embeddings.weight")
        self._positions = tensor("embeddings.position_embeddings.weight")
        self._segment = tensor("embeddings.token_type_embeddings.weight")[0]
        self._embedding_norm = (tensor("embeddings.LayerNorm.weight"), tensor("embeddings.LayerNorm.bias"))
        layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            layers.append(_Layer(
                qkv=np.concatenate([tensor(p + f"attention.self.{n}.weight", True) for n in ("query", "key", "value")], axis=1),
                qkv_bias=np.concatenate([tensor(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]),
                attention_out=tensor(p + "attention.output.dense.weight", True),
                attention_out_bias=tensor(p + "attention.output.dense.bias"),
                attention_norm=(tensor(p + "attention.output.LayerNorm.weight"), tensor(p + "attention.output.LayerNorm.bias")),
                up=tensor(p + "intermediate.dense.weight", True),
                up_bias=tensor(p + "intermediate.dense.bias"),
                down=tensor(p + "output.dense.weight", True),
                down_bias=tensor(p + "output.dense.bias"),
                output_norm=(tensor(p + "output.LayerNorm.weight"), tensor(p + "output.LayerNorm.bias")),
            ))
        self._layers = tuple(layers)
        if self.dimensions % self.heads or self._words.shape[1] != self.dimensions:
            raise encoder_failed(path, "hidden size and weights disagree")

    @property
    def depth(self) -> int:
        """How many transformer layers the encoder has."""
        return len(self._layers)

    def adapted(self, adapter: Mapping[str, np.ndarray]) -> "SentenceEncoder":
        """This encoder with a trained adaptation merged in (the semantic stage's
        ``semantic_adapter.safetensors``), as a new encoder; this one is unchanged.

        For layer ``i`` and one of its matrices ``M`` (``qkv``, ``attention_out``,
        ``up``, ``down``, each ``[inputs, outputs]``), ``layer.i.M.a`` and
        ``layer.i.M.b`` are a low-rank correction: ``M + a @ b``. A vector
        (``layer.i.qkv_bias`` ... ``layer.i.output_norm.bias``) replaces the
        encoder's own. A name the encoder has no place for, or a wrong shape,
        is a :class:`ModelLoadFailed`: an adapter for another encoder is refused.
        Layers the adapter leaves alone stay shared (memory-mapped); a merged
        layer is a private copy (about 7 MB for all-MiniLM-L6-v2).
        """
        if self.adapter is not None:
            raise encoder_failed(self.path, "this encoder has an adapter merged already; adapt the encoder as loaded")
        left = dict(adapter)
        layers = []

        def take(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
            value = left.pop(name, None)
            if value is not None and value.shape != shape:
                raise encoder_failed(self.path, f"adapter tensor {name} has shape {value.shape}, the encoder's is {shape}")
            return None if value is None else np.asarray(value, dtype=np.float32)

        for i, layer in enumerate(self._layers):
            changes: dict[str, object] = {}
            for field in dataclasses.fields(_Layer):
                name, value = f"layer.{i}.{field.name}", getattr(layer, field.name)
                if isinstance(value, tuple):  # a norm: weight and bias
                    weight, bias = (take(f"{name}.{part}", value[0].shape) for part in ("weight", "bias"))
                    if weight is not None or bias is not None:
                        changes[field.name] = (value[0] if weight is None else weight, value[1] if bias is None else bias)
                elif value.ndim == 2:
                    a, b = left.pop(f"{name}.a", None), left.pop(f"{name}.b", None)
                    if (a is None) != (b is None):
                        raise encoder_failed(self.path, f"adapter has only one factor of {name}")
                    if a is not None:
                        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != value.shape[0] or b.shape != (a.shape[1], value.shape[1]):
                            raise encoder_failed(self.path, f"adapter factors of {name} do not fit its shape {value.shape}")
                        changes[field.name] = value + np.asarray(a, np.float32) @ np.asarray(b, np.float32)
                else:
                    vector = take(name, value.shape)
                    if vector is not None:
                        changes[field.name] = vector
            layers.append(dataclasses.replace(layer, **changes) if changes else layer)
        if left:
            raise encoder_failed(self.path, f"adapter tensors this encoder has no place for: {', '.join(sorted(left)[:3])}")
        twin = copy.copy(self)
        twin._layers = tuple(layers)
        twin.adapter = adapter
        return twin

    def embed(self, text: str) -> np.ndarray:
        """The unit-length embedding of one text (float32, ``dimensions`` long)."""
        return self.embed_many([text])[0]

    def read(self, words: Sequence[str]) -> Reading:
        """One forward pass over ``words`` (an utterance already split into
        words): the text's embedding, as :meth:`embed` gives it for
        ``" ".join(words)``, and a unit-length vector per word (the mean of
        its word pieces' last hidden states): what the word means in this text."""
        return self.read_many([words])[0]

    def read_many(self, texts: Sequence[Sequence[str]]) -> list[Reading]:
        """:meth:`read` for several texts in one batch (padding masked out).
        A word past the encoder's length gets what is left of it: the mean of
        its pieces that fit, or zeros when none does."""
        if not texts:
            return []
        rows = [self.tokenizer.encode_words(words, self.max_length) for words in texts]
        width = max(len(ids) for ids, _ in rows)
        tokens = np.full((len(rows), width), self.tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.float32)
        for row, (ids, _) in enumerate(rows):
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        hidden = self._forward(tokens, mask)
        out = []
        for row, (words, (ids, owner)) in enumerate(zip(texts, rows)):
            states = hidden[row, : len(ids)]
            pooled = states.mean(axis=0)
            vectors = np.zeros((len(words), self.dimensions), np.float32)
            counts = np.zeros(len(words), np.float32)
            owners = np.array(owner, dtype=np.int64)
            np.add.at(vectors, owners, states[1:1 + len(owners)])
            np.add.at(counts, owners, 1.0)
            vectors /= np.maximum(counts, 1.0)[:, None]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out.append(Reading(pooled / max(float(np.linalg.norm(pooled)), 1e-12), vectors))
        return out

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of several texts in one batch (padded; padding is masked out)."""
        if not texts:
            return np.zeros((0, self.dimensions), np.float32)
        tokens, mask = self.batch(texts)
        hidden = self._forward(tokens, mask)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Word-piece ids ``[texts, width]`` padded to the longest, and the mask (1 for a real piece)."""
        ids = [self.tokenizer.encode(text, self.max_length) for text in texts]
        width = max(len(row) for row in ids)
        tokens = np.full((len(ids), width), self.tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.float32)
        for row, sequence in enumerate(ids):
            tokens[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1.0
        return tokens, mask

    def _forward(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, width = tokens.shape
        heads, size = self.heads, self.dimensions // self.heads
        x = self._words[tokens] + self._positions[:width] + self._segment
        x = _layer_norm(x, *self._embedding_norm, self.eps)
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :]  # padding gets no attention
        scale = np.float32(1.0 / math.sqrt(size))
        for layer in self._layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            q, k, v = (qkv[..., i * self.dimensions:(i + 1) * self.dimensions].reshape(batch, width, heads, size).transpose(0, 2, 1, 3)
                       for i in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, self.dimensions)
            x = _layer_norm(x + context @ layer.attention_out + layer.attention_out_bias, *layer.attention_norm, self.eps)
            x = _layer_norm(x + _gelu(x @ layer.up + layer.up_bias) @ layer.down + layer.down_bias, *layer.output_norm, self.eps)
        return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (within 1e-3 of the exact erf form; cubes by multiplying: ``x**3`` is 200x slower in float32)."""
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)))
