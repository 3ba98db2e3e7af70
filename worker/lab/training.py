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

This module runs the trainer; the pieces live beside it: :mod:`~worker.lab.options` (the options),
:mod:`~worker.lab.examples` (examples, split, records), :mod:`~worker.lab.training_runs` (runs, lock, resume)
and :mod:`~worker.lab.version_files` (the version folder).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.config import Settings
from worker.errors import ModelError, TrainingError
from worker.lab.examples import to_records
from worker.lab.options import TrainingMethod, TrainingOptions
from worker.lab.training_runs import Run, last_checkpoint, new_run, resume_run, style_lock, unfinished_run, write_json
from worker.lab.training_scale import BudgetPlan, budget_callback, parse_budget, token_lengths
from worker.lab.version_files import save_version
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import RUN_FILE

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
"""``progress(message, done, total)``: training steps done out of the run's total."""


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


def trainer_arguments(options: TrainingOptions, run_dir: Path, device: str) -> dict[str, Any]:
    """The Trainer arguments every copydesk training method shares (SFT and DPO): the options' schedule, one
    checkpoint and held-out evaluation per epoch, the best epoch kept, the seed, no reporting, and the device."""
    import torch

    return {
        "output_dir": str(run_dir / "checkpoints"),
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps,
        "learning_rate": options.learning_rate,
        "per_device_train_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.gradient_accumulation,
        "warmup_steps": options.warmup_ratio,
        "weight_decay": options.weight_decay,
        "max_length": options.max_length,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "save_total_limit": 2,
        "seed": options.seed,
        "data_seed": options.seed,
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": device == "cuda" and torch.cuda.is_bf16_supported(),
        "dataloader_num_workers": 0,
    }


