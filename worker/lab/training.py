"""Training: a style's LoRA adapter from its article archive (and editors' feedback), as a new version.

Each article becomes one prompt-completion example. The prompt is what the pipeline would send for the
article's metadata: the style's system prompt and the content type's template (:class:`PromptRenderer`),
turned into tokens by the base model's chat template; the completion is the article. TRL's
:class:`~trl.SFTTrainer` computes the loss on the completion only (the default for prompt-completion
datasets) and trains a PEFT LoRA adapter; the base weights stay frozen. A held-out share of the corpus is
evaluated every epoch, training stops early when the held-out loss stops improving, and the best epoch is
kept (``load_best_model_at_end``).

A run lives in ``$COPYDESK_HOME/training/<style>/<run id>/`` (``run.json``, Trainer checkpoints) until it
finishes; an interrupted run resumes from its last checkpoint (``--resume``). The finished adapter is
written to ``styles/<style>/adapters/vN/`` (the next free N) through a staging folder and one rename, so a
version is either complete or absent. What a version holds is listed in :data:`VERSION_FILES`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker import __version__
from worker.config import PROJECT_ROOT, Settings
from worker.errors import CopydeskError
from worker.intake.briefs import Brief
from worker.lab.corpus import Corpus, CorpusError, load_corpus, require_articles
from worker.names import check_safe_name
from worker.pipeline.prompts import PromptRenderer
from worker.scoring.memorisation import CorpusIndex
from worker.styles.catalog import Style, StyleCatalog
from worker.styles.layout import (
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    CHAT_TEMPLATE_FILE,
    FEATURES_FILE,
    HELDOUT_FILE,
    METRICS_FILE,
    NGRAMS_FILE,
    PROFILE_FILE,
    RUN_FILE,
    TRAINING_FILE,
    list_version_names,
    versions_dir,
)

logger = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"
MODULE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

ProgressFn = Callable[[str, int, int], None]
"""``progress(message, done, total)``: training steps done out of the run's total."""


class TrainingError(CopydeskError):
    """A training run cannot start, resume or finish."""

    exit_code = 11


