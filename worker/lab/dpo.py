"""Learning from editors' decisions: DPO on the preference pairs of ``copydesk feedback export``.

``copydesk styles train NAME --method dpo --feedback pairs.jsonl`` starts from the style's **served** adapter
version (an SFT version, checked against the configured base model by name and weights) and trains it
further with TRL's :class:`~trl.DPOTrainer` on the pairs (an approved text over a rejected or sent-back one of
the same brief; an editor's edit over the draft it replaced). The prompt of a pair is exactly what the pipeline
sends for its brief (:func:`worker.lab.examples.messages_for`), rendered through the chat template by TRL.

The reference policy is that served version itself: the trainer gets a :class:`~peft.PeftModel` holding it as
a trainable adapter, and TRL copies it into a frozen ``ref`` adapter on the same base model (``ref_model=None``),
so the DPO rewards are ``beta * log(pi / pi_sft)`` and the base weights never change. A stable share of the
pairs (by a hash of the article id, so that two pairs of one article never straddle the split) is held out;
their preference accuracy (share of pairs whose chosen text gets the higher reward) and mean reward margin
are measured before training (the SFT version: 0 and 0 by construction, as it is its own reference) and for
the kept epoch, and recorded in the new version's ``metrics.json``. The new version is written like any other
(:mod:`worker.lab.dpo_version`) and served only after ``copydesk styles promote``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.config import Settings
from worker.errors import TrainingError
from worker.intake.briefs import Brief
from worker.lab.examples import Example, messages_for
from worker.lab.options import TrainingOptions
from worker.lab.training_runs import style_lock, training_root
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import Style, StyleCatalog
from worker.styles.layout import adapter_ref

logger = logging.getLogger(__name__)

PAIR_KEYS = ("style", "brief", "chosen", "rejected", "article_id")


@dataclass(frozen=True)
class Pair:
    """One preference pair: the brief, the text an editor preferred and the one they did not."""

    id: str
    article_id: str
    brief: Brief
    chosen: str
    rejected: str


def _pair(data: Any, where: str) -> tuple[str, Pair]:
    if not isinstance(data, dict):
        raise TrainingError(f"{where}: a preference pair must be a JSON object")
    missing = [key for key in PAIR_KEYS if key not in data]
    if missing:
        raise TrainingError(f"{where}: missing {', '.join(missing)} (is this the SFT file? pass the .pairs.jsonl file)")
    chosen, rejected, brief = data["chosen"], data["rejected"], data["brief"]
    if not all(isinstance(text, str) and text.strip() for text in (chosen, rejected)):
        raise TrainingError(f"{where}: chosen and rejected must be non-empty Markdown")
    if not isinstance(brief, dict):
        raise TrainingError(f"{where}: brief must be an object of brief fields")
    try:
        parsed = Brief.model_validate({key: value for key, value in brief.items() if key != "style"})
    except ValidationError as exc:
        raise TrainingError(f"{where}: the brief is invalid: {exc.errors()[0]['msg']}") from exc
    article = str(data["article_id"])
    revisions = f"r{data.get('chosen_revision', '?')}-over-r{data.get('rejected_revision', '?')}"
    return str(data["style"]), Pair(f"{article}-{revisions}", article, parsed, chosen.strip(), rejected.strip())


def read_pairs(path: Path, style: str) -> list[Pair]:
    """The preference pairs of ``style`` in a pairs file of ``copydesk feedback export`` (blank lines skipped;
    a malformed line is an error naming the file and line)."""
    if not path.is_file():
        raise TrainingError(f"preference pairs file {path} does not exist (write it with `copydesk feedback export`)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read the preference pairs file {path}: {exc}") from exc
    pairs: list[Pair] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        owner, pair = _pair(data, f"{path}:{number}")
        if owner == style and pair.chosen != pair.rejected:
            pairs.append(pair)
    return pairs


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """``(train, held out)``: a stable share of the articles (by a hash of article id and seed) is held out with
    all its pairs. At least one article trains and at least one is held out."""
    articles = sorted({p.article_id for p in pairs}, key=lambda a: hashlib.sha256(f"{seed}:{a}".encode()).hexdigest())
    if len(articles) < 2:
        raise TrainingError(
            f"DPO needs preference pairs of at least two articles of the style (one to train, one to hold out); "
            f"found {len(articles)}"
        )
    held = set(articles[: min(len(articles) - 1, max(1, round(len(articles) * fraction)))])
    return [p for p in pairs if p.article_id not in held], [p for p in pairs if p.article_id in held]


def preference_records(pairs: Sequence[Pair], style: Style, renderer: PromptRenderer) -> list[dict[str, Any]]:
    """Conversational preference records for TRL: the pipeline's prompt, the chosen and the rejected answer."""
    records = []
    for pair in pairs:
        prompt = messages_for(Example(pair.id, "feedback", pair.brief, pair.chosen), style, renderer)
        records.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
            }
        )
    return records


