"""Tests of :mod:`worker.lab.training` on the tiny random llama: what is trained (and what is not), the prompts and
labels, the version folder, early stopping, resuming an interrupted run, feedback, locking and the Celery task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from corpus_fixtures import write_style, write_voice
from model_fixtures import TINY_MODEL_ID, one_torch_thread, tiny_model_dir
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerCallback

from worker.config import Settings
from worker.engine.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    PICKLE_SUFFIXES,
    AdapterRef,
    check_adapter,
)
from worker.engine.base_model import weights_hash
from worker.errors import TrainingError
from worker.lab.corpus import load_corpus
from worker.lab.examples import corpus_examples, to_records
from worker.lab.options import TrainingOptions
from worker.lab.training import train_style
from worker.lab.training_runs import style_lock, training_root
from worker.pipeline.prompts import PromptRenderer
from worker.queue.celery_app import TRAIN_QUEUE, TRAIN_TASK, celery_config, make_celery
from worker.scoring.embeddings import default_embedder
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import HELDOUT_FILE, METRICS_FILE, RUN_FILE, VERSION_FILES

__all__ = ["one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"max_length": 160, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "min_words": 30, "eval_fraction": 0.25}


def make_settings(root: Path, model_dir: Path) -> Settings:
    return Settings(home=root / "home", styles_dir=root / "styles", model=str(model_dir), device="cpu", dtype="float32")


def make_world(root: Path, model_dir: Path, n: int = 8) -> tuple[Settings, Path]:
    settings = make_settings(root, model_dir)
    write_style(settings.styles_dir, "calm")
    return settings, write_voice(root / "corpus", "plain", n)


class Capture(TrainerCallback):  # type: ignore[misc]
    """Keeps the first training batch, to check the labels the trainer computes the loss on."""

    def __init__(self) -> None:
        self.batch: dict[str, Any] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **kwargs: Any) -> None:
        if self.batch is None and train_dataloader is not None:
            self.batch = next(iter(train_dataloader))


class Interrupt(TrainerCallback):  # type: ignore[misc]
    """Stops the run (like a killed worker) right after the first checkpoint is written."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("simulated crash after the first checkpoint")


