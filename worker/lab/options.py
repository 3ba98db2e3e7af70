"""How a style is trained and evaluated: every option's default, limits and help text, defined once.

:class:`TrainingOptions` and :class:`EvalOptions` are what :func:`worker.lab.training.train_style` and
:func:`worker.lab.evaluation.evaluate_styles` take; the ``copydesk styles train`` and ``styles eval`` options
are generated from their fields (:mod:`worker.cli.model_options`), and the Celery training task validates its
message with :class:`TrainingOptions`. Light on purpose: the CLI imports it before any model library.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ALL_LINEAR = "all-linear"
MODULE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class TrainingMethod(StrEnum):
    """``sft``: a new adapter from the style's archive (and editors' approved texts); ``dpo``: the served adapter
    trained further on editors' preference pairs (:mod:`worker.lab.dpo`)."""

    SFT = "sft"
    DPO = "dpo"


class TrainingOptions(BaseModel):
    """How one style is trained. Every field has a default fit for a small CPU run."""

    model_config = ConfigDict(extra="forbid")

    method: TrainingMethod = Field(
        TrainingMethod.SFT,
        description="sft: from the corpus (--corpus); dpo: the served version on preference pairs (--feedback).",
    )
    dpo_beta: float = Field(
        0.1, gt=0, le=10, description="DPO only: strength of the pull towards the reference (the served version)."
    )
    epochs: int = Field(3, ge=1, le=100, description="Epochs at most (early stopping may end sooner).")
    learning_rate: float = Field(5e-4, gt=0, le=1, description="AdamW learning rate of the LoRA weights.")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA layers' input while training.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Linear layers that get LoRA weights, or all-linear (every linear layer but the output head).",
    )
    max_length: int = Field(512, ge=32, le=8192, description="Tokens per example (prompt + article), cut at the end.")
    batch_size: int = Field(2, ge=1, le=256, description="Examples per step (and per held-out evaluation batch).")
    gradient_accumulation: int = Field(
        1, ge=1, le=256, description="Steps whose gradients add up before each optimizer step."
    )
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of corpus articles held out for evaluation.")
    early_stopping_patience: int = Field(1, ge=1, description="Epochs without a better held-out loss before stopping.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay of the LoRA weights.")
    seed: int = Field(0, description="Seed of the split, the LoRA initialisation and the data order.")
    min_words: int = Field(60, ge=1, description="Shorter corpus pages are skipped as near-empty.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: no limit). For smoke tests.")
    keep_checkpoints: bool = Field(False, description="Keep the run's Trainer checkpoints after it finished.")
    max_articles: int | None = Field(
        None, ge=2, description="Train on at most this many articles: a stable choice stratified by type and year."
    )
    time_budget: str | None = Field(
        None, description="Stop within this time (45m, 2h, 900s): steps planned from the measured step time."
    )
    sections: bool = Field(
        False, description="Split articles longer than --max-length at headings into sections, not cut at the end."
    )

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


class EvalOptions(BaseModel):
    """How a style version is evaluated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    briefs: int = Field(72, ge=1, description="Shared evaluation briefs to write drafts for (the first N; 72: all).")
    seeds: int = Field(2, ge=1, le=16, description="Drafts per shared brief and variant, each with its own seed.")
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32",
        description="Precision of the drafts: float32 is the engine's exact mode (the same drafts on every run, "
        "verdicts that hold across CPUs); bfloat16 or auto (what serving picks: no exact rows) are faster.",
    )
    max_new_tokens: int = Field(192, description="New tokens per draft at most (the style's budget may cap it).")
    output_dir: Path | None = Field(None, description="Folder for the report (default: adapters/vN/eval/).")
    briefs_file: Path | None = Field(
        None, description="The shared evaluation briefs (default: <styles>/eval-briefs.yaml)."
    )