@dataclass
class DpoRun:
    """One DPO run: the style, its reference (served) version, the pairs, and where the run lives."""

    style: Style
    reference: str
    options: TrainingOptions
    train: list[Pair]
    heldout: list[Pair]
    run_dir: Path
    pairs_file: Path


def train_dpo(
    settings: Settings,
    style_name: str,
    pairs_file: Path | None,
    options: TrainingOptions,
    *,
    progress: Any = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train a new version of ``style_name`` from its served version on ``pairs_file``; a ``TrainResult``."""
    style = StyleCatalog.for_settings(settings).get(style_name)
    if pairs_file is None:
        raise TrainingError("DPO trains on preference pairs: give --feedback PAIRS.jsonl (from `feedback export`)")
    pairs = read_pairs(pairs_file, style.name)
    if not pairs:
        raise TrainingError(f"{pairs_file} holds no preference pairs of style {style.name!r}")
    served = style.served_version()  # on the configured base model; a StyleError when it serves nothing there
    if served is None:
        raise TrainingError(
            f"style {style.name!r} serves no adapter version: DPO starts from the served SFT version; "
            "train one (`styles train --corpus`) and promote it first"
        )
    train, heldout = split_pairs(pairs, options.eval_fraction, options.seed)
    with style_lock(settings, style.name):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        run_dir = training_root(settings, style.name) / f"dpo-{stamp}"
        run_dir.mkdir(parents=True)
        run = DpoRun(style, served, options, train, heldout, run_dir, pairs_file)
        return _execute(settings, run, progress, list(callbacks))


def _execute(settings: Settings, run: DpoRun, progress: Any, callbacks: list[Any]) -> Any:
    import shutil

    import torch

    from worker.engine.adapters import check_adapter
    from worker.engine.base_model import resolve_base_model
    from worker.engine.placement import pick_device
    from worker.lab.dpo_version import save_dpo_version
    from worker.lab.training import TrainResult, _tokenizer, quiet_libraries

    quiet_libraries()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = pick_device(settings.device)
    source = resolve_base_model(settings)
    check_adapter(adapter_ref(run.style, run.reference), source.model_id, source.weights_hash)
    started = time.perf_counter()
    tokenizer = _tokenizer(source)
    trainer = _trainer(settings, run, source, tokenizer, device, callbacks, progress)
    before = heldout_figures(trainer.evaluate())
    trainer.train()
    after = heldout_figures(trainer.evaluate())
    metrics = _metrics(trainer, run, before, after, time.perf_counter() - started)
    warning = drift_warning(after, run.options.dpo_beta, run.reference)
    metrics["warnings"] = [warning] if warning else []
    if warning:
        logger.warning("%s: %s", run.style.name, warning)
    version, directory = save_dpo_version(run, trainer, tokenizer, source, metrics)
    if not run.options.keep_checkpoints:
        shutil.rmtree(run.run_dir / "checkpoints", ignore_errors=True)
    logger.info("trained %s %s by DPO from %s: %s", run.style.name, version, run.reference, after)
    return TrainResult(run.style.name, version, directory, metrics, run.run_dir, trainer.model)


def _dpo_config(options: TrainingOptions, run_dir: Path, device: str) -> Any:
    from trl import DPOConfig

    from worker.lab.training import trainer_arguments

    return DPOConfig(
        **trainer_arguments(options, run_dir, device),
        beta=options.dpo_beta,
        per_device_eval_batch_size=1,  # per-pair figures: the held-out means are over pairs, not batches
    )


def _trainer(
    settings: Settings,
    run: DpoRun,
    source: Any,
    tokenizer: Any,
    device: str,
    callbacks: list[Any],
    progress: Any,
) -> Any:
    """TRL's DPOTrainer on the fp32 base model with the served version loaded as the trainable adapter; TRL
    keeps a frozen copy of it as the reference (``ref_model=None`` with a PeftModel)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, EarlyStoppingCallback, PrinterCallback
    from trl import DPOTrainer

    from worker.lab.training import _progress_callback

    renderer = PromptRenderer(settings.templates_dir)
    base = AutoModelForCausalLM.from_pretrained(source.directory, dtype=torch.float32, use_safetensors=True)
    reference_dir = adapter_ref(run.style, run.reference).directory
    model = PeftModel.from_pretrained(base, str(reference_dir), is_trainable=True)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=_dpo_config(run.options, run.run_dir, device),
        train_dataset=Dataset.from_list(preference_records(run.train, run.style, renderer)),
        eval_dataset=Dataset.from_list(preference_records(run.heldout, run.style, renderer)),
        processing_class=tokenizer,
        callbacks=[*callbacks, EarlyStoppingCallback(early_stopping_patience=run.options.early_stopping_patience)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_progress_callback(progress))
    return trainer


def heldout_figures(evaluation: dict[str, Any]) -> dict[str, float | None]:
    """The held-out pairs' DPO loss, preference accuracy and mean reward margin from ``trainer.evaluate()``."""

    def number(key: str) -> float | None:
        value = evaluation.get(key)
        return round(float(value), 6) if value is not None else None

    return {
        "loss": number("eval_loss"),
        "preference_accuracy": number("eval_rewards/accuracies"),
        "reward_margin": number("eval_rewards/margins"),
        "reward_chosen": number("eval_rewards/chosen"),
        "reward_rejected": number("eval_rewards/rejected"),
    }


DRIFT_NATS = 20.0  # held-out approved texts losing more log-likelihood than this each: warn


def drift_warning(heldout: dict[str, float | None], beta: float, reference: str) -> str | None:
    """A warning when training pushed down the held-out *approved* texts too, not only the rejected ones.

    DPO only needs the chosen text's reward above the rejected one's; when both fall, the policy is leaving
    what editors approved along with what they rejected — the over-optimised run in docs/styles.md (chosen
    reward -35.8 at beta 0.1: -358 nats per approved text) wrote drafts the voice classifier no longer
    recognised. The chosen reward is ``beta`` times the log-likelihood change against the reference.
    """
    chosen = heldout.get("reward_chosen")
    if chosen is None or beta <= 0:
        return None
    nats = chosen / beta
    if nats >= -DRIFT_NATS:
        return None
    return (
        f"the held-out approved texts became {-nats:.0f} nats less likely each than under {reference} "
        f"(reward chosen {chosen:+.2f}): the version moves away from approved texts too, not only from rejected "
        f"ones, and its voice may have drifted; check it with `styles eval --against {reference}` before "
        "promoting, or train again with a lower --lr"
    )


def _metrics(
    trainer: Any, run: DpoRun, before: dict[str, Any], after: dict[str, Any], seconds: float
) -> dict[str, Any]:
    from worker.lab.training import _log_history

    state = trainer.state
    return {
        "method": "dpo",
        "reference_version": run.reference,
        "beta": run.options.dpo_beta,
        "heldout_before": before,  # the reference (SFT) version: its own reference, so 0 margin and 0 accuracy
        "heldout": after,
        "epochs_run": round(float(state.epoch or 0), 3),
        "epochs_max": run.options.epochs,
        "steps": state.global_step,
        "best_dpo_eval_loss": after["loss"],  # not an LM loss: `best_eval_loss` of SFT versions is one
        "history": _log_history(state.log_history),
        "train_pairs": len(run.train),
        "heldout_pairs": len(run.heldout),
        "heldout_articles": sorted({p.article_id for p in run.heldout}),
        "seconds": round(seconds, 1),
    }
