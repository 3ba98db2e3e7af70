"""Stylometry: the measurable voice of a text, and the profile of a whole corpus of texts.

One feature vector per Markdown text, built from the scoring stage's own measurements (readability, grade,
sentiment, formality: :mod:`worker.scoring.scorecard`) plus a few shape and voice cues (sentence length, lists,
headings, second person, exclamations). A corpus *profile* summarises those features (mean, spread,
percentiles) and becomes a style's default targets (:func:`targets_from_profile`) and the reference that
evaluation measures generated drafts against (:mod:`worker.lab.evaluation`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.scoring.markdown import parse_blocks, strip_markdown
from worker.scoring.readability import readability_scores
from worker.scoring.text import count_text, sentences, words
from worker.scoring.tone import formality_value, sentiment_value
from worker.styles.catalog import Targets

FEATURE_NAMES = (
    "reading_ease",
    "grade",
    "sentiment",
    "formality",
    "words_per_sentence",
    "syllables_per_word",
    "list_share",
    "headings_per_100_words",
    "second_person",
    "first_person",
    "exclamations",
    "questions",
)
"""Stylometric features, in the order of :func:`feature_vector`."""

_SECOND_PERSON = frozenset({"you", "your", "yours", "yourself", "yourselves", "you're", "you'll", "you've"})
_FIRST_PERSON = frozenset({"i", "me", "my", "mine", "we", "us", "our", "ours", "i'm", "i've", "we're", "i'll"})

# How far the default targets reach beyond the corpus's 10th..90th percentiles, and the metric's own bounds.
_TARGET_MARGINS = {"reading_ease": 5.0, "grade": 1.0, "sentiment": 0.1, "formality": 0.05}
_TARGET_BOUNDS = {
    "reading_ease": (-100.0, 121.22),
    "grade": (-3.4, 30.0),
    "sentiment": (-1.0, 1.0),
    "formality": (0.0, 1.0),
}


def text_features(markdown: str, language: str = "en") -> dict[str, float]:
    """The stylometric features of one Markdown text (see :data:`FEATURE_NAMES`)."""
    blocks = parse_blocks(markdown)
    prose = [block.text for block in blocks if block.kind in ("paragraph", "item")]
    counts = count_text(prose, language)
    readability = {score.name: score.value for score in readability_scores(counts, Targets(), language)}
    text = strip_markdown(markdown)
    tokens = [token.lower().replace("’", "'") for token in words(text)]
    n_words = max(1, len(tokens))
    prose_sentences = sentences(prose)
    n_sentences = max(1, len(prose_sentences))
    items = sum(1 for block in blocks if block.kind == "item")
    headings = sum(1 for block in blocks if block.kind == "heading")
    return {
        "reading_ease": float(readability["readability"]),
        "grade": float(readability["grade"]),
        "sentiment": float(sentiment_value(prose_sentences)),
        "formality": float(formality_value("\n".join(prose))),
        "words_per_sentence": float(counts.words_per_sentence),
        "syllables_per_word": float(counts.syllables_per_word),
        "list_share": items / max(1, len(prose)),
        "headings_per_100_words": 100.0 * headings / n_words,
        "second_person": 100.0 * sum(1 for t in tokens if t in _SECOND_PERSON) / n_words,
        "first_person": 100.0 * sum(1 for t in tokens if t in _FIRST_PERSON) / n_words,
        "exclamations": sum(s.rstrip("\"'”’)]").endswith("!") for s in prose_sentences) / n_sentences,
        "questions": sum(s.rstrip("\"'”’)]").endswith("?") for s in prose_sentences) / n_sentences,
    }


# ------------------------------------------------------------------------------------------- voice features

FUNCTION_WORDS = (
    "the", "a", "an", "and", "but", "or", "so", "of", "in", "on", "at", "to", "for", "with", "by", "from",
    "as", "into", "than", "then", "that", "this", "these", "those", "which", "who", "what", "when", "where",
    "while", "because", "if", "although", "however", "therefore", "thus", "is", "are", "was", "be", "been",
    "can", "will", "would", "should", "must", "may", "it", "its", "they", "their", "there", "here", "not",
    "no", "all", "each", "every", "more", "most", "very", "just", "really", "also", "only", "even", "too",
    "up", "out", "about",
)  # fmt: skip
"""Topic-neutral words whose rates are a classic authorship signal (they carry voice, not subject matter)."""

VOICE_EXTRA_NAMES = (
    "chars_per_word",
    "commas_per_sentence",
    "colons_per_100_words",
    "semicolons_per_100_words",
    "parentheses_per_100_words",
    "dashes_per_100_words",
    "contractions_per_100_words",
    "numbers_per_100_words",
)

VOICE_FEATURE_NAMES = (
    *FEATURE_NAMES,
    *VOICE_EXTRA_NAMES,
    *(f"fw_{word}" for word in FUNCTION_WORDS),
)
"""Voice features, in the order of :func:`voice_matrix`: the stylometric features, punctuation and word-shape
rates, and the rate (per 100 words) of each function word. None of them names a subject: two texts on the same
topic in different voices differ here, two texts on different topics in the same voice should not."""

_CONTRACTION = re.compile(r"[a-z]'(?:s|t|re|ll|ve|m|d)$")
_DASH = re.compile(r"\s[-\u2013\u2014]\s|\u2014|--")


def voice_features(markdown: str, language: str = "en") -> dict[str, float]:
    """The voice features of one Markdown text (see :data:`VOICE_FEATURE_NAMES`)."""
    base = text_features(markdown, language)
    blocks = parse_blocks(markdown)
    prose = "\n".join(block.text for block in blocks if block.kind in ("paragraph", "item"))
    tokens = [token.lower().replace("\u2019", "'") for token in words(strip_markdown(markdown))]
    n_words = max(1, len(tokens))
    n_sentences = max(1, len(sentences([block.text for block in blocks if block.kind in ("paragraph", "item")])))
    per_100 = 100.0 / n_words
    counts = Counter(tokens)
    extra = {
        "chars_per_word": sum(len(t) for t in tokens) / n_words,
        "commas_per_sentence": prose.count(",") / n_sentences,
        "colons_per_100_words": prose.count(":") * per_100,
        "semicolons_per_100_words": prose.count(";") * per_100,
        "parentheses_per_100_words": prose.count("(") * per_100,
        "dashes_per_100_words": len(_DASH.findall(prose)) * per_100,
        "contractions_per_100_words": sum(1 for t in tokens if _CONTRACTION.search(t)) * per_100,
        "numbers_per_100_words": sum(1 for t in tokens if t[:1].isdigit()) * per_100,
    }
    words_rates = {f"fw_{word}": counts[word] * per_100 for word in FUNCTION_WORDS}
    return {**base, **extra, **words_rates}


def voice_matrix(markdowns: Sequence[str], language: str = "en") -> np.ndarray:
    """Shape ``(len(markdowns), len(VOICE_FEATURE_NAMES))``."""
    if not markdowns:
        return np.zeros((0, len(VOICE_FEATURE_NAMES)))
    rows = [voice_features(text, language) for text in markdowns]
    return np.array([[row[name] for name in VOICE_FEATURE_NAMES] for row in rows], dtype=np.float64)


def feature_vector(features: dict[str, float]) -> np.ndarray:
    return np.array([features[name] for name in FEATURE_NAMES], dtype=np.float64)


def feature_matrix(markdowns: Sequence[str], language: str = "en") -> np.ndarray:
    """Shape ``(len(markdowns), len(FEATURE_NAMES))``."""
    if not markdowns:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([feature_vector(text_features(text, language)) for text in markdowns])


def word_count(markdown: str) -> int:
    return len(words(strip_markdown(markdown)))


def _summary(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    p10, p50, p90 = (float(v) for v in np.percentile(array, [10, 50, 90]))
    return {
        "mean": round(float(array.mean()), 4),
        "std": round(float(array.std()), 4),
        "min": round(float(array.min()), 4),
        "p10": round(p10, 4),
        "median": round(p50, 4),
        "p90": round(p90, 4),
        "max": round(float(array.max()), 4),
    }


LENGTH_BINS = (0, 100, 200, 300, 400, 600, 800, 1200, 2000)


def length_histogram(lengths: Sequence[int]) -> list[dict[str, Any]]:
    """Counts of texts per word-count bin (the last bin is open-ended)."""
    bins: list[dict[str, Any]] = []
    edges = [*LENGTH_BINS, math.inf]
    for low, high in itertools.pairwise(edges):
        label = f"{low}+" if high == math.inf else f"{low}-{int(high) - 1}"
        bins.append({"words": label, "count": sum(1 for n in lengths if low <= n < high)})
    return bins


def profile_texts(markdowns: Sequence[str], language: str = "en") -> dict[str, Any]:
    """The profile of a set of texts: count, length distribution and a summary of every feature."""
    if not markdowns:
        raise ValueError("cannot profile an empty set of texts")
    matrix = feature_matrix(markdowns, language)
    lengths = [word_count(text) for text in markdowns]
    return {
        "texts": len(markdowns),
        "language": language,
        "words": _summary(lengths),
        "length_histogram": length_histogram(lengths),
        "features": {name: _summary(matrix[:, i].tolist()) for i, name in enumerate(FEATURE_NAMES)},
    }


def targets_from_profile(profile: dict[str, Any]) -> dict[str, Any]:
    """Default style targets from a corpus profile.

    Readability, grade, sentiment and formality: the corpus's 10th..90th percentiles widened by a small
    margin (5 points of reading ease, 1 grade, 0.1 sentiment, 0.05 formality) and clipped to the metric's
    range. Length: ``length_tolerance`` covers the corpus's own spread of lengths around its median
    (``max(median/p10 - 1, p90/median - 1)``, between 0.3 and 1.0); briefs keep their own ``target_words``.
    """
    features = profile["features"]
    targets: dict[str, Any] = {}
    for name, margin in _TARGET_MARGINS.items():
        low_bound, high_bound = _TARGET_BOUNDS[name]
        low = max(low_bound, features[name]["p10"] - margin)
        high = min(high_bound, features[name]["p90"] + margin)
        targets[name] = [round(low, 2), round(max(low, high), 2)]
    words_summary = profile["words"]
    median = max(1.0, words_summary["median"])
    spread = max(median / max(1.0, words_summary["p10"]) - 1, words_summary["p90"] / median - 1)
    targets["length_tolerance"] = round(min(1.0, max(0.3, spread)), 2)
    return targets


Z_CLIP = 10.0


def standardise(matrix: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Z-scores with a floor on the spread (a feature constant in the reference cannot explode), clipped to
    +-``Z_CLIP`` so that one degenerate feature (a draft with no sentence end) cannot swamp the others."""
    return np.clip((matrix - mean) / np.maximum(std, 1e-3 + 0.05 * np.abs(mean)), -Z_CLIP, Z_CLIP)