def _sft_config(options: TrainingOptions, run_dir: Path, device: str) -> Any:
    from trl import SFTConfig

    return SFTConfig(
        **trainer_arguments(options, run_dir, device),
        per_device_eval_batch_size=options.batch_size,
        lr_scheduler_type="linear",
        completion_only_loss=True,
        packing=False,
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
    if options is not None and options.method == TrainingMethod.DPO:  # from the served version, on pairs
        if resume is True:  # "auto" (the Celery task) starts afresh
            raise TrainingError("a DPO run cannot be resumed; start it again")
        from worker.lab.dpo import train_dpo

        dpo: TrainResult = train_dpo(settings, style_name, feedback, options, progress=progress, callbacks=callbacks)
        return dpo
    catalog = StyleCatalog.for_settings(settings)
    style = catalog.get(style_name)
    with style_lock(settings, style.name):
        previous = unfinished_run(settings, style.name) if resume else None
        if resume is True and previous is None:
            raise TrainingError(f"no interrupted training run of style {style.name!r} to resume")
        if previous is not None:
            run = resume_run(settings, style, previous, corpus_dir, feedback)
        else:
            if corpus_dir is None:
                raise TrainingError("give the style's article archive (--corpus DIR); --feedback adds to it")
            run = new_run(settings, style, corpus_dir, feedback, options or TrainingOptions())
        return _execute(settings, run, progress, callbacks, embedder)


def _execute(
    settings: Settings, run: Run, progress: ProgressFn | None, callbacks: Sequence[Any], embedder: Any
) -> TrainResult:
    import torch

    from worker.engine.base_model import resolve_base_model
    from worker.engine.placement import pick_device

    quiet_libraries()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = pick_device(settings.device)
    source = resolve_base_model(settings)
    started = time.perf_counter()
    tokenizer = _tokenizer(source)
    plan = _budget_plan(run)
    trainer = _trainer(settings, run, source, tokenizer, device, [*callbacks, *_budget(plan)], progress)
    _train(trainer, run, plan)
    metrics = _metrics(trainer, run, time.perf_counter() - started)
    version, directory = save_version(settings, run, trainer, tokenizer, source, metrics, embedder)
    run.record.update(status="finished", version=version, finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
    write_json(run.run_dir / RUN_FILE, run.record)
    if not run.options.keep_checkpoints:
        shutil.rmtree(run.run_dir / "checkpoints", ignore_errors=True)
    logger.info("trained %s %s in %.0f s: %s", run.style.name, version, metrics["seconds"], metrics)
    return TrainResult(run.style.name, version, directory, metrics, run.run_dir, trainer.model)


def _tokenizer(source: Any) -> Any:
    """The base model's tokenizer, padding with EOS when it has no pad token; it must have a chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.directory)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise TrainingError(f"the base model {source.model_id} has no chat template; copydesk prompts need one")
    return tokenizer


def _trainer(
    settings: Settings,
    run: Run,
    source: Any,
    tokenizer: Any,
    device: str,
    callbacks: list[Any],
    progress: ProgressFn | None,
) -> Any:
    """TRL's SFTTrainer over the run's examples, with a fresh LoRA adapter on the fp32 base model."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, EarlyStoppingCallback, PrinterCallback
    from trl import SFTTrainer

    options = run.options
    renderer = PromptRenderer(settings.templates_dir)
    model = AutoModelForCausalLM.from_pretrained(source.directory, dtype=torch.float32, use_safetensors=True)
    lora = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=_targets(model, options),
        task_type="CAUSAL_LM",
        bias="none",
    )
    train_records = to_records(run.train, run.style, renderer)
    eval_records = to_records(run.heldout, run.style, renderer)
    _report_lengths(run, train_records, eval_records, tokenizer, progress)
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(options, run.run_dir, device),
        train_dataset=Dataset.from_list(train_records),
        eval_dataset=Dataset.from_list(eval_records),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[*callbacks, EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_progress_callback(progress))
    _require_examples(trainer, options.max_length)
    return trainer


def _require_examples(trainer: Any, max_length: int) -> None:
    """TRL drops examples whose prompt alone fills max_length (no article token left to learn or measure)."""
    for label, dataset in (("training", trainer.train_dataset), ("held-out", trainer.eval_dataset)):
        if not len(dataset):
            raise TrainingError(
                f"every {label} example's prompt fills --max-length {max_length} tokens with this base model's "
                "tokenizer and chat template, leaving no article token: raise --max-length"
            )


def _targets(model: Any, options: TrainingOptions) -> str | list[str]:
    """The options' LoRA targets as this model names them (a fused family's layers: Phi-3's ``qkv_proj``)."""
    from worker.engine.families import training_targets

    try:
        return training_targets(model, options.peft_target_modules())
    except ModelError as exc:
        raise TrainingError(f"--target-modules: {exc}") from exc


def _report_lengths(
    run: Run, train: list[dict[str, Any]], heldout: list[dict[str, Any]], tokenizer: Any, progress: ProgressFn | None
) -> None:
    """Before training: the examples' token lengths and what --max-length cuts, in run.json and the progress."""
    lengths = token_lengths(train, tokenizer, run.options.max_length)
    run.record["token_lengths"] = {
        "train": lengths,
        "heldout": token_lengths(heldout, tokenizer, run.options.max_length),
    }
    if progress:
        cut = f"{lengths['longer']} of {lengths['articles']} training examples longer than --max-length"
        progress(f"{cut} {run.options.max_length} ({lengths['tokens_cut']} tokens cut)", 0, 0)


def _budget_plan(run: Run) -> BudgetPlan | None:
    seconds = parse_budget(run.options.time_budget)
    return BudgetPlan(seconds, eval_seconds=0.0) if seconds else None


def _budget(plan: BudgetPlan | None) -> list[Any]:
    return [budget_callback(plan)] if plan else []


def _train(trainer: Any, run: Run, plan: BudgetPlan | None = None) -> None:
    """Train from the start (measuring the base model's held-out loss first) or from the last checkpoint;
    ``run.json`` says which, and says ``interrupted`` when training stops with an exception."""
    checkpoint = last_checkpoint(run.run_dir)
    started = time.perf_counter()
    if checkpoint is None:
        run.record["base_eval_loss"] = trainer.evaluate()["eval_loss"]  # LoRA B starts at zero: the base model
        if plan:
            plan.eval_seconds = time.perf_counter() - started
            plan.seconds -= plan.eval_seconds
    else:
        run.record.setdefault("resumed_from", []).append(checkpoint.name)
    write_json(run.run_dir / RUN_FILE, run.record)
    try:
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        run.record["train_seconds"] = round(time.perf_counter() - started, 1)
        run.record["stopped_by_time_budget"] = bool(plan and plan.stopped)
        run.record["seconds_per_step"] = round(plan.seconds_per_step, 2) if plan and plan.seconds_per_step else None
    except BaseException:
        run.record["status"] = "interrupted"
        write_json(run.run_dir / RUN_FILE, run.record)
        raise


def _metrics(trainer: Any, run: Run, seconds: float) -> dict[str, Any]:
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
        **_scale_metrics(state.global_step, run),
    }


def _scale_metrics(steps: int, run: Run) -> dict[str, Any]:
    """Time budget, token lengths, and the measured seconds per 1,000 training tokens: the step time (measured
    without evaluations when there is a time budget, else the training time over the steps) over the tokens
    of one step (batch x accumulation x the mean example length within --max-length)."""
    options, lengths = run.options, run.record.get("token_lengths", {}).get("train", {})
    train_seconds, per_step = run.record.get("train_seconds"), run.record.get("seconds_per_step")
    per_step_tokens = options.batch_size * options.gradient_accumulation * lengths.get("mean_within_max_length", 0)
    seconds, tokens = (per_step, per_step_tokens) if per_step else (train_seconds, steps * per_step_tokens)
    return {
        "time_budget": options.time_budget,
        "stopped_by_time_budget": run.record.get("stopped_by_time_budget", False),
        "token_lengths": run.record.get("token_lengths"),
        "train_seconds": train_seconds,
        "seconds_per_step": per_step,
        "seconds_per_1000_tokens": round(1000 * seconds / tokens, 2) if seconds and tokens else None,
    }
