"""Tests of :mod:`worker.evaluation` on the tiny model: held-out perplexity base vs adapter, style fidelity of
generated drafts (profile distance, style classifier), the table and the PNG plot, and refusals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from training_fixtures import World, copy_world, one_torch_thread, tiny_model_dir, trained_world
from typer.testing import CliRunner

from worker.adapters import ADAPTER_META
from worker.cli import app
from worker.embeddings import default_embedder
from worker.engine import Engine
from worker.evaluation import EvalOptions, EvaluationError, StyleClassifier, evaluate_style, report_markdown
from worker.styles import StyleCatalog

__all__ = ["one_torch_thread", "tiny_model_dir", "trained_world"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def world(tmp_path: Path, trained_world: World) -> World:
    return copy_world(trained_world, tmp_path)


def test_eval_reports_perplexity_fidelity_and_writes_table_and_plot(world: World) -> None:
    settings = world.settings()
    v1 = world.styles_dir / "calm" / "adapters" / "v1"
    shutil.copytree(v1, v1.with_name("v2"))  # a second version to compare against
    engine = Engine.from_settings(settings)
    report = evaluate_style(
        settings,
        "calm",
        version="v1",
        against="v2",
        options=EvalOptions(briefs=2, max_new_tokens=24),
        engine=engine,
        embedder=default_embedder(),
    )
    data = report.data
    assert report.variants == ["base", "v1", "v2"]
    assert [row["variant"] for row in data["table"]] == ["base", "v1", "v2", "held-out articles"]
    perplexity = data["perplexity"]
    assert all(math.isfinite(value) and value > 1 for value in perplexity.values())
    assert perplexity["v1"] == perplexity["v2"]  # the same weights
    assert perplexity["v1"] < perplexity["base"]  # the adapter fits its held-out articles better
    for label in ("base", "v1", "v2"):
        fidelity = data["fidelity"][label]
        assert fidelity["profile_distance"] >= 0 and 0 <= fidelity["embedding_distance"] <= 2
        assert 0 <= fidelity["classifier_accuracy"] <= 1
        assert len(data["drafts"][label]) == 2
    assert data["classifier"]["styles"] == ["calm", "stiff"]  # stiff comes from its corpus/ folder
    assert data["classifier"]["sources"]["stiff"] == "corpus/ folder"
    # The real held-out articles are the ceiling: close to the profile and attributed to the style.
    assert data["reference"]["classifier_accuracy"] == 1.0
    assert data["reference"]["profile_distance"] < data["fidelity"]["base"]["profile_distance"]
    assert data["caveats"] == ["only 2 held-out article(s): treat differences as indicative"]  # v2 held out the same

    files = {key: Path(value) for key, value in report.files.items()}
    assert files["plot"] == v1 / "eval" / "against-v2.png"
    assert files["plot"].read_bytes()[:8] == PNG_MAGIC
    assert json.loads(files["json"].read_text())["perplexity"] == perplexity
    markdown = files["markdown"].read_text()
    assert markdown == report_markdown(report)
    assert "| variant | perplexity (held-out) |" in markdown and "| v1 |" in markdown
    assert 0 <= data["fidelity"]["v1"]["stylometric_classifier_accuracy"] <= 1


def test_eval_command_prints_the_table(world: World) -> None:
    output = world.root / "report"
    result = CliRunner().invoke(
        app,
        ["styles", "eval", "calm", "--briefs", "1", "--max-new-tokens", "16", "--output", str(output)],
        env=world.env(),
    )
    assert result.exit_code == 0, result.output
    for text in ("calm v1 against base", "perplexity", "classifier (stylometry)", "held-out articles"):
        assert text in result.output
    assert (output / "against-base.png").read_bytes()[:8] == PNG_MAGIC
    assert (output / "against-base.md").is_file()


def test_eval_refuses_an_adapter_for_another_base_model(world: World) -> None:
    meta_path = world.styles_dir / "calm" / "adapters" / "v1" / ADAPTER_META
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "base_model_id": "some-other-model"}))
    result = CliRunner().invoke(app, ["styles", "eval", "calm"], env=world.env())
    assert result.exit_code == 6
    assert "was trained for base model 'some-other-model'" in result.output


def test_eval_needs_a_version(world: World) -> None:
    settings = world.settings()
    with pytest.raises(EvaluationError, match="no adapter version yet"):
        evaluate_style(settings, "stiff")
    with pytest.raises(EvaluationError, match="has no version 'v7'"):
        evaluate_style(settings, "calm", against="v7")
    with pytest.raises(EvaluationError, match="is the version under evaluation"):
        shutil.copytree(world.styles_dir / "calm" / "adapters" / "v1", world.styles_dir / "calm" / "adapters" / "v2")
        evaluate_style(settings, "calm", version="v2", against="v2")
    assert StyleCatalog.load(settings.styles_dir).names == ["calm", "stiff"]


def test_style_classifier_separates_separable_styles() -> None:
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 1, (10, 3)), rng.normal(4, 1, (10, 3))])
    embeddings = np.vstack([rng.normal(0, 0.1, (10, 5)), rng.normal(1, 0.1, (10, 5))])
    labels = np.array([0] * 10 + [1] * 10)
    classifier = StyleClassifier(["a", "b"]).fit(features, embeddings, labels)
    probabilities = classifier.probabilities(features, embeddings)
    assert (probabilities.argmax(axis=1) == labels).all()
    assert np.allclose(probabilities.sum(axis=1), 1)


# ------------------------------------------------------------------------------------------- shipped adapters


@pytest.mark.real_model
def test_shipped_adapters_load_and_change_the_voice_on_the_real_model(tmp_path: Path) -> None:
    """Every shipped style serves a trained adapter that loads on the real default model and changes its output."""
    import torch

    from worker.adapters import AdapterRef, check_adapter
    from worker.briefs import Brief
    from worker.config import DEFAULT_MODEL, PROJECT_ROOT, Settings
    from worker.engine import GenerationRequest
    from worker.prompts import PromptRenderer
    from worker.sampling import RowSettings

    settings = Settings(home=tmp_path, device="cpu", dtype="float32")
    catalog = StyleCatalog.load(PROJECT_ROOT / "styles")
    engine = Engine.from_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    brief = Brief(title="How to keep herbs fresh", content_type="how-to", target_words=80)
    for name in ("plain-howto", "tech-deepdive", "upbeat-lifestyle"):
        style = catalog.get(name)
        assert style.adapter is not None and style.adapter_dir is not None
        ref = AdapterRef(name, style.adapter, style.adapter_dir)
        check_adapter(ref, DEFAULT_MODEL)
        assert (style.adapter_dir / "adapter_model.safetensors").stat().st_size < 3_000_000
        engine.load_adapter(ref)
        messages = renderer.render(brief, style).messages()
        ids = engine.tokenizer(engine.chat_prompt(messages), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            base = engine.model(**ids, adapter_names=["__base__"]).logits[0, -1]
            tuned = engine.model(**ids, adapter_names=[ref.name]).logits[0, -1]
        assert float((base - tuned).abs().max()) > 1e-2  # the adapter changes the next-token distribution
        row = RowSettings(0.0, 1.0, 1.0, 12, 0)
        (out,) = engine.generate([GenerationRequest(name, messages, row, ref)])
        assert out.new_tokens > 0 and out.text.strip()
