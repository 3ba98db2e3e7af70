"""Training at archive scale on a CPU: a stable stratified choice of ``--max-articles``, long articles split
at headings into sections that fit ``--max-length``, the token lengths of the examples (and what
``--max-length`` cuts) reported before training, and ``--time-budget`` (a callback that plans the steps from
the measured step time and stops cleanly, evaluated and saved, so the best checkpoint is kept)."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from worker.errors import TrainingError
from worker.lab.corpus import Corpus
from worker.lab.corpus_tokens import length_report
from worker.lab.examples import Example

logger = logging.getLogger(__name__)

PROMPT_TOKENS = 320  # room left for the prompt (system message, brief, chat template) when sections are cut
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_HEADING = re.compile(r"^#{1,3}\s+\S")
_UNITS = {"": 60, "s": 1, "m": 60, "h": 3600}


def parse_budget(text: str | None) -> float | None:
    """Seconds of a time budget: ``45m``, ``2h``, ``900s`` (a bare number is minutes); None for none."""
    if text is None or not str(text).strip():
        return None
    match = _BUDGET.match(str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise TrainingError(f"time budget {text!r} is not a duration such as 45m, 2h or 900s")
    return float(match.group(1)) * _UNITS[match.group(2)]


# --------------------------------------------------------------------------------------------- --max-articles


def _stratum(article: Any) -> tuple[str, str]:
    return str(article.brief.content_type), (article.date or "")[:4]


def choose_articles(corpus: Corpus, count: int | None, seed: int) -> Corpus:
    """At most ``count`` articles: each (content type, year) stratum in proportion (largest remainders first),
    within a stratum a stable order by a hash of seed and id; the corpus itself when it is small enough."""
    if count is None or len(corpus.articles) <= count:
        return corpus
    strata: dict[tuple[str, str], list[Any]] = {}
    for article in corpus.articles:
        strata.setdefault(_stratum(article), []).append(article)
    for members in strata.values():
        members.sort(key=lambda a: hashlib.sha256(f"{seed}:{a.id}".encode()).hexdigest())
    shares = {key: count * len(members) / len(corpus.articles) for key, members in strata.items()}
    quota = {key: math.floor(share) for key, share in shares.items()}
    for key in sorted(shares, key=lambda k: (quota[k] - shares[k], k))[: count - sum(quota.values())]:
        quota[key] += 1
    chosen = {a.id for key, members in strata.items() for a in members[: quota[key]]}
    return replace(corpus, articles=[a for a in corpus.articles if a.id in chosen])


# --------------------------------------------------------------------------------------------- sections


def _parts(body: str) -> list[str]:
    """The body cut before every heading of level 1-3 outside fenced code (the title line stays with part 1)."""
    parts: list[list[str]] = [[]]
    fence = ""
    for line in body.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = "" if fence == marker else (fence or marker)
        if not fence and _HEADING.match(line) and any(text.strip() for text in parts[-1][1:]):
            parts.append([])
        parts[-1].append(line)
    return ["\n".join(part).strip("\n") for part in parts if "\n".join(part).strip()]


def _paragraphs(part: str, max_words: int) -> list[str]:
    """A part longer than ``max_words`` cut at its blank lines outside fenced code (a heading stays with what
    follows it); a shorter part as it is."""
    if len(part.split()) <= max_words:
        return [part]
    blocks: list[list[str]] = [[]]
    fence = ""
    for line in part.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = "" if fence == marker else (fence or marker)
        previous = blocks[-1]
        if not fence and not line.strip() and previous and not previous[-1].lstrip().startswith("#"):
            blocks.append([])
        else:
            blocks[-1].append(line)
    return ["\n".join(block).strip("\n") for block in blocks if "\n".join(block).strip()]


def _group(parts: list[str], max_words: int) -> list[str]:
    """Consecutive parts joined while they fit ``max_words``; a part longer than that stays whole."""
    groups: list[str] = []
    for part in parts:
        if groups and len((groups[-1] + " " + part).split()) <= max_words:
            groups[-1] = f"{groups[-1]}\n\n{part}"
        else:
            groups.append(part)
    return groups


def split_example(example: Example, max_words: int) -> list[Example]:
    """An article longer than ``max_words`` as sections cut at headings; each keeps the brief and the article's
    id (held-out ids stay article ids), says which part it is (``Part i of n`` in the notes) and has its own
    length. Shorter articles and feedback stay whole."""
    if example.source != "corpus" or len(example.completion.split()) <= max_words:
        return [example]
    pieces = [piece for part in _parts(example.completion) for piece in _paragraphs(part, max_words)]
    groups = _group(pieces, max_words)
    if len(groups) == 1:
        return [example]
    sections = []
    for index, text in enumerate(groups, 1):
        notes = f"{example.brief.notes} Part {index} of {len(groups)} of the article.".strip()
        update = {"notes": notes[:1000], "target_words": max(1, len(text.split()))}
        brief = example.brief.model_copy(update=update)
        sections.append(Example(example.id, example.source, brief, text))  # the article's id: held-out sets match
    return sections


def sectioned(examples: Sequence[Example], max_length: int, tokens_per_word: float) -> list[Example]:
    """Every example, long articles as sections that fit ``max_length`` tokens with the prompt."""
    max_words = max(20, int((max_length - PROMPT_TOKENS) / tokens_per_word))
    return [section for example in examples for section in split_example(example, max_words)]


# --------------------------------------------------------------------------------------------- lengths


def token_lengths(records: Sequence[dict[str, Any]], tokenizer: Any, max_length: int) -> dict[str, Any]:
    """The examples' token lengths (prompt through chat template, plus completion) and what max_length cuts."""
    counts = []
    for record in records:
        messages = [*record["prompt"], *record["completion"]]
        encoded = tokenizer.apply_chat_template(messages, tokenize=True)
        counts.append(len(encoded["input_ids"] if hasattr(encoded, "keys") else encoded))  # transformers 5: a dict
    report = length_report(counts, max_length)
    logger.info(
        "examples: %d, tokens median %s, max %s; %d longer than --max-length %d (%d tokens cut at the end)",
        report["articles"], report.get("median"), report.get("max"), report["longer"], max_length, report["tokens_cut"],
    )  # fmt: skip
    return report


