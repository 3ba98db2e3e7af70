"""On topic: the cosine similarity of a draft's MiniLM embedding with its brief's, for a batch in one encode call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.intake.briefs import Brief
from worker.scoring.markdown import strip_markdown
from worker.scoring.scores import Score, round_value

if TYPE_CHECKING:
    from worker.scoring.embeddings import Embedder
    from worker.scoring.scorecard import DraftToScore

EMBED_CHUNK_WORDS = 150  # all-MiniLM-L6-v2 reads at most 256 word pieces; ~150 words fit comfortably


def brief_text(brief: Brief) -> str:
    """What the draft is compared with: title, keywords, tags and notes."""
    parts = [brief.title, ", ".join(brief.keywords), ", ".join(brief.tags), brief.notes]
    return "\n".join(part for part in parts if part)


def chunk_words(text: str, size: int = EMBED_CHUNK_WORDS) -> list[str]:
    """Split text into chunks of at most ``size`` whitespace-separated words (none for blank text)."""
    tokens = text.split()
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]


def on_topic_score(similarity: float | None, minimum: float) -> Score:
    if similarity is None:
        return Score("on_topic", 0.0, -1.0, 1.0, True, "not measured (no embedder)")
    value = round_value(similarity)
    where = "at or above" if value >= minimum else "below"
    return Score("on_topic", value, -1.0, 1.0, value >= minimum, f"similarity {value:.2f} {where} min {minimum:.2f}")


def on_topic_similarities(
    drafts: Sequence[DraftToScore], embedder: Embedder, plain_texts: Sequence[str] | None = None
) -> tuple[list[float], list[np.ndarray | None]]:
    """Cosine similarity of each draft with its brief, and each draft's normalised embedding (``None`` for an
    empty draft); ONE encode call for all chunks and briefs. ``plain_texts``, when given, are the drafts'
    ``strip_markdown`` texts already computed.

    A draft longer than the model's window is cut into chunks whose normalised vectors are averaged.
    Identical texts (the same brief for several candidates) are encoded once. An empty draft scores 0.0.
    """
    briefs = [brief_text(draft.brief) for draft in drafts]
    if plain_texts is None:
        plain_texts = [strip_markdown(draft.markdown) for draft in drafts]
    chunks = [chunk_words(text) for text in plain_texts]
    unique = list(dict.fromkeys([*briefs, *(chunk for per_draft in chunks for chunk in per_draft)]))
    vectors = embedder.encode(unique)
    index = {text: row for row, text in enumerate(unique)}
    similarities: list[float] = []
    embeddings: list[np.ndarray | None] = []
    for brief, per_draft in zip(briefs, chunks, strict=True):
        mean = np.mean([vectors[index[chunk]] for chunk in per_draft], axis=0) if per_draft else None
        norm = float(np.linalg.norm(mean)) if mean is not None else 0.0
        if mean is None or norm == 0:
            similarities.append(0.0)
            embeddings.append(None)
            continue
        similarities.append(float(np.dot(vectors[index[brief]], mean) / norm))
        embeddings.append(mean / norm)
    return similarities, embeddings


def embed_texts(texts: Sequence[str], embedder: Any = None) -> Any:
    """One normalised MiniLM vector per text (the mean of its 150-word chunks, as on_topic does)."""
    if embedder is None:
        from worker.scoring.embeddings import default_embedder

        embedder = default_embedder()
    chunks = [chunk_words(strip_markdown(text)) or [""] for text in texts]
    flat = [chunk for per_text in chunks for chunk in per_text]
    vectors = embedder.encode(flat) if flat else np.zeros((0, 384), dtype=np.float32)
    result = []
    row = 0
    for per_text in chunks:
        mean = vectors[row : row + len(per_text)].mean(axis=0)
        row += len(per_text)
        norm = float(np.linalg.norm(mean))
        result.append(mean / norm if norm > 0 else mean)
    return np.stack(result) if result else np.zeros((0, 384), dtype=np.float32)
