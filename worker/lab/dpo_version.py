"""A DPO run's adapter as the style's next version: the same folder layout as an SFT version
(:data:`worker.styles.layout.VERSION_FILES`), written through a staging folder and one rename.

The trained adapter (only the policy: TRL's frozen ``ref`` copy is left out) replaces the reference version's
weights; the corpus files (profile, held-out articles, features, the memorisation guard's n-grams) are copied
from the reference version, since the corpus it learnt the voice from is the same. ``copydesk-adapter.json``
names the reference version and its SHA-256, the pairs file and the base model's weights hash.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from typing import Any

from worker import __version__
from worker.engine.adapters import adapter_sha256
from worker.lab.dpo import DpoRun
from worker.lab.training_runs import read_json, write_json
from worker.lab.version_files import _publish, _save_adapter, portable_path
from worker.styles.layout import (
    ADAPTER_META,
    FEATURES_FILE,
    HELDOUT_FILE,
    METRICS_FILE,
    NGRAMS_FILE,
    PROFILE_FILE,
    TRAINING_FILE,
    version_dir,
    versions_dir,
)

logger = logging.getLogger(__name__)

COPIED_FROM_REFERENCE = (PROFILE_FILE, HELDOUT_FILE, FEATURES_FILE, NGRAMS_FILE)


def save_dpo_version(
    run: DpoRun, trainer: Any, tokenizer: Any, source: Any, metrics: dict[str, Any]
) -> tuple[str, Any]:
    """Write the run's adapter and what was measured as the style's next version; ``(vN, folder)``."""
    reference = version_dir(run.style, run.reference)
    staging = versions_dir(run.style) / f".staging-{run.run_dir.name}"
    shutil.rmtree(staging, ignore_errors=True)
    _save_adapter(staging, _PolicyOnly(trainer.model), source.model_id, tokenizer.chat_template)
    for name in COPIED_FROM_REFERENCE:
        if (reference / name).is_file():
            shutil.copy2(reference / name, staging / name)
    write_json(staging / TRAINING_FILE, _training_record(run, trainer))
    write_json(staging / METRICS_FILE, metrics)
    write_json(staging / ADAPTER_META, _meta(run, reference, source))
    version = _publish(staging, run.style)
    directory = versions_dir(run.style) / version
    meta = read_json(directory / ADAPTER_META)
    write_json(directory / ADAPTER_META, {**meta, "version": version})
    return version, directory


class _PolicyOnly:
    """The trained PeftModel as :func:`_save_adapter` saves it: its ``default`` adapter (the policy) only."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def save_pretrained(self, directory: str, **kwargs: Any) -> None:
        self.model.save_pretrained(directory, selected_adapters=["default"], **kwargs)


def _training_record(run: DpoRun, trainer: Any) -> dict[str, Any]:
    return {
        "method": "dpo",
        "options": run.options.model_dump(mode="json"),
        "trainer": "trl.DPOTrainer (sigmoid loss; reference: a frozen copy of the served version) + peft LoRA",
        "reference_version": run.reference,
        "prompt": "worker.pipeline.prompts.PromptRenderer + style system prompt, through the chat template",
        "device": trainer.args.device.type,
        "run": run.run_dir.name,
    }


def _meta(run: DpoRun, reference: Any, source: Any) -> dict[str, Any]:
    reference_meta = read_json(reference / ADAPTER_META) if (reference / ADAPTER_META).is_file() else {}
    return {
        "style": run.style.name,
        "method": "dpo",
        "base_model_id": source.model_id,
        "base_model_weights_sha256": source.weights_hash,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "copydesk_version": __version__,
        "reference": {"version": run.reference, "sha256": adapter_sha256(reference)},
        "corpus": reference_meta.get("corpus", {}),
        "feedback": {
            "pairs_file": portable_path(run.pairs_file),
            "train_pairs": len(run.train),
            "heldout_pairs": len(run.heldout),
        },
        "heldout_ids": reference_meta.get("heldout_ids", []),
    }