# --------------------------------------------------------------------------------------------- --time-budget


@dataclass
class BudgetPlan:
    """The seconds a run may train, the seconds one held-out evaluation takes, and what was measured."""

    seconds: float
    eval_seconds: float
    started: float = 0.0
    last: float = 0.0
    seconds_per_step: float | None = None
    planned_steps: int | None = None
    stopped: bool = False

    def step_done(self, step: int, max_steps: int, now: float) -> bool:
        """Record a step; True when one more step and a last evaluation would not fit in the budget."""
        took = now - self.last
        self.last = now
        self.seconds_per_step = took if self.seconds_per_step is None else 0.8 * self.seconds_per_step + 0.2 * took
        reserve = self.seconds_per_step + 1.2 * self.eval_seconds
        if self.planned_steps is None:
            left = self.seconds - (now - self.started) - 1.2 * self.eval_seconds
            self.planned_steps = min(max_steps, step + max(0, int(left / self.seconds_per_step)))
            logger.info(
                "time budget %.0f s: %.2f s per step, about %d of %d steps fit",
                self.seconds, self.seconds_per_step, self.planned_steps, max_steps,
            )  # fmt: skip
        return step < max_steps and (now - self.started) + reserve > self.seconds


def budget_callback(plan: BudgetPlan) -> Any:
    """A TrainerCallback that plans the steps from the measured step time (evaluations not counted as steps)
    and stops when the next step and a last evaluation would not fit; the epoch's end then evaluates and saves
    a checkpoint, so that ``load_best_model_at_end`` keeps the best one."""
    from transformers import TrainerCallback

    class _Budget(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            plan.started = plan.last = time.perf_counter()

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            plan.last = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if plan.step_done(state.global_step, state.max_steps, time.perf_counter()):
                plan.stopped = True
                control.should_training_stop = True  # the epoch's end then evaluates and saves (epoch strategy)

    return _Budget()
