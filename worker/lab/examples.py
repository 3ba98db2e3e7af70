"""Training examples: a corpus article or an editor's feedback record as (brief, article), the held-out split,
and the prompt-completion records TRL trains on (the prompt is exactly what the pipeline sends)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.errors import TrainingError
from worker.intake.briefs import Brief
from worker.lab.corpus import Corpus
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import Style


@dataclass(frozen=True)
class Example:
    """One training or held-out example: where it came from, its brief and its article."""

    id: str
    source: str  # "corpus" or "feedback"
    brief: Brief
    completion: str


def read_feedback(path: Path, style: str) -> tuple[list[Example], list[str]]:
    """SFT examples of ``style`` from ``copydesk feedback export`` (see ``load_feedback_examples``).

    A malformed file is an error (the loader names the line); an example whose brief no longer validates
    is left out and reported as a problem line.
    """
    from worker.review.feedback import load_feedback_examples

    if not path.is_file():
        raise TrainingError(f"feedback file {path} does not exist (write it with `copydesk feedback export`)")
    examples: list[Example] = []
    problems: list[str] = []
    for record in load_feedback_examples(path, style=style):
        where = f"{path}: article {record.article_id} revision {record.revision}"
        try:
            brief = Brief.model_validate({k: v for k, v in record.brief.items() if k != "style"})
        except ValidationError as exc:
            problems.append(f"{where}: brief is invalid: {exc.errors()[0]['msg']}")
            continue
        example_id = f"feedback-{record.article_id}-r{record.revision}"
        examples.append(Example(example_id, "feedback", brief, record.completion.strip()))
    return examples, problems


def corpus_examples(corpus: Corpus) -> list[Example]:
    return [Example(a.id, "corpus", a.brief, a.body) for a in corpus.articles]


def split_examples(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """``(train, held out)``: a stable share of the corpus articles, chosen by a hash of id and seed.

    Feedback examples always train (they are few and were chosen by editors). At least one article is held
    out and at least one trains.
    """
    corpus = [e for e in examples if e.source == "corpus"]
    if len(corpus) < 2:
        raise TrainingError("at least two corpus articles are needed: one to train on and one to hold out")
    ranked = sorted(corpus, key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).hexdigest())
    held = min(len(corpus) - 1, max(1, round(len(corpus) * fraction)))
    heldout_ids = {e.id for e in ranked[:held]}
    train = [e for e in examples if e.id not in heldout_ids]
    heldout = [e for e in corpus if e.id in heldout_ids]
    return train, heldout


def messages_for(example: Example, style: Style, renderer: PromptRenderer) -> list[dict[str, str]]:
    """The prompt messages of an example: exactly what the pipeline sends for its brief in this style."""
    return renderer.render(example.brief, style).messages()


def to_records(examples: Sequence[Example], style: Style, renderer: PromptRenderer) -> list[dict[str, Any]]:
    """Conversational prompt-completion records for TRL (the chat template is applied by the trainer)."""
    return [
        {
            "prompt": messages_for(e, style, renderer),
            "completion": [{"role": "assistant", "content": e.completion}],
        }
        for e in examples
    ]
