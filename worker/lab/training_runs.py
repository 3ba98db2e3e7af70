"""Training runs: ``$COPYDESK_HOME/training/<style>/<run id>/`` with its ``run.json`` and Trainer checkpoints,
one run per style at a time, and what a run trains on, whether it starts afresh or resumes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.config import Settings
from worker.errors import CorpusError, TrainingError
from worker.files import write_atomic
from worker.lab.corpus import Corpus, load_corpus, require_articles
from worker.lab.examples import Example, corpus_examples, read_feedback, split_examples
from worker.lab.options import TrainingOptions
from worker.lab.training_scale import choose_articles, sectioned
from worker.names import check_safe_name
from worker.styles.catalog import Style
from worker.styles.layout import RUN_FILE

logger = logging.getLogger(__name__)


def training_root(settings: Settings, style: str) -> Path:
    return settings.home / "training" / check_safe_name("style name", style)


@contextlib.contextmanager
def style_lock(settings: Settings, style: str) -> Iterator[None]:
    """One training run per style at a time (an advisory file lock)."""
    root = training_root(settings, style)
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise TrainingError(f"another training run of style {style!r} is in progress") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def last_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def unfinished_run(settings: Settings, style: str) -> Path | None:
    """The newest run of ``style`` that did not finish and has a checkpoint to resume from."""
    root = training_root(settings, style)
    runs = sorted((p for p in root.glob("run-*") if (p / RUN_FILE).is_file()), reverse=True)
    for run_dir in runs:
        if read_json(run_dir / RUN_FILE).get("status") != "finished" and last_checkpoint(run_dir):
            return run_dir
    return None


@dataclass
class Run:
    """Everything one run needs, whether it starts or resumes."""

    style: Style
    run_dir: Path
    options: TrainingOptions
    train: list[Example]
    heldout: list[Example]
    corpus: Corpus | None
    record: dict[str, Any]


def _gather(style: Style, corpus_dir: Path | None, feedback: Path | None, options: TrainingOptions) -> Any:
    corpus = load_corpus(corpus_dir, min_words=options.min_words) if corpus_dir is not None else None
    corpus = choose_articles(corpus, options.max_articles, options.seed) if corpus is not None else None
    examples = corpus_examples(corpus) if corpus is not None else []
    if corpus is not None:
        require_articles(corpus)
    feedback_examples: list[Example] = []
    problems: list[str] = []
    if feedback is not None:
        feedback_examples, problems = read_feedback(feedback, style.name)
        for problem in problems:
            logger.warning("feedback: %s", problem)
    if corpus is None:
        raise TrainingError("a corpus is needed too: its held-out articles measure the adapter (--corpus)")
    return corpus, examples + feedback_examples, feedback_examples, problems


def _fingerprint(corpus: Corpus, feedback_examples: Sequence[Example]) -> str:
    digest = hashlib.sha256(corpus.content_hash().encode())
    for example in feedback_examples:
        digest.update(json.dumps([example.brief.content_dict(), example.completion], sort_keys=True).encode())
    return digest.hexdigest()


def _sections(
    style: Style, options: TrainingOptions, train: list[Example], heldout: list[Example]
) -> tuple[list[Example], list[Example]]:
    """With ``--sections``, long articles as sections (split after the held-out choice: one article's parts
    never straddle it)."""
    if not options.sections:
        return train, heldout
    per_word = style.generation.tokens_per_word
    return sectioned(train, options.max_length, per_word), sectioned(heldout, options.max_length, per_word)


def new_run(
    settings: Settings, style: Style, corpus_dir: Path | None, feedback: Path | None, options: TrainingOptions
) -> Run:
    corpus, examples, feedback_examples, problems = _gather(style, corpus_dir, feedback, options)
    whole_train, whole_heldout = split_examples(examples, options.eval_fraction, options.seed)
    train, heldout = _sections(style, options, whole_train, whole_heldout)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = training_root(settings, style.name) / f"run-{stamp}"
    run_dir.mkdir(parents=True)
    record = {
        "style": style.name,
        "status": "running",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options.model_dump(mode="json"),
        "corpus_dir": str(Path(corpus_dir).resolve()) if corpus_dir else None,
        "feedback_file": str(Path(feedback).resolve()) if feedback else None,
        "fingerprint": _fingerprint(corpus, feedback_examples),
        "heldout_ids": [e.id for e in whole_heldout],
        "feedback_examples": len(feedback_examples),
        "feedback_problems": problems,
    }
    write_json(run_dir / RUN_FILE, record)
    return Run(style, run_dir, options, train, heldout, corpus, record)


def resume_run(settings: Settings, style: Style, run_dir: Path, corpus_dir: Path | None, feedback: Path | None) -> Run:
    record = read_json(run_dir / RUN_FILE)
    options = TrainingOptions.model_validate(record["options"])
    corpus_dir = corpus_dir or (Path(record["corpus_dir"]) if record.get("corpus_dir") else None)
    feedback = feedback or (Path(record["feedback_file"]) if record.get("feedback_file") else None)
    try:
        corpus, examples, feedback_examples, _ = _gather(style, corpus_dir, feedback, options)
    except CorpusError as exc:
        raise TrainingError(f"cannot resume {run_dir.name}: {exc}") from exc
    if _fingerprint(corpus, feedback_examples) != record["fingerprint"]:
        raise TrainingError(
            f"the corpus or feedback changed since run {run_dir.name} was interrupted; train afresh without --resume"
        )
    heldout_ids = set(record["heldout_ids"])
    train = [e for e in examples if e.id not in heldout_ids]
    train, heldout = _sections(style, options, train, [e for e in examples if e.id in heldout_ids])
    logger.info("resuming %s from %s", run_dir.name, last_checkpoint(run_dir))
    return Run(style, run_dir, options, train, heldout, corpus, record)
