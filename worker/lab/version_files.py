"""A finished run's adapter version: ``styles/<style>/adapters/vN/`` written through a staging folder and one
rename, so that a version is either complete or absent. What it holds: :data:`worker.styles.layout.VERSION_FILES`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker import __version__
from worker.config import PROJECT_ROOT, Settings
from worker.errors import TrainingError
from worker.files import write_atomic
from worker.lab.corpus import Corpus
from worker.lab.training_runs import Run, read_json, write_json
from worker.scoring.memorisation import CorpusIndex
from worker.scoring.topicality import embed_texts
from worker.styles.catalog import Style
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
    TRAINING_FILE,
    list_version_names,
    versions_dir,
)

logger = logging.getLogger(__name__)


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


def save_version(
    settings: Settings, run: Run, trainer: Any, tokenizer: Any, source: Any, metrics: dict[str, Any], embedder: Any
) -> tuple[str, Path]:
    """Write the run's adapter and everything measured about it as the style's next version; ``(vN, folder)``."""
    corpus = run.corpus
    if corpus is None:
        raise TrainingError("internal: a finished run has no corpus")
    root = versions_dir(run.style)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{run.run_dir.name}"
    shutil.rmtree(staging, ignore_errors=True)
    _save_adapter(staging, trainer.model, source.model_id, tokenizer.chat_template)
    _save_corpus_files(staging, settings, run, corpus, embedder)
    write_json(staging / TRAINING_FILE, _training_record(settings, run, trainer))
    write_json(staging / METRICS_FILE, metrics)
    write_json(staging / ADAPTER_META, _adapter_meta(run, corpus, source))
    version = _publish(staging, run.style)
    meta = read_json(root / version / ADAPTER_META)
    meta["version"] = version
    write_json(root / version / ADAPTER_META, meta)
    return version, root / version


def _save_adapter(staging: Path, model: Any, model_id: str, chat_template: Any) -> None:
    """The PEFT adapter (config and safetensors weights only), naming the base model by its id, and the chat
    template it was trained through."""
    model.save_pretrained(str(staging), safe_serialization=True)
    for leftover in staging.iterdir():  # the PEFT model card names local paths; the metadata says it all
        if leftover.name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    config = read_json(staging / ADAPTER_CONFIG)
    config["base_model_name_or_path"] = model_id
    write_json(staging / ADAPTER_CONFIG, config)
    write_atomic(staging / CHAT_TEMPLATE_FILE, str(chat_template))


def _save_corpus_files(staging: Path, settings: Settings, run: Run, corpus: Corpus, embedder: Any) -> None:
    """The corpus profile and targets, per-article features, the 8-gram index and the held-out articles."""
    from worker.lab.stylometry import profile_texts, targets_from_profile

    profile = profile_texts([a.body for a in corpus.articles], settings.language)
    write_json(staging / PROFILE_FILE, {"profile": profile, "targets": targets_from_profile(profile)})
    heldout_ids = {e.id for e in run.heldout}
    _save_features(staging / FEATURES_FILE, corpus, heldout_ids, settings.language, embedder)
    CorpusIndex.build([e.completion for e in [*run.train, *run.heldout]]).save(staging / NGRAMS_FILE)
    lines = [
        json.dumps({"id": e.id, "brief": e.brief.model_dump(mode="json"), "article": e.completion}, ensure_ascii=False)
        + "\n"
        for e in run.heldout
    ]
    write_atomic(staging / HELDOUT_FILE, "".join(lines))


def _training_record(settings: Settings, run: Run, trainer: Any) -> dict[str, Any]:
    return {
        "options": run.options.model_dump(mode="json"),
        "trainer": "trl.SFTTrainer (prompt-completion, completion-only loss) + peft LoRA",
        "prompt": "worker.pipeline.prompts.PromptRenderer + style system prompt, through the chat template",
        "templates_dir": portable_path(settings.templates_dir),
        "device": trainer.args.device.type,
        "run": run.run_dir.name,
    }


def _adapter_meta(run: Run, corpus: Corpus, source: Any) -> dict[str, Any]:
    return {
        "style": run.style.name,
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
        "heldout_ids": sorted({e.id for e in run.heldout}),  # an article split into sections once
    }


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
