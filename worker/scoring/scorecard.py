"""The scoring stage: measure a Markdown draft against its brief and its style.

Every metric is a pure function of the draft, the brief, the style's targets and rules and an explicitly
passed language; the only model involved (the sentence embedder behind ``on_topic``) is handed in by the
caller. :func:`score_drafts` scores a batch and embeds all drafts and briefs in one ``encode`` call.

The metrics live beside this module, one concern each: :mod:`~worker.scoring.markdown` (blocks and plain
text), :mod:`~worker.scoring.text` (words, sentences, syllables), :mod:`~worker.scoring.readability`,
:mod:`~worker.scoring.tone` (sentiment, formality), :mod:`~worker.scoring.structure`,
:mod:`~worker.scoring.wording` (length, repetition, keywords), :mod:`~worker.scoring.style_rules`,
:mod:`~worker.scoring.topicality` (on_topic) and :mod:`~worker.scoring.memorisation`. Which scores exist and
which of them are gates is one table, :mod:`worker.styles.score_names`. See ``docs/scoring.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.intake.briefs import Brief
from worker.scoring.markdown import Block, parse_blocks, plain_text, prose_texts
from worker.scoring.memorisation import CorpusIndex, guard_limits, memorisation_score
from worker.scoring.readability import readability_scores
from worker.scoring.scores import Score
from worker.scoring.structure import structure_score
from worker.scoring.style_rules import style_rules_score
from worker.scoring.text import count_sentences, sentence_words, words
from worker.scoring.tone import formality_score, sentiment_score
from worker.scoring.topicality import on_topic_score, on_topic_similarities
from worker.scoring.wording import keywords_score, length_score, repetition_score
from worker.styles.catalog import StyleRules, Targets
from worker.styles.score_names import FAILS_EMPTY, GATE_NAMES, SCORE_NAMES

if TYPE_CHECKING:
    from worker.scoring.embeddings import Embedder

logger = logging.getLogger(__name__)

INFORMATIONAL = frozenset(SCORE_NAMES) - frozenset(GATE_NAMES)
ON_TOPIC_TIE_BREAK = 0.05  # weight of on_topic in Scorecard.quality; below one gate's share (>= 0.1)


@dataclass(frozen=True)
class Scorecard:
    """All scores of one draft, keyed by score name (see ``SCORE_NAMES``)."""

    scores: dict[str, Score] = field(default_factory=dict)

    def failing(self, gates: Iterable[str]) -> list[str]:
        """The gates, in the order given, whose score did not pass; a gate without a score fails."""
        return [gate for gate in gates if gate not in self.scores or not self.scores[gate].passed]

    def passes(self, gates: Iterable[str]) -> bool:
        return not self.failing(gates)

    @property
    def quality(self) -> float:
        """Ranking value in 0..1: the share of gate-able scores that pass, plus a small on_topic tie-break.

        ``quality = (1 - w) * passed_share + w * clamp(on_topic, 0, 1)`` with ``w = ON_TOPIC_TIE_BREAK``.
        One more passing gate always outweighs any on_topic difference.
        """
        gateable = [score for name, score in self.scores.items() if name in GATE_NAMES]
        if not gateable:
            return 0.0
        share = sum(score.passed for score in gateable) / len(gateable)
        on_topic = self.scores.get("on_topic")
        topical = min(max(on_topic.value, 0.0), 1.0) if on_topic is not None else 0.0
        return (1 - ON_TOPIC_TIE_BREAK) * share + ON_TOPIC_TIE_BREAK * topical

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-able ``{name: {value, low, high, passed, detail}}``."""
        return {name: score.to_dict() for name, score in self.scores.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> Scorecard:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed record."""
        scores: dict[str, Score] = {}
        for name, item in data.items():
            try:
                scores[name] = Score(
                    name=str(name),
                    value=float(item["value"]),
                    low=None if item.get("low") is None else float(item["low"]),
                    high=None if item.get("high") is None else float(item["high"]),
                    passed=bool(item["passed"]),
                    detail=str(item.get("detail", "")),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"score {name!r} is malformed: {exc}") from exc
        return cls(scores)


@dataclass(frozen=True)
class DraftToScore:
    """A draft together with what it is measured against."""

    markdown: str
    brief: Brief
    targets: Targets
    rules: StyleRules
    corpus: CorpusIndex | None = None  # what the style's adapter was trained on (the memorisation guard)


def _fail_empty(score: Score) -> Score:
    if score.name not in FAILS_EMPTY or not score.passed:
        return score
    return Score(score.name, score.value, score.low, score.high, False, f"empty draft; {score.detail}")


@dataclass(frozen=True)
class DraftText:
    """What the metrics read of one draft, each parsed or split once: its blocks, plain text (``strip_markdown``)
    and that text's words, the prose blocks (paragraphs and list items) and their sentences with their words."""

    blocks: list[Block]
    text: str
    tokens: list[str]
    prose: list[str]
    sentences: list[tuple[str, list[str]]]

    @property
    def prose_tokens(self) -> list[str]:
        """The words of the prose (``words("\\n".join(prose))``: no word spans a sentence or block boundary)."""
        return [token for _, tokens in self.sentences for token in tokens]


def analyse_draft(markdown: str) -> DraftText:
    """Parse and split a draft once for all its metrics."""
    blocks = parse_blocks(markdown)
    text = plain_text(blocks)
    prose = prose_texts(blocks)
    return DraftText(blocks, text, words(text), prose, sentence_words(prose))


def score_draft(
    draft: DraftToScore,
    *,
    language: str,
    similarity: float | None,
    embedding: np.ndarray | None = None,
    analysed: DraftText | None = None,
) -> Scorecard:
    """Score one draft; ``similarity`` is its on_topic cosine, or ``None`` when not measured; ``embedding`` its
    normalised vector for the memorisation guard (which then uses the 8-gram overlap alone when ``None``);
    ``analysed`` its :func:`analyse_draft`, when already done."""
    analysed = analysed or analyse_draft(draft.markdown)
    blocks, text, tokens, prose, found = (
        analysed.blocks,
        analysed.text,
        analysed.tokens,
        analysed.prose,
        analysed.sentences,
    )
    targets = draft.targets
    scores = [
        *readability_scores(count_sentences(found, language), targets, language),
        sentiment_score([sentence for sentence, _ in found], targets, language),
        formality_score(prose, targets, language, analysed.prose_tokens),
        structure_score(blocks, draft.brief.content_type),
        length_score(len(tokens), draft.brief.target_words, targets.length_tolerance),
        repetition_score(tokens, targets.max_repetition),
        keywords_score(text, draft.brief.keywords, targets.min_keyword_coverage),
        on_topic_score(similarity, targets.min_on_topic),
        style_rules_score(blocks, text, draft.rules),
        memorisation_score(
            draft.corpus.closeness(draft.markdown, embedding) if draft.corpus is not None else None,
            guard_limits(targets),
        ),
    ]
    if not found:  # no prose sentence has a word: nothing but headings (or nothing at all)
        scores = [_fail_empty(score) for score in scores]
    return Scorecard({score.name: score for score in scores})


def score_drafts(drafts: Sequence[DraftToScore], *, language: str, embedder: Embedder | None) -> list[Scorecard]:
    """Score drafts in order. Each draft is parsed once for every metric; with an embedder, all drafts and
    briefs are embedded in one encode call; without one, on_topic is informational (passed, "not measured")."""
    if not drafts:
        return []
    analysed = [analyse_draft(draft.markdown) for draft in drafts]
    similarities: list[float | None] = [None] * len(drafts)
    embeddings: list[np.ndarray | None] = [None] * len(drafts)
    if embedder is not None:
        measured, embeddings = on_topic_similarities(drafts, embedder, [item.text for item in analysed])
        similarities = list(measured)
    cards = [
        score_draft(draft, language=language, similarity=similarity, embedding=embedding, analysed=item)
        for draft, similarity, embedding, item in zip(drafts, similarities, embeddings, analysed, strict=True)
    ]
    logger.debug("scored %d draft(s) (language %s, on_topic %s)", len(cards), language, embedder is not None)
    return cards
