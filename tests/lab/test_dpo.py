"""DPO from editors' decisions (:mod:`worker.lab.dpo`) on the tiny model: preference pairs written by the real
``feedback export`` from real decisions in a store, TRL's DPOTrainer starting from the served SFT version (the
trained world's ``calm`` v1), a new version that loads, whose adapter weights moved while the base weights did not,
with its held-out preference accuracy and reward margin recorded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from corpus_fixtures import voice_body
from review_helpers import make_brief, scored_result
from safetensors.torch import load_file
from training_fixtures import FAST, World, copy_world, one_torch_thread, tiny_model_dir, trained_world
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from worker.cli.main import app
from worker.engine.adapters import ADAPTER_META, ADAPTER_WEIGHTS, adapter_sha256, check_adapter
from worker.engine.base_model import weights_hash
from worker.engine.engine import Engine
from worker.errors import TrainingError
from worker.lab.dpo import drift_warning, read_pairs, split_pairs
from worker.lab.options import TrainingMethod, TrainingOptions
from worker.lab.training import train_style
from worker.review.feedback import export_feedback
from worker.store import Store
from worker.styles.catalog import load_style
from worker.styles.layout import VERSION_FILES, adapter_ref
from worker.styles.versions import set_adapter_line

__all__ = ["one_torch_thread", "tiny_model_dir", "trained_world"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STYLE = "calm"


def heading(kind: str, n: int) -> str:
    """A short article in one voice; the two voices differ from the first word of the body on, so that a pair
    still differs where ``max_length`` cuts it."""
    body = voice_body(kind, n, sentences=4).split(". ", 1)[1]  # without the shared "This note is about ..."
    return f"# Cleaning job number {n}\n\n{body}"


def export_pairs(root: Path, articles: int) -> Path:
    """Per article: a formal draft an editor rejected, sent back, and the plain redraft they approved."""
    with Store(f"sqlite:///{root / 'store.db'}") as store:
        store.migrate()
        for n in range(articles):
            brief = make_brief(n, title=f"Cleaning job number {n}")
            store.add_brief(brief, source="test")
            draft = dataclasses.replace(scored_result(brief, heading("formal", n)), style=STYLE)
            article = store.save_article(draft)
            store.reject(article.id, actor="ed", reason="too stiff")
            store.send_back(article.id, actor="ed", feedback="plain words, please")
            redraft = dataclasses.replace(scored_result(brief, heading("plain", n)), style=STYLE)
            store.approve(store.save_article(redraft).id, actor="ed")
        summary = export_feedback(store, root / "feedback.jsonl")
    assert summary.pairs == articles
    return summary.pairs_path


@pytest.fixture
def world(tmp_path: Path, trained_world: World) -> World:
    copied = copy_world(trained_world, tmp_path)
    path = copied.styles_dir / STYLE / "style.yaml"
    path.write_text(set_adapter_line(path.read_text(), "v1"))  # DPO starts from the served version
    return copied


def dpo_options(**extra: object) -> TrainingOptions:
    values = {**FAST, "epochs": 3, "batch_size": 1, "learning_rate": 1e-2, "eval_fraction": 0.34, **extra}
    values["early_stopping_patience"] = 3
    values["max_length"] = 256
    return TrainingOptions(method=TrainingMethod.DPO, **values)  # type: ignore[arg-type]


def test_dpo_writes_a_version_that_loads_with_moved_adapter_weights_and_untouched_base(
    world: World, tmp_path: Path, tiny_model_dir: Path
) -> None:
    pairs = export_pairs(tmp_path, 6)
    base_hash = weights_hash(tiny_model_dir)
    result = train_style(world.settings(), STYLE, feedback=pairs, options=dpo_options())
    assert result.version == "v2"
    folder = result.directory
    assert {path.name for path in folder.iterdir()} >= set(VERSION_FILES)
    assert not (folder / "ref").exists()  # TRL's frozen reference copy is not part of the version
    style = load_style(world.styles_dir / STYLE / "style.yaml")
    check_adapter(adapter_ref(style, "v2"), "tiny-random-llama", base_hash)
    engine = Engine.from_settings(world.settings())
    engine.load_adapter(adapter_ref(style, "v2"))
    assert engine.adapters.sha256(adapter_ref(style, "v2")) == adapter_sha256(folder)

    sft = load_file(str(world.styles_dir / STYLE / "adapters" / "v1" / ADAPTER_WEIGHTS))
    dpo = load_file(str(folder / ADAPTER_WEIGHTS))
    assert sft.keys() == dpo.keys()
    assert any(not torch.equal(sft[key], dpo[key]) for key in sft)

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    trained = {
        key.replace("base_model.model.", "").replace(".base_layer", ""): value
        for key, value in result.model.state_dict().items()
        if "lora_" not in key
    }
    assert all(torch.equal(base[key], trained[key]) for key in base)
    assert weights_hash(tiny_model_dir) == base_hash

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["method"] == "dpo" and metrics["reference_version"] == "v1"
    assert metrics["train_pairs"] + metrics["heldout_pairs"] == 6 and metrics["heldout_pairs"] >= 1
    held = metrics["heldout"]
    assert 0.0 <= held["preference_accuracy"] <= 1.0 and isinstance(held["reward_margin"], float)
    assert metrics["heldout_before"]["reward_margin"] == 0.0  # the reference is the SFT version itself
    assert held["reward_margin"] > 0.0 and held["loss"] < metrics["heldout_before"]["loss"]
    expected = drift_warning(held, dpo_options().dpo_beta, "v1")
    assert metrics["warnings"] == ([expected] if expected else [])
    meta = json.loads((folder / ADAPTER_META).read_text())
    assert meta["reference"] == {"version": "v1", "sha256": adapter_sha256(folder.parent / "v1")}
    assert meta["base_model_weights_sha256"] == base_hash and meta["method"] == "dpo"
    sft_meta = json.loads((folder.parent / "v1" / ADAPTER_META).read_text())
    assert sft_meta["base_model_weights_sha256"] == base_hash  # SFT training records the lineage too


def test_dpo_needs_a_served_version_and_pairs_of_the_style(world: World, tmp_path: Path) -> None:
    pairs = export_pairs(tmp_path, 3)
    path = world.styles_dir / STYLE / "style.yaml"
    path.write_text(set_adapter_line(path.read_text(), None))
    with pytest.raises(TrainingError, match="serves no adapter version"):
        train_style(world.settings(), STYLE, feedback=pairs, options=dpo_options())
    with pytest.raises(TrainingError, match="no preference pairs of style 'stiff'"):
        train_style(world.settings(), "stiff", feedback=pairs, options=dpo_options())
    sft_file = tmp_path / "feedback.jsonl"
    path.write_text(set_adapter_line(path.read_text(), "v1"))
    with pytest.raises(TrainingError, match="is this the SFT file"):
        train_style(world.settings(), STYLE, feedback=sft_file, options=dpo_options())


def test_pairs_are_split_by_article_and_stably(tmp_path: Path) -> None:
    pairs = read_pairs(export_pairs(tmp_path, 6), STYLE)
    assert len(pairs) == 6 and read_pairs(tmp_path / "feedback.pairs.jsonl", "other") == []
    train, held = split_pairs(pairs, 0.34, seed=3)
    assert (len(train), len(held)) == (4, 2)
    assert {p.article_id for p in train}.isdisjoint({p.article_id for p in held})
    assert {p.id for p in split_pairs(list(reversed(pairs)), 0.34, seed=3)[1]} == {p.id for p in held}
    with pytest.raises(TrainingError, match="at least two articles"):
        split_pairs(pairs[:1], 0.5, seed=0)


def test_train_command_takes_method_dpo_and_the_pairs_file(world: World, tmp_path: Path) -> None:
    pairs = export_pairs(tmp_path, 4)
    args = ["styles", "train", STYLE, "--method", "dpo", "--feedback", str(pairs), "--max-steps", "1"]
    args += ["--max-length", "160", "--batch-size", "2", "--eval-fraction", "0.25"]
    result = CliRunner().invoke(app, args, env=world.env())
    assert result.exit_code == 0, result.output
    assert "by DPO from v1" in result.output and "preference accuracy" in result.output
    assert "styles promote calm v2" in result.output


def test_drift_warning_when_the_approved_texts_themselves_became_unlikely() -> None:
    # figures of the two DPO runs in docs/styles.md (beta 0.1): run 2 wrote drafts the classifier no longer
    # recognised, run 3 kept the voice
    run_2 = {"reward_chosen": -35.8, "reward_rejected": -50.2}
    run_3 = {"reward_chosen": 0.51, "reward_rejected": -0.78}
    warning = drift_warning(run_2, 0.1, "v3")
    assert warning is not None and "358 nats" in warning and "--against v3" in warning
    assert drift_warning(run_3, 0.1, "v3") is None
    assert drift_warning({"reward_chosen": -1.9}, 0.1, "v3") is None  # -19 nats: within the limit
    assert drift_warning({"reward_chosen": -2.1}, 0.1, "v3") is not None
    assert drift_warning({"reward_chosen": None}, 0.1, "v3") is None