class TrainingOptions(BaseModel):
    """How one style is trained. Every field has a default fit for a small CPU run."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, le=100, description="Epochs at most (early stopping may end sooner).")
    learning_rate: float = Field(5e-4, gt=0, le=1, description="AdamW learning rate of the LoRA weights.")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Names of the linear layers that get LoRA weights, or ['all-linear'] (all but the output head).",
    )
    max_length: int = Field(512, ge=32, le=8192, description="Tokens per example (prompt + article), cut at the end.")
    batch_size: int = Field(2, ge=1, le=256)
    gradient_accumulation: int = Field(1, ge=1, le=256)
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of corpus articles held out for evaluation.")
    early_stopping_patience: int = Field(1, ge=1, description="Epochs without a better held-out loss before stopping.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0)
    seed: int = Field(0, description="Seed of the split, the LoRA initialisation and the data order.")
    min_words: int = Field(60, ge=1, description="Shorter corpus pages are skipped as near-empty.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: no limit). For smoke tests.")
    keep_checkpoints: bool = Field(False, description="Keep the run's Trainer checkpoints after it finished.")

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not MODULE_NAME.fullmatch(name):
                raise ValueError(f"target module {name!r} is not a module name (letters, digits, '_', '.', '-')")
        if ALL_LINEAR in names and len(names) > 1:
            raise ValueError(f"'{ALL_LINEAR}' stands alone; it already covers every linear layer")
        return names

    def peft_target_modules(self) -> str | list[str]:
        """What :class:`peft.LoraConfig` takes: the string ``'all-linear'`` or a list of names."""
        return ALL_LINEAR if self.target_modules == [ALL_LINEAR] else list(self.target_modules)


@dataclass(frozen=True)
class Example:
    """One training or held-out example: where it came from, its brief and its article."""

    id: str
    source: str  # "corpus" or "feedback"
    brief: Brief
    completion: str


@dataclass
class TrainResult:
    style: str
    version: str
    directory: Path
    metrics: dict[str, Any]
    run_dir: Path
    model: Any = field(default=None, repr=False)  # the trained PeftModel (in memory), for callers and tests

    def summary(self) -> dict[str, Any]:
        return {"style": self.style, "version": self.version, "directory": str(self.directory), **self.metrics}


# ------------------------------------------------------------------------------------------- examples


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


# ------------------------------------------------------------------------------------------- runs


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


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def last_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def unfinished_run(settings: Settings, style: str) -> Path | None:
    """The newest run of ``style`` that did not finish and has a checkpoint to resume from."""
    root = training_root(settings, style)
    runs = sorted((p for p in root.glob("run-*") if (p / RUN_FILE).is_file()), reverse=True)
    for run_dir in runs:
        if _read_json(run_dir / RUN_FILE).get("status") != "finished" and last_checkpoint(run_dir):
            return run_dir
    return None


def _publish(staging: Path, style: Style) -> str:
    """Rename the staging folder to the next free ``vN``; a concurrent publisher just takes the next N."""
    existing = list_version_names(style)
    number = int(existing[-1][1:]) + 1 if existing else 1
    for _ in range(100):
        target = versions_dir(style) / f"v{number}"
        if not target.exists():
            try:
                os.rename(staging, target)
                return target.name
            except OSError:
                pass
        number += 1
    raise TrainingError(f"could not find a free version number under {versions_dir(style)}")


# ------------------------------------------------------------------------------------------- trainer


def quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    # transformers 5 renamed *gradient_checkpointing*; TRL still reads the old name. Not the user's concern.
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)


def _progress_callback(progress: ProgressFn | None) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress:
                progress(f"epoch {state.epoch:.2f}", state.global_step, state.max_steps)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is not None:
                logger.info("epoch %.2f: held-out loss %.4f", state.epoch or 0, loss)
                if progress:
                    progress(f"epoch {state.epoch:.0f}: held-out loss {loss:.3f}", state.global_step, state.max_steps)

    return _Progress()


def _sft_config(options: TrainingOptions, run_dir: Path, device: str) -> Any:
    import torch
    from trl import SFTConfig

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
        warmup_steps=options.warmup_ratio,
        weight_decay=options.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=2,
        max_length=options.max_length,
        completion_only_loss=True,
        packing=False,
        seed=options.seed,
        data_seed=options.seed,
        report_to=[],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=bf16,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )


def _log_history(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch: training loss and held-out loss."""
    epochs: dict[float, dict[str, Any]] = {}
    for entry in history:
        epoch = entry.get("epoch")
        if epoch is None:
            continue
        row = epochs.setdefault(round(float(epoch), 3), {"epoch": round(float(epoch), 3), "step": entry.get("step")})
        if "loss" in entry:
            row["train_loss"] = round(float(entry["loss"]), 4)
        if "eval_loss" in entry:
            row["eval_loss"] = round(float(entry["eval_loss"]), 4)
            row["step"] = entry.get("step")
    return [row for _, row in sorted(epochs.items()) if "eval_loss" in row or "train_loss" in row]


@dataclass
class _Run:
    """Everything one run needs, whether it starts or resumes."""

    style: Style
    run_dir: Path
    options: TrainingOptions
    train: list[Example]
    heldout: list[Example]
    corpus: Corpus | None
    record: dict[str, Any]


def train_style(
    settings: Settings,
    style_name: str,
    *,
    corpus_dir: Path | None = None,
    feedback: Path | None = None,
    options: TrainingOptions | None = None,
    resume: bool | str = False,
    progress: ProgressFn | None = None,
    callbacks: Sequence[Any] = (),
    embedder: Any = None,
) -> TrainResult:
    """Train a new adapter version of ``style_name``; returns its version, folder and metrics.

    ``resume``: ``True`` continues the newest unfinished run (an error when there is none), ``"auto"``
    continues it when there is one and otherwise starts afresh (what the Celery task does, so a redelivered
    task picks up where the lost one stopped), ``False`` always starts afresh.
    """
    catalog = StyleCatalog.load(settings.styles_dir)
    style = catalog.get(style_name)
    with style_lock(settings, style.name):
        previous = unfinished_run(settings, style.name) if resume else None
        if resume is True and previous is None:
            raise TrainingError(f"no interrupted training run of style {style.name!r} to resume")
        if previous is not None:
            run = _resume_run(settings, style, previous, corpus_dir, feedback)
        else:
            if corpus_dir is None:
                raise TrainingError("give the style's article archive (--corpus DIR); --feedback adds to it")
            run = _new_run(settings, style, corpus_dir, feedback, options or TrainingOptions())
        return _execute(settings, run, progress, callbacks, embedder)


def _gather(style: Style, corpus_dir: Path | None, feedback: Path | None, options: TrainingOptions) -> Any:
    corpus = load_corpus(corpus_dir, min_words=options.min_words) if corpus_dir is not None else None
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