def write_feedback(path: Path, style: str) -> Path:
    lines = [
        {
            "style": style,
            "brief": {"title": "How to oil a hinge", "content_type": "how-to", "target_words": 60},
            "completion": "# How to oil a hinge\n\nPut one drop of oil on the pin. Open and close the door.",
            "article_id": "a-1",
            "revision": 2,
        },
        {
            "style": "other",
            "brief": {"title": "Not ours"},
            "completion": "# x\n\ny",
            "article_id": "a-2",
            "revision": 1,
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("trained")
    settings, corpus_dir = make_world(root, tiny_model_dir)
    capture = Capture()
    result = train_style(
        settings,
        "calm",
        corpus_dir=corpus_dir,
        feedback=write_feedback(root / "feedback.jsonl", "calm"),
        options=TrainingOptions(epochs=2, learning_rate=5e-3, **FAST),
        callbacks=[capture],
        embedder=default_embedder(),
    )
    return {"settings": settings, "corpus_dir": corpus_dir, "result": result, "batch": capture.batch}


# ------------------------------------------------------------------------------------------- weights


def test_adapter_weights_changed_and_base_weights_did_not(trained: dict[str, Any], tiny_model_dir: Path) -> None:
    model = trained["result"].model
    original = load_file(str(tiny_model_dir / "model.safetensors"))
    lora_b = {name: p for name, p in model.named_parameters() if "lora_B" in name}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())  # LoRA B starts at zero
    compared = 0
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        if key in original:
            assert torch.equal(tensor, original[key]), name
            compared += 1
    assert compared >= len(original) - 1  # every base weight (the tied lm_head is not stored separately)
    assert not any(p.requires_grad for name, p in model.named_parameters() if "lora_" not in name)


def test_saved_adapter_is_the_trained_one_and_safetensors_only(trained: dict[str, Any]) -> None:
    directory = trained["result"].directory
    assert directory.name == "v1"
    assert sorted(p.name for p in directory.iterdir()) == sorted(VERSION_FILES)
    assert not [p for p in directory.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    with safe_open(str(directory / ADAPTER_WEIGHTS), framework="pt") as handle:
        keys = list(handle.keys())
        assert keys and all("lora_" in key for key in keys)
        assert any(handle.get_tensor(key).abs().sum() > 0 for key in keys if "lora_B" in key)
    assert (directory / ADAPTER_WEIGHTS).stat().st_size < 200_000
    config = check_adapter(AdapterRef("calm", "v1", directory), TINY_MODEL_ID)  # loadable by the registry
    assert config["r"] == 4 and config["target_modules"] and config["base_model_name_or_path"] == TINY_MODEL_ID


def test_version_metadata_records_base_model_corpus_and_template(trained: dict[str, Any], tiny_model_dir: Path) -> None:
    directory = trained["result"].directory
    meta = json.loads((directory / ADAPTER_META).read_text())
    corpus = load_corpus(trained["corpus_dir"], min_words=30)
    assert meta["version"] == "v1"
    assert meta["base_model_id"] == TINY_MODEL_ID
    assert meta["base_model_weights_sha256"] == weights_hash(tiny_model_dir)
    assert meta["corpus"]["sha256"] == corpus.content_hash()
    assert (meta["corpus"]["articles"], meta["corpus"]["words"]) == (8, corpus.total_words)
    assert meta["feedback"]["examples"] == 1  # the other style's example is not used
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert (directory / "chat_template.jinja").read_text() == tokenizer.chat_template
    training = json.loads((directory / "training.json").read_text())
    assert training["options"]["epochs"] == 2 and training["options"]["learning_rate"] == 5e-3
    heldout = [json.loads(line) for line in (directory / HELDOUT_FILE).read_text().splitlines()]
    assert sorted(h["id"] for h in heldout) == meta["heldout_ids"] and len(heldout) == 2
    profile = json.loads((directory / "profile.json").read_text())
    assert set(profile["targets"]) == {"reading_ease", "grade", "sentiment", "formality", "length_tolerance"}
    with safe_open(str(directory / "corpus_features.safetensors"), framework="pt") as handle:
        assert handle.get_tensor("embeddings").shape == (8, 384)
        assert int(handle.get_tensor("heldout").sum()) == 2


def test_metrics_record_held_out_loss_each_epoch(trained: dict[str, Any]) -> None:
    metrics = json.loads((trained["result"].directory / METRICS_FILE).read_text())
    assert [row["epoch"] for row in metrics["history"]] == [1.0, 2.0]
    assert all("eval_loss" in row and "train_loss" in row for row in metrics["history"])
    assert metrics["best_eval_loss"] == min(row["eval_loss"] for row in metrics["history"])
    assert metrics["base_eval_loss"] > metrics["best_eval_loss"]  # training helped on held-out articles
    assert metrics["train_examples"] == 6 + 1 and metrics["heldout_examples"] == 2
    assert metrics["steps"] == 4  # 7 examples, batches of 4, two epochs
    run = json.loads((trained["result"].run_dir / RUN_FILE).read_text())
    assert run["status"] == "finished" and run["version"] == "v1"
    assert not (trained["result"].run_dir / "checkpoints").exists()  # removed once the version is written


# ------------------------------------------------------------------------------------------- examples


def test_prompts_are_the_pipelines_and_the_loss_reads_the_article_only(
    trained: dict[str, Any], tiny_model_dir: Path
) -> None:
    settings: Settings = trained["settings"]
    style = StyleCatalog.load(settings.styles_dir).get("calm")
    renderer = PromptRenderer(settings.templates_dir)
    examples = corpus_examples(load_corpus(trained["corpus_dir"], min_words=30))
    record = to_records(examples[:1], style, renderer)[0]
    assert record["prompt"] == renderer.render(examples[0].brief, style).messages()
    assert record["prompt"][0] == {"role": "system", "content": "You write short, plain articles."}
    assert record["completion"] == [{"role": "assistant", "content": examples[0].completion}]

    batch = trained["batch"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        text = tokenizer.decode(ids)
        scored = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
        assert "<|im_start|>user" in text  # the prompt is in the input ...
        assert "<|im_start|>" not in scored  # ... but never in the loss
        assert scored.startswith("# Cleaning ")  # the article, from its title line on
        assert len(ids) <= FAST["max_length"]
        if int(batch["attention_mask"].sum(dim=1).min()) < FAST["max_length"]:  # an uncut row ends the turn
            assert any(tokenizer.decode(row).rstrip().endswith("<|im_end|>") for row in batch["labels"].clamp(min=0))


# ------------------------------------------------------------------------------------------- runs


class Overfit(TrainerCallback):  # type: ignore[misc]
    """Makes the held-out loss worse after the first epoch, as overfitting would (runs before early stopping)."""

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if metrics is not None and state.epoch and state.epoch > 1:
            metrics["eval_loss"] += state.epoch


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings, corpus_dir = make_world(tmp_path, tiny_model_dir)
    options = TrainingOptions(epochs=4, learning_rate=5e-3, early_stopping_patience=1, keep_checkpoints=True, **FAST)
    result = train_style(
        settings, "calm", corpus_dir=corpus_dir, options=options, callbacks=[Overfit()], embedder=default_embedder()
    )
    metrics = result.metrics
    assert metrics["stopped_early"] is True
    assert metrics["epochs_run"] == 2.0  # epoch 2 was worse than epoch 1, patience 1
    assert [row["epoch"] for row in metrics["history"]] == [1.0, 2.0]  # (the log shows the losses unaltered)
    assert metrics["best_eval_loss"] == metrics["history"][0]["eval_loss"]
    assert metrics["best_epoch"] == 1.0
    best = load_file(str(result.run_dir / "checkpoints" / "checkpoint-2" / ADAPTER_WEIGHTS))
    last = load_file(str(result.run_dir / "checkpoints" / "checkpoint-4" / ADAPTER_WEIGHTS))
    saved = load_file(str(result.directory / ADAPTER_WEIGHTS))
    assert all(torch.equal(saved[key], best[key]) for key in best)  # the best epoch was kept, not the last
    assert not all(torch.equal(saved[key], last[key]) for key in last)


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings, corpus_dir = make_world(tmp_path, tiny_model_dir)
    options = TrainingOptions(epochs=3, learning_rate=5e-3, early_stopping_patience=5, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train_style(settings, "calm", corpus_dir=corpus_dir, options=options, callbacks=[Interrupt()])
    (run_dir,) = training_root(settings, "calm").glob("run-*")
    assert json.loads((run_dir / RUN_FILE).read_text())["status"] == "interrupted"
    assert [p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    assert not (settings.styles_dir / "calm" / "adapters" / "v1").exists()

    write_voice(corpus_dir, "plain", 1, start=20)  # the corpus changed: resuming would mix two datasets
    with pytest.raises(TrainingError, match="changed since run"):
        train_style(settings, "calm", resume=True)
    shutil.rmtree(corpus_dir / "content" / "posts" / "plain-post-20")

    result = train_style(settings, "calm", resume=True, embedder=default_embedder())  # corpus and options from the run
    assert result.run_dir == run_dir
    assert result.metrics["resumed_from"] == ["checkpoint-2"]
    assert result.metrics["steps"] == 6  # 3 epochs x 2 steps, the first 2 not repeated
    assert [row["epoch"] for row in result.metrics["history"]] == [1.0, 2.0, 3.0]
    assert result.version == "v1"
    with pytest.raises(TrainingError, match="no interrupted training run"):
        train_style(settings, "calm", resume=True)


def test_one_run_per_style_at_a_time_and_clear_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings, corpus_dir = make_world(tmp_path, tiny_model_dir)
    with style_lock(settings, "calm"), pytest.raises(TrainingError, match="in progress"):
        train_style(settings, "calm", corpus_dir=corpus_dir)
    with pytest.raises(TrainingError, match="--corpus"):
        train_style(settings, "calm")
    from worker.errors import StyleError

    with pytest.raises(StyleError, match="unknown style"):
        train_style(settings, "nope", corpus_dir=corpus_dir)


# ------------------------------------------------------------------------------------------- Celery


def test_train_task_is_registered_on_the_train_queue(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = make_settings(tmp_path, tiny_model_dir)
    assert celery_config(settings)["task_routes"][TRAIN_TASK] == {"queue": TRAIN_QUEUE}
    app = make_celery(settings)
    app.loader.import_default_modules()
    assert TRAIN_TASK in app.tasks


def test_train_task_trains_a_version(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.tasks.training as training_tasks

    settings, corpus_dir = make_world(tmp_path, tiny_model_dir)
    monkeypatch.setattr(training_tasks, "_settings", lambda: settings)
    options = TrainingOptions(epochs=1, learning_rate=5e-3, **FAST).model_dump(mode="json")
    refused = {"refused": "corpus path outside styles_dir, home and COPYDESK_TRAINING_ROOTS"}
    assert training_tasks.train_style_task("calm", corpus=str(corpus_dir), options=options) == refused
    assert training_tasks.train_style_task("calm", corpus=str(settings.styles_dir / ".." / "corpus")) == refused
    assert training_tasks.train_style_task("calm", feedback="/etc/passwd")["refused"].startswith("feedback")
    assert not (settings.styles_dir / "calm" / "adapters").exists()
    settings = settings.model_copy(update={"training_roots": [corpus_dir]})
    summary = training_tasks.train_style_task("calm", corpus=str(corpus_dir), options=options)
    json.dumps(summary)  # a JSON result, as the Celery serializer needs
    assert summary["version"] == "v1" and summary["steps"] == 2
    assert (settings.styles_dir / "calm" / "adapters" / "v1" / ADAPTER_CONFIG).is_file()
    assert training_tasks.train_style_task("../etc") == {"ignored": "malformed style name"}
