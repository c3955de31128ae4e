"""Tuning the sentence encoder to the semantic stage's task (training time only; needs torch).

A frozen encoder with a linear head saturated: more training lines stopped
moving first-sight recall (calm outrageous demands above all). Here the top
``LAYERS`` transformer layers of the encoder learn too, through low-rank
corrections (LoRA: each matrix ``M`` becomes ``M + a @ b``, ``a`` and ``b`` of
rank ``RANK``) and their own biases and norms, together with the head.
Trained without rounds 13 to 16 of the held-out set and scored on them, this
raised the full detector's recall by 4 to 14 points per category (demand 54
to 68 of 80) for the same benign flags (6 of 240); every layer tuned in full
did no better.

The result is an adapter, a few hundred thousand numbers that
``models.encoder.SentenceEncoder.adapted`` merges into the encoder at load
time: no torch at run time, and the same speed.

:class:`Twin` is the encoder's forward pass in torch, built from a loaded
:class:`models.encoder.SentenceEncoder`, so both run the same weights and
the same arithmetic (tanh GELU, mean pooling, unit length);
``tests/detection/test_semantic_tuning.py`` checks that they agree, before and
after tuning, adapter merged. Training is deterministic:
one thread, fixed seeds, batches of similar length in a seeded order.
"""

from __future__ import annotations

import math
import random
import sys
import time
from typing import Sequence

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("tuning the encoder needs torch, at training time only: "
             ".venv/bin/pip install torch==2.13.0 (or train the head alone with --tune-layers 0)")

from models.encoder import SentenceEncoder

LAYERS = 3  # the top layers tuned
RANK = 16
ALPHA = 2.0  # corrections are scaled by ALPHA / RANK
EPOCHS = 3
RATE = 1e-3  # adapter and head, AdamW, linear warm-up over a tenth of the steps then linear decay
BATCH = 32
SEED = 3  # the shipped stage's: round 17 of issue 11 shipped its first-named seed (docs/detection-quality.md)
MATRICES = ("qkv", "attention_out", "up", "down")
VECTORS = ("qkv_bias", "attention_out_bias", "up_bias", "down_bias")
NORMS = ("attention_norm", "output_norm")


class _TwinLayer(nn.Module):
    def __init__(self, layer) -> None:
        super().__init__()
        for name in MATRICES + VECTORS:
            self.register_parameter(name, nn.Parameter(torch.tensor(np.array(getattr(layer, name))), requires_grad=False))
        for name in NORMS:
            weight, bias = getattr(layer, name)
            self.register_parameter(name + "_weight", nn.Parameter(torch.tensor(np.array(weight)), requires_grad=False))
            self.register_parameter(name + "_bias", nn.Parameter(torch.tensor(np.array(bias)), requires_grad=False))
        self.rank = 0

    def adapt(self, rank: int, generator: torch.Generator) -> None:
        """Low-rank corrections for the matrices (``b`` starts at zero: no change);
        biases and norms learn in full."""
        self.rank = rank
        for name in MATRICES:
            inputs, outputs = getattr(self, name).shape
            self.register_parameter(name + "_a", nn.Parameter(torch.randn(inputs, rank, generator=generator) / math.sqrt(inputs)))
            self.register_parameter(name + "_b", nn.Parameter(torch.zeros(rank, outputs)))
        for name in VECTORS + tuple(n + part for n in NORMS for part in ("_weight", "_bias")):
            getattr(self, name).requires_grad = True

    def matrix(self, name: str) -> torch.Tensor:
        base = getattr(self, name)
        if not self.rank:
            return base
        return base + getattr(self, name + "_a") @ getattr(self, name + "_b") * (ALPHA / self.rank)

    def adapter(self, index: int) -> dict[str, np.ndarray]:
        """This layer's part of the adapter, in ``SentenceEncoder.adapted``'s names (the scale folded into ``b``)."""
        out: dict[str, np.ndarray] = {}
        grab = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
        for name in MATRICES:
            out[f"layer.{index}.{name}.a"] = grab(getattr(self, name + "_a"))
            out[f"layer.{index}.{name}.b"] = grab(getattr(self, name + "_b") * (ALPHA / self.rank))
        for name in VECTORS:
            out[f"layer.{index}.{name}"] = grab(getattr(self, name))
        for name in NORMS:
            out[f"layer.{index}.{name}.weight"] = grab(getattr(self, name + "_weight"))
            out[f"layer.{index}.{name}.bias"] = grab(getattr(self, name + "_bias"))
        return out


