"""BERT's uncased WordPiece tokenizer, as the sentence encoder (:mod:`models.encoder`) reads text.

Lowercase, strip accents, split off punctuation, then greedy longest-match
word pieces from the model's ``vocab.txt`` (``##`` marks a continuation),
exactly as the tokenizer the model was trained with.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Sequence

from models.errors import encoder_failed

_MAX_WORD_CHARS = 100  # longer "words" are one [UNK], as in BERT's tokenizer


class WordPiece:
    """BERT's uncased tokenizer: lowercase, strip accents, split off punctuation,
    then greedy longest-match word pieces (``##`` marks a continuation)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.ids = {piece: i for i, piece in enumerate(vocab)}
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in self.ids:
                raise ValueError(f"vocabulary lacks {special}")
        self.cls, self.sep, self.unk, self.pad = (self.ids[s] for s in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"))

    @classmethod
    def load(cls, path: Path) -> "WordPiece":
        try:
            vocab = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise encoder_failed(path.parent, f"cannot read vocab.txt: {exc}") from exc
        if vocab and vocab[-1] == "":
            vocab.pop()
        try:
            return cls(vocab)
        except ValueError as exc:
            raise encoder_failed(path.parent, str(exc)) from exc

    def words(self, text: str) -> list[str]:
        """The basic tokenizer: lowercase words without accents, each punctuation mark its own word."""
        text = unicodedata.normalize("NFD", text.lower())
        out: list[str] = []
        current: list[str] = []
        for ch in text:
            category = unicodedata.category(ch)
            if category == "Mn":
                continue  # a combining accent
            if ch.isspace() or category.startswith("C"):
                if current:
                    out.append("".join(current))
                    current = []
            elif category.startswith("P") or (ch.isascii() and not ch.isalnum()):
                if current:
                    out.append("".join(current))
                    current = []
                out.append(ch)
            else:
                current.append(ch)
        if current:
            out.append("".join(current))
        return out

    def pieces(self, word: str) -> list[int]:
        if len(word) > _MAX_WORD_CHARS:
            return [self.unk]
        out: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.ids.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            out.append(found)
            start = end
        return out

    def encode(self, text: str, max_length: int) -> list[int]:
        """``[CLS]`` + the text's word pieces (cut to fit) + ``[SEP]``."""
        return self.encode_words([text], max_length)[0]

    def encode_words(self, words: Sequence[str], max_length: int) -> tuple[list[int], list[int]]:
        """``[CLS]`` + the word pieces of ``words`` (each through the basic
        tokenizer, cut to fit) + ``[SEP]``, and for each piece after ``[CLS]``
        the index of the word it came from."""
        ids: list[int] = []
        owner: list[int] = []
        for index, word in enumerate(words):
            for basic in self.words(word):
                pieces = self.pieces(basic)
                ids += pieces
                owner += [index] * len(pieces)
        return [self.cls] + ids[: max_length - 2] + [self.sep], owner[: max_length - 2]
