"""The memorisation guard: is a draft a copy of an article its adapter was trained on, or of a stored one?

A small model fine-tuned on a small archive can reproduce it. Two signals, both cheap:

* **verbatim overlap**: the draft's word 8-grams (lower-cased words, punctuation dropped) looked up among the
  hashed 8-grams of the corpus: the longest run of words copied in a row, and the share of the draft's
  8-grams found there;
* **embedding similarity**: the cosine between the draft's MiniLM vector and each corpus article's (the
  vectors ``worker.lab.training`` keeps in ``corpus_features.safetensors``).

A draft is **too close** to its style's corpus when it copies a long run verbatim (``max_copied_words``),
or when it is both very similar to one corpus article in meaning (``max_corpus_similarity``) and shares a
clear part of its 8-grams with the corpus (``max_copied_share``); all three are style targets. Similarity
alone only says "same topic", which a brief may well ask for. The ``memorisation`` gate fails then, and the
pipeline regenerates as for any failing gate.

Each adapter version keeps its corpus's 8-gram hashes in ``corpus_ngrams.safetensors`` (written by training;
no text, ~8 bytes per word). A version trained before the file existed is "not measured".

Articles already in the store are compared by 8-gram share too (:class:`StoredArticles`): a new article
that shares ``DUPLICATE_SHARE`` of its 8-grams with a stored article of the same style is flagged in its
scorecard (``near_duplicate``, informational), not blocked: an editor decides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.scoring.scores import Score
from worker.styles.layout import FEATURES_FILE, NGRAMS_FILE

if TYPE_CHECKING:
    from worker.store import Store
    from worker.styles.catalog import Targets

logger = logging.getLogger(__name__)

NGRAM_WORDS = 8
NEAR_DUPLICATE = "near_duplicate"  # the scorecard entry written at store time (informational)
DUPLICATE_SHARE = 0.5  # share of a new article's 8-grams found in one stored article that flags it
STORED_ARTICLES_COMPARED = 200  # newest articles of the style that a new article is compared with
NGRAM_SETS_CACHED = 2048  # texts whose 8-gram sets a process keeps (10 styles' newest 200; ~20 KB a long article)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True)
class GuardLimits:
    """When a draft counts as a copy of its corpus (a style's ``targets`` set them; defaults 40, 0.9, 0.2)."""

    max_copied_words: int  # a verbatim run this long (words) is a copy, whatever else
    max_similarity: float  # cosine to one corpus article ...
    max_copied_share: float  # ... together with this share of the draft's 8-grams found in the corpus


@dataclass(frozen=True)
class Closeness:
    """How close one draft is to a corpus."""

    copied_words: int  # longest run of words found verbatim (0 when no 8-gram matches)
    copied_share: float  # share of the draft's 8-grams found in the corpus
    similarity: float | None  # highest cosine to a corpus article (None: not measured)
    nearest: str | None  # id of that article

    def too_close(self, limits: GuardLimits) -> bool:
        if self.copied_words >= limits.max_copied_words:
            return True
        similar = self.similarity is not None and self.similarity >= limits.max_similarity
        return similar and self.copied_share >= limits.max_copied_share

    def describe(self) -> str:
        parts = [f"longest verbatim run {self.copied_words} words", f"{self.copied_share:.0%} of 8-grams copied"]
        if self.similarity is not None:
            parts.append(f"similarity {self.similarity:.2f} to {self.nearest}")
        return ", ".join(parts)


def ngram_hashes(text: str, n: int = NGRAM_WORDS) -> np.ndarray:
    """The text's word ``n``-grams in order, each as a stable signed 64-bit hash (blake2b)."""
    tokens = [word.lower() for word in _WORD.findall(text)]
    return np.asarray([_hash(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)], dtype=np.int64)


def _hash(ngram: str) -> int:
    return int.from_bytes(hashlib.blake2b(ngram.encode(), digest_size=8).digest(), "big", signed=True)


def longest_run(matched: np.ndarray) -> int:
    """Length of the longest run of ``True`` in a boolean array."""
    flags = np.asarray(matched, dtype=bool).ravel()
    if not flags.any():
        return 0
    edges = np.diff(np.concatenate(([0], flags.view(np.int8), [0])))  # +1 where a run starts, -1 after it ends
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def found_in(hashes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``np.isin(hashes, known)`` for ``known`` sorted and unique (a corpus index): a binary search per hash,
    without sorting the corpus again for every draft."""
    if not len(known):
        return np.zeros(len(hashes), dtype=bool)
    at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
    return known[at] == hashes


def _closeness_to(hashes: np.ndarray, known: np.ndarray) -> tuple[int, float]:
    if not len(hashes) or not len(known):
        return 0, 0.0
    matched = found_in(hashes, known)
    run = longest_run(matched)
    return (run + NGRAM_WORDS - 1 if run else 0), float(matched.mean())


@dataclass(frozen=True)
class CorpusIndex:
    """The 8-gram hashes of the articles an adapter was trained on, and their embeddings when known."""

    hashes: np.ndarray  # sorted, unique int64 (made so when given otherwise): the guard's binary searches
    ids: tuple[str, ...] = ()
    embeddings: np.ndarray | None = None  # one normalised row per id

    def __post_init__(self) -> None:
        hashes = np.asarray(self.hashes, dtype=np.int64)
        if len(hashes) > 1 and not bool((hashes[1:] > hashes[:-1]).all()):
            hashes = np.unique(hashes)
        object.__setattr__(self, "hashes", hashes)

    @classmethod
    def build(cls, texts: Sequence[str]) -> CorpusIndex:
        parts = [ngram_hashes(text) for text in texts]
        return cls(np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64))

    def save(self, path: Path) -> None:
        import torch
        from safetensors.torch import save_file

        save_file({"hashes": torch.from_numpy(self.hashes)}, str(path), metadata={"ngram_words": str(NGRAM_WORDS)})

    @classmethod
    def load(cls, directory: Path) -> CorpusIndex | None:
        """The index of the adapter version in ``directory``; ``None`` when it has none (older versions)."""
        from safetensors.numpy import load_file

        path = directory / NGRAMS_FILE
        if not path.is_file():
            return None
        hashes = load_file(str(path))["hashes"]
        ids: tuple[str, ...] = ()
        embeddings = None
        features = directory / FEATURES_FILE
        if features.is_file():
            from safetensors import safe_open

            with safe_open(str(features), framework="numpy") as handle:
                ids = tuple(json.loads((handle.metadata() or {}).get("ids", "[]")))
                embeddings = handle.get_tensor("embeddings").astype(np.float32)
        return cls(np.unique(hashes), ids, embeddings if len(ids) else None)

    def closeness(self, text: str, embedding: np.ndarray | None = None) -> Closeness:
        """How close ``text`` (with its normalised embedding, when measured) is to this corpus."""
        copied_words, copied_share = _closeness_to(ngram_hashes(text), self.hashes)
        similarity, nearest = None, None
        if embedding is not None and self.embeddings is not None and len(self.embeddings):
            cosines = self.embeddings @ np.asarray(embedding, dtype=np.float32)
            best = int(cosines.argmax())
            similarity, nearest = round(float(cosines[best]), 4), self.ids[best]
        return Closeness(copied_words, round(copied_share, 4), similarity, nearest)


class CorpusIndexes:
    """Corpus indexes of adapter versions, loaded once per directory."""

    def __init__(self) -> None:
        self._loaded: dict[Path, CorpusIndex | None] = {}

    def get(self, directory: Path | None) -> CorpusIndex | None:
        if directory is None:
            return None
        if directory not in self._loaded:
            try:
                self._loaded[directory] = CorpusIndex.load(directory)
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("memorisation guard off for %s: cannot read its corpus index: %s", directory, exc)
                self._loaded[directory] = None
        return self._loaded[directory]


@dataclass(frozen=True)
class Duplicate:
    article_id: str
    title: str
    share: float


@lru_cache(maxsize=NGRAM_SETS_CACHED)
def ngram_set(text: str) -> np.ndarray:
    """``text``'s distinct 8-gram hashes, sorted (8 bytes each), cached per process: a worker compares every new
    article with the same stored ones task after task, and hashes each stored text once (an edited text is
    another key). Read-only: callers must not change the array."""
    hashes = np.unique(ngram_hashes(text))
    hashes.flags.writeable = False
    return hashes


class StoredArticles:
    """Stored articles of each style, as 8-gram sets, for flagging near-duplicates of new articles."""

    def __init__(self, store: Store, limit: int = STORED_ARTICLES_COMPARED) -> None:
        self.store = store
        self.limit = limit
        self._by_style: dict[str, list[tuple[str, str, str, np.ndarray]]] = {}

    def _articles(self, style: str) -> list[tuple[str, str, str, np.ndarray]]:
        if style not in self._by_style:
            self._by_style[style] = [
                (a.id, a.brief_id, a.title, ngram_set(a.body_markdown))
                for a in self.store.recent_article_texts(style=style, limit=self.limit)
            ]
        return self._by_style[style]

    def nearest(self, style: str, brief_id: str, text: str) -> Duplicate | None:
        """The stored article of ``style`` (other than this brief's own) sharing most of ``text``'s 8-grams."""
        hashes = ngram_set(text)
        if not len(hashes):
            return None
        best: Duplicate | None = None
        for article_id, other_brief, title, known in self._articles(style):
            if other_brief == brief_id:
                continue
            share = int(found_in(hashes, known).sum()) / len(hashes)
            if best is None or share > best.share:
                best = Duplicate(article_id, title, round(share, 4))
        return best

    def add(self, style: str, article_id: str, brief_id: str, title: str, text: str) -> None:
        """Remember an article just stored, so later ones in the same run are compared with it too."""
        self._articles(style).insert(0, (article_id, brief_id, title, ngram_set(text)))


def near_duplicate_score(duplicate: Duplicate | None) -> dict[str, Any]:
    """The scorecard entry (``Score.to_dict`` shape) for the nearest stored article."""
    if duplicate is None:
        return {"value": 0.0, "low": 0.0, "high": 1.0, "passed": True, "detail": "no stored article to compare"}
    flagged = duplicate.share >= DUPLICATE_SHARE
    detail = (
        f"{duplicate.share:.0%} of its 8-grams are in stored article {duplicate.article_id} ({duplicate.title!r})"
        + ("; near-duplicate" if flagged else "")
    )
    return {"value": duplicate.share, "low": 0.0, "high": 1.0, "passed": not flagged, "detail": detail}


def guard_limits(targets: Targets) -> GuardLimits:
    return GuardLimits(targets.max_copied_words, targets.max_corpus_similarity, targets.max_copied_share)


def memorisation_score(closeness: Closeness | None, limits: GuardLimits) -> Score:
    """The memorisation gate: fails when the draft is too close to its adapter's training corpus."""
    if closeness is None:
        return Score("memorisation", 0.0, 0.0, 1.0, True, "not measured (no corpus index for this adapter version)")
    too_close = closeness.too_close(limits)
    verdict = "too close to the training corpus" if too_close else "not a copy"
    return Score("memorisation", closeness.copied_share, 0.0, 1.0, not too_close, f"{verdict}: {closeness.describe()}")