def _new_run(
    settings: Settings, style: Style, corpus_dir: Path | None, feedback: Path | None, options: TrainingOptions
) -> _Run:
    corpus, examples, feedback_examples, problems = _gather(style, corpus_dir, feedback, options)
    train, heldout = split_examples(examples, options.eval_fraction, options.seed)
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
        "heldout_ids": [e.id for e in heldout],
        "feedback_examples": len(feedback_examples),
        "feedback_problems": problems,
    }
    _write_json(run_dir / RUN_FILE, record)
    return _Run(style, run_dir, options, train, heldout, corpus, record)


def _resume_run(
    settings: Settings, style: Style, run_dir: Path, corpus_dir: Path | None, feedback: Path | None
) -> _Run:
    record = _read_json(run_dir / RUN_FILE)
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
    heldout = [e for e in examples if e.id in heldout_ids]
    logger.info("resuming %s from %s", run_dir.name, last_checkpoint(run_dir))
    return _Run(style, run_dir, options, train, heldout, corpus, record)


def _execute(
    settings: Settings, run: _Run, progress: ProgressFn | None, callbacks: Sequence[Any], embedder: Any
) -> TrainResult:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, PrinterCallback
    from trl import SFTTrainer

    from worker.engine.base_model import resolve_base_model
    from worker.engine.engine import pick_device

    quiet_libraries()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = pick_device(settings.device)
    source = resolve_base_model(settings)
    renderer = PromptRenderer(settings.templates_dir)
    options = run.options
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source.directory)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise TrainingError(f"the base model {source.model_id} has no chat template; copydesk prompts need one")
    model = AutoModelForCausalLM.from_pretrained(source.directory, dtype=torch.float32, use_safetensors=True)
    lora = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.peft_target_modules(),
        task_type="CAUSAL_LM",
        bias="none",
    )
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(options, run.run_dir, device),
        train_dataset=Dataset.from_list(to_records(run.train, run.style, renderer)),
        eval_dataset=Dataset.from_list(to_records(run.heldout, run.style, renderer)),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[*callbacks, EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_progress_callback(progress))
    checkpoint = last_checkpoint(run.run_dir)
    if checkpoint is None:
        base_eval = trainer.evaluate()["eval_loss"]  # LoRA B starts at zero: this is the base model
        run.record["base_eval_loss"] = base_eval
        _write_json(run.run_dir / RUN_FILE, run.record)
    else:
        run.record.setdefault("resumed_from", []).append(checkpoint.name)
        _write_json(run.run_dir / RUN_FILE, run.record)
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException:
        run.record["status"] = "interrupted"
        _write_json(run.run_dir / RUN_FILE, run.record)
        raise
    metrics = _metrics(trainer, run, time.perf_counter() - started)
    version, directory = _save_version(settings, run, trainer, tokenizer, source, metrics, embedder)
    run.record.update(status="finished", version=version, finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _write_json(run.run_dir / RUN_FILE, run.record)
    if not options.keep_checkpoints:
        shutil.rmtree(run.run_dir / "checkpoints", ignore_errors=True)
    logger.info("trained %s %s in %.0f s: %s", run.style.name, version, metrics["seconds"], metrics)
    return TrainResult(run.style.name, version, directory, metrics, run.run_dir, trainer.model)


def _metrics(trainer: Any, run: _Run, seconds: float) -> dict[str, Any]:
    state = trainer.state
    epochs = _log_history(state.log_history)
    best = state.best_metric
    base = run.record.get("base_eval_loss")
    best_epoch = (
        next((row["epoch"] for row in epochs if row.get("eval_loss") == round(best, 4)), None) if best else None
    )
    return {
        "epochs_run": round(float(state.epoch or 0), 3),
        "epochs_max": run.options.epochs,
        "stopped_early": bool(state.epoch and state.epoch < run.options.epochs and run.options.max_steps < 0),
        "steps": state.global_step,
        "best_epoch": best_epoch,
        "best_eval_loss": round(float(best), 4) if best is not None else None,
        "base_eval_loss": round(float(base), 4) if base is not None else None,
        "eval_perplexity": round(math.exp(best), 3) if best is not None else None,
        "base_eval_perplexity": round(math.exp(base), 3) if base is not None else None,
        "history": epochs,
        "train_examples": len(run.train),
        "heldout_examples": len(run.heldout),
        "resumed_from": run.record.get("resumed_from", []),
        "seconds": round(seconds, 1),
    }


def _save_version(
    settings: Settings, run: _Run, trainer: Any, tokenizer: Any, source: Any, metrics: dict[str, Any], embedder: Any
) -> tuple[str, Path]:
    from worker.lab.stylometry import profile_texts, targets_from_profile

    style = run.style
    root = versions_dir(style)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{run.run_dir.name}"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(str(staging), safe_serialization=True)
    for leftover in staging.iterdir():  # the PEFT model card names local paths; the metadata below says it all
        if leftover.name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    config = _read_json(staging / ADAPTER_CONFIG)
    config["base_model_name_or_path"] = source.model_id
    _write_json(staging / ADAPTER_CONFIG, config)
    (staging / CHAT_TEMPLATE_FILE).write_text(str(tokenizer.chat_template), encoding="utf-8")
    corpus = run.corpus
    if corpus is None:
        raise TrainingError("internal: a finished run has no corpus")
    texts = [a.body for a in corpus.articles]
    profile = profile_texts(texts, settings.language)
    _write_json(staging / PROFILE_FILE, {"profile": profile, "targets": targets_from_profile(profile)})
    heldout_ids = {e.id for e in run.heldout}
    _save_features(staging / FEATURES_FILE, corpus, heldout_ids, settings.language, embedder)
    CorpusIndex.build([e.completion for e in [*run.train, *run.heldout]]).save(staging / NGRAMS_FILE)
    with (staging / HELDOUT_FILE).open("w", encoding="utf-8") as handle:
        for example in run.heldout:
            record = {"id": example.id, "brief": example.brief.model_dump(mode="json"), "article": example.completion}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    _write_json(
        staging / TRAINING_FILE,
        {
            "options": run.options.model_dump(mode="json"),
            "trainer": "trl.SFTTrainer (prompt-completion, completion-only loss) + peft LoRA",
            "prompt": "worker.pipeline.prompts.PromptRenderer + style system prompt, through the chat template",
            "templates_dir": portable_path(settings.templates_dir),
            "device": trainer.args.device.type,
            "run": run.run_dir.name,
        },
    )
    _write_json(staging / METRICS_FILE, metrics)
    _write_json(
        staging / ADAPTER_META,
        {
            "style": style.name,
            "base_model_id": source.model_id,
            "base_model_weights_sha256": source.weights_hash,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "copydesk_version": __version__,
            "corpus": {
                "sha256": corpus.content_hash(),
                "fingerprint": run.record["fingerprint"],
                "articles": len(corpus.articles),
                "words": corpus.total_words,
                "skipped": len(corpus.skipped),
                "source": portable_path(run.record.get("corpus_dir")),
            },
            "feedback": {
                "file": portable_path(run.record.get("feedback_file")),
                "examples": run.record.get("feedback_examples", 0),
            },
            "train_examples": len(run.train),
            "heldout_ids": sorted(heldout_ids),
        },
    )
    version = _publish(staging, style)
    meta = _read_json(root / version / ADAPTER_META)
    meta["version"] = version
    _write_json(root / version / ADAPTER_META, meta)
    return version, root / version


def portable_path(path: str | Path | None) -> str | None:
    """A path as recorded in a version: relative to the project when inside it (versions are committed)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    return str(resolved.relative_to(PROJECT_ROOT)) if resolved.is_relative_to(PROJECT_ROOT) else str(resolved)


def _save_features(path: Path, corpus: Corpus, heldout_ids: set[str], language: str, embedder: Any) -> None:
    """Per-article stylometric features and mean MiniLM embeddings, as safetensors (no pickle)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from worker.lab.stylometry import feature_matrix

    texts = [a.body for a in corpus.articles]
    features = feature_matrix(texts, language)
    embeddings = embed_texts(texts, embedder)
    mask = np.array([a.id in heldout_ids for a in corpus.articles], dtype=np.int8)
    save_file(
        {
            "features": torch.from_numpy(features.astype(np.float32)),
            "embeddings": torch.from_numpy(embeddings.astype(np.float32)),
            "heldout": torch.from_numpy(mask),
        },
        str(path),
        metadata={"ids": json.dumps([a.id for a in corpus.articles])},
    )


def embed_texts(texts: Sequence[str], embedder: Any = None) -> Any:
    """One normalised MiniLM vector per text (the mean of its 150-word chunks, as on_topic does)."""
    import numpy as np

    from worker.scoring.markdown import strip_markdown
    from worker.scoring.topicality import chunk_words

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