class Twin(nn.Module):
    """The encoder's forward pass in torch, on its weights."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.words = torch.tensor(np.array(encoder._words))
        self.positions = torch.tensor(np.array(encoder._positions))
        self.segment = torch.tensor(np.array(encoder._segment))
        self.norm = tuple(torch.tensor(np.array(v)) for v in encoder._embedding_norm)
        self.layers = nn.ModuleList(_TwinLayer(layer) for layer in encoder._layers)
        self.width, self.heads, self.eps = encoder.dimensions, encoder.heads, encoder.eps

    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, mask = self.encoder.batch(texts)
        return torch.from_numpy(tokens), torch.from_numpy(mask)

    def lower(self, tokens: torch.Tensor, mask: torch.Tensor, upto: int) -> torch.Tensor:
        """Hidden states after the first ``upto`` layers."""
        x = self.words[tokens] + self.positions[: tokens.shape[1]] + self.segment
        x = F.layer_norm(x, (self.width,), *self.norm, self.eps)
        for layer in self.layers[:upto]:
            x = self._layer(layer, x, mask)
        return x

    def upper(self, x: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Unit-length sentence embeddings from the hidden states before layer ``start``."""
        for layer in self.layers[start:]:
            x = self._layer(layer, x, mask)
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(pooled, dim=1)

    def _layer(self, layer: _TwinLayer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, width, _ = x.shape
        size = self.width // self.heads
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :]
        qkv = x @ layer.matrix("qkv") + layer.qkv_bias
        q, k, v = (qkv[..., i * self.width:(i + 1) * self.width].reshape(batch, width, self.heads, size).transpose(1, 2)
                   for i in range(3))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(size) + blocked, dim=-1)
        context = (attention @ v).transpose(1, 2).reshape(batch, width, self.width)
        x = F.layer_norm(x + context @ layer.matrix("attention_out") + layer.attention_out_bias, (self.width,),
                         layer.attention_norm_weight, layer.attention_norm_bias, self.eps)
        hidden = F.gelu(x @ layer.matrix("up") + layer.up_bias, approximate="tanh")
        return F.layer_norm(x + hidden @ layer.matrix("down") + layer.down_bias, (self.width,),
                            layer.output_norm_weight, layer.output_norm_bias, self.eps)


def tune(encoder: SentenceEncoder, texts: Sequence[str], labels: np.ndarray, class_weight: np.ndarray,
         weights: np.ndarray, bias: np.ndarray, l2: float, *, layers: int = LAYERS, epochs: int = EPOCHS,
         seed: int = SEED) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Tune the top ``layers`` of ``encoder`` and the head (starting from the
    frozen-encoder head ``weights``, ``bias``) on ``texts`` (normalized words)
    and their class ``labels``, cross-entropy weighted per class by
    ``class_weight``, the head's weights L2-penalized by ``l2`` as in the
    frozen fit. ``seed`` draws the corrections' starting values and the order
    of the batches (the shipped stage: :data:`SEED`). Returns ``(adapter, weights, bias)``."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    twin = Twin(encoder)
    start = len(twin.layers) - layers
    generator = torch.Generator().manual_seed(seed)
    for layer in twin.layers[start:]:
        layer.adapt(RANK, generator)
    head = nn.Linear(weights.shape[1], weights.shape[0])
    head.weight.data = torch.tensor(weights, dtype=torch.float32)
    head.bias.data = torch.tensor(bias, dtype=torch.float32)
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    started = time.perf_counter()
    cache = []
    with torch.no_grad():  # the layers below the tuned ones never change: run them once
        for batch in batches:
            tokens, mask = twin.tokens([texts[i] for i in batch])
            cache.append((twin.lower(tokens, mask, start), mask, torch.tensor(labels[batch])))
    print(f"  lower layers run over {len(texts)} lines ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    trained = [p for p in twin.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": trained, "weight_decay": 0.01},
                                   {"params": head.parameters(), "weight_decay": 0.0}], lr=RATE)
    steps = epochs * len(cache)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / (0.1 * steps)) * max(0.0, (steps - step) / steps))
    weight_of = torch.tensor(class_weight, dtype=torch.float32)
    shuffle = random.Random(seed)
    for epoch in range(epochs):
        sequence = list(range(len(cache)))
        shuffle.shuffle(sequence)
        total = 0.0
        for i in sequence:
            hidden, mask, y = cache[i]
            logits = head(twin.upper(hidden, mask, start))
            loss = F.cross_entropy(logits, y, weight=weight_of, reduction="sum") / weight_of[y].sum()
            loss = loss + 0.5 * l2 * (head.weight ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(cache):.4f} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    adapter: dict[str, np.ndarray] = {}
    for index in range(start, len(twin.layers)):
        adapter.update(twin.layers[index].adapter(index))
    return adapter, head.weight.detach().numpy().astype(np.float32), head.bias.detach().numpy().astype(np.float32)
