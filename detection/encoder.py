"""The sentence encoder the semantic stage and word senses need, as a protocol.

Detection does not load models: the command line (``cli.settings.Settings.detector``)
or a bench script loads one (:class:`models.encoder.SentenceEncoder` satisfies
this protocol) and hands it to :class:`~detection.detector.Detector`. A test may
hand in anything with these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np


class Reading(Protocol):
    """One text as the encoder reads it.

    Attributes:
        embedding: the text's unit-length embedding, float32, ``[dimensions]``.
        words: float32 ``[words, dimensions]``: each word's unit-length vector
            in context (zero for a word past the encoder's length).
    """

    embedding: np.ndarray
    words: np.ndarray


class Encoder(Protocol):
    """A loaded sentence encoder; immutable, shared by every call and thread.

    Attributes:
        name: the encoder's name (its folder name), for messages.
        path: where it was loaded from, for messages.
        dimensions: length of an embedding.
        adapter: the adaptation merged into it (:meth:`adapted`), or None.
    """

    name: str
    path: Path
    dimensions: int
    adapter: Mapping[str, np.ndarray] | None

    def embed(self, text: str) -> np.ndarray:
        """The unit-length embedding of one text: float32, ``[dimensions]``."""
        ...

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of several texts in one batch: float32, ``[texts, dimensions]`` (``[0, dimensions]`` for none)."""
        ...

    def read(self, words: Sequence[str]) -> Reading:
        """One forward pass over an utterance already split into ``words``: its
        embedding (as :meth:`embed` gives it for ``" ".join(words)``) and each word's vector in context."""
        ...

    def read_many(self, texts: Sequence[Sequence[str]]) -> list[Reading]:
        """:meth:`read` for several word lists in one batch."""
        ...

    def adapted(self, adapter: Mapping[str, np.ndarray]) -> "Encoder":
        """A new encoder with a trained adaptation (tensors by name, as read from
        ``semantic_adapter.safetensors``) merged in; this one is unchanged. An
        adapter that does not fit this encoder is a
        :class:`~kernel.errors.CallshieldError` whose message names the tensor."""
        ...
