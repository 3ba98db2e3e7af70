"""The feedback dataset: what editors approved, edited and rejected, as training data for the styles.

Two JSONL files (format in ``docs/review.md``):

* **SFT examples** (``copydesk feedback export --to FILE``): one line per approved or published article, its
  text as approved (edits included)::

    {"style": "plain-howto", "brief": {...the brief's fields...}, "completion": "# Title\\n...",
     "article_id": "a-...", "revision": 3, "edited": true}

* **Preference pairs** (``--pairs``, default ``FILE`` with ``.pairs.jsonl``): for an approved article, one
  line per earlier revision of it that an editor rejected or sent back, or replaced by an edit (a pipeline draft
  an editor edited: the approved text is preferred over it)::

    {"style": ..., "brief": {...}, "chosen": "<approved text>", "rejected": "<rejected text>",
     "article_id": ..., "chosen_revision": 3, "rejected_revision": 1}

:func:`load_feedback_examples` reads the SFT file back (``copydesk styles train NAME --feedback FILE``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.errors import ReviewError
from worker.files import write_atomic
from worker.intake.briefs import Brief
from worker.results import ArticleStatus
from worker.store import ArticleRecord, Store
from worker.workflow import EventKind

logger = logging.getLogger(__name__)

APPROVED_STATUSES = (ArticleStatus.APPROVED.value, ArticleStatus.PUBLISHED.value)
REJECTING_EVENTS = (EventKind.REJECTED.value, EventKind.SENT_BACK.value)
EDIT_SOURCE = "edit"  # the source of a revision an editor wrote (worker.store.review)
SFT_KEYS = ("style", "brief", "completion", "article_id", "revision")


@dataclass(frozen=True)
class FeedbackExample:
    """One SFT example: the brief and the text an editor approved for it."""

    style: str
    brief: dict[str, Any]
    completion: str
    article_id: str
    revision: int
    edited: bool = False

    def brief_model(self) -> Brief:
        """The brief as a validated :class:`~worker.intake.briefs.Brief` (to render a prompt for training)."""
        return Brief.model_validate(self.brief)


@dataclass(frozen=True)
class PreferencePair:
    """An approved text (chosen) and a rejected or sent-back text (rejected) for the same brief."""

    style: str
    brief: dict[str, Any]
    chosen: str
    rejected: str
    article_id: str
    chosen_revision: int
    rejected_revision: int


@dataclass(frozen=True)
class FeedbackSummary:
    examples: int
    pairs: int
    examples_path: Path
    pairs_path: Path


def pairs_path_for(path: Path) -> Path:
    """``feedback.jsonl`` -> ``feedback.pairs.jsonl``."""
    name = path.name.removesuffix(".jsonl").removesuffix(".json")
    return path.with_name(f"{name}.pairs.jsonl")


def collect(store: Store, *, style: str | None = None) -> Iterator[tuple[FeedbackExample, list[PreferencePair]]]:
    """Each approved or published article (oldest first) as an SFT example and its preference pairs."""
    for article in store.iter_articles(APPROVED_STATUSES):
        if style is not None and article.style != style:
            continue
        yield _from_article(store, article)


def _from_article(store: Store, article: ArticleRecord) -> tuple[FeedbackExample, list[PreferencePair]]:
    brief = store.get_brief(article.brief_id).brief.model_dump(mode="json")
    revisions = {r.revision: r for r in store.list_revisions(article.id)}
    events = store.list_events(article.id)
    edited = any(r.source == "edit" for r in revisions.values())
    example = FeedbackExample(article.style, brief, article.body_markdown, article.id, article.revision, edited)
    rejected = sorted(
        {e.revision for e in events if e.kind in REJECTING_EVENTS} | _drafts_edited_away(events, revisions)
    )
    rejected = [number for number in rejected if number != article.revision]
    pairs = [
        PreferencePair(
            article.style,
            brief,
            article.body_markdown,
            revisions[number].body_markdown,
            article.id,
            article.revision,
            number,
        )
        for number in rejected
        if number in revisions and revisions[number].body_markdown != article.body_markdown
    ]
    return example, pairs


def _drafts_edited_away(events: list[Any], revisions: dict[int, Any]) -> set[int]:
    """Revisions written by the pipeline (generated or regenerated) that an editor's edit replaced: the edit is
    preferred over the draft it replaced. An edit of an editor's own text is not a rejected draft."""
    replaced = (e.details.get("previous_revision") for e in events if e.kind == EventKind.EDITED.value)
    return {
        number
        for number in replaced
        if isinstance(number, int) and number in revisions and revisions[number].source != EDIT_SOURCE
    }


def _write_lines(path: Path, lines: list[str]) -> int:
    """Replace ``path`` with one line per item (atomically, :func:`worker.files.write_atomic`); the count."""
    write_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def export_feedback(
    store: Store, path: Path, *, pairs_path: Path | None = None, style: str | None = None
) -> FeedbackSummary:
    """Write the SFT examples to ``path`` and the preference pairs to ``pairs_path`` (both replaced whole)."""
    pairs_path = pairs_path or pairs_path_for(path)
    if pairs_path.resolve() == path.resolve():
        raise ReviewError("the SFT file and the pairs file must be different files")
    examples: list[str] = []
    pairs: list[str] = []
    for example, article_pairs in collect(store, style=style):
        examples.append(json.dumps(asdict(example), ensure_ascii=False, sort_keys=True))
        pairs.extend(json.dumps(asdict(pair), ensure_ascii=False, sort_keys=True) for pair in article_pairs)
    try:
        written = _write_lines(path, examples)
        paired = _write_lines(pairs_path, pairs)
    except OSError as exc:
        raise ReviewError(f"cannot write the feedback dataset: {exc}") from exc
    logger.info("feedback: %d example(s) to %s, %d pair(s) to %s", written, path, paired, pairs_path)
    return FeedbackSummary(written, paired, path, pairs_path)


def _example(data: Any, where: str) -> FeedbackExample:
    if not isinstance(data, dict):
        raise ReviewError(f"{where}: a feedback example must be a JSON object")
    missing = [key for key in SFT_KEYS if key not in data]
    if missing:
        raise ReviewError(f"{where}: missing {', '.join(missing)} (is this a pairs file? pass the SFT file)")
    style, brief, completion = data["style"], data["brief"], data["completion"]
    revision = data["revision"]
    if not isinstance(style, str) or not style:
        raise ReviewError(f"{where}: style must be a non-empty string")
    if not isinstance(brief, dict):
        raise ReviewError(f"{where}: brief must be an object of brief fields")
    if not isinstance(completion, str) or not completion.strip():
        raise ReviewError(f"{where}: completion must be non-empty Markdown")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise ReviewError(f"{where}: revision must be a positive integer")
    return FeedbackExample(style, brief, completion, str(data["article_id"]), revision, bool(data.get("edited", False)))


def load_feedback_examples(path: Path | str, *, style: str | None = None) -> list[FeedbackExample]:
    """Read an SFT file written by ``copydesk feedback export``; only ``style``'s examples when given.

    Blank lines are skipped; a malformed line raises :class:`~worker.errors.ReviewError` naming the file and
    line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"cannot read the feedback file {path}: {exc}") from exc
    examples: list[FeedbackExample] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReviewError(f"{where}: not JSON ({exc.msg})") from exc
        example = _example(data, where)
        if style is None or example.style == style:
            examples.append(example)
    return examples


__all__ = [
    "FeedbackExample",
    "FeedbackSummary",
    "PreferencePair",
    "collect",
    "export_feedback",
    "load_feedback_examples",
    "pairs_path_for",
]
