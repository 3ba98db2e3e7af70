"""Training, serving, evaluation and the memorisation guard on a tiny random model of each family of the engine's
matrix (llama, qwen2, gemma3_text, phi3; ``tests/tiny_model.py``): ``styles train``'s training function writes an
adapter on the family's own layers (Phi-3's fused ``qkv_proj`` for the default ``q_proj``/``v_proj``), the engine
loads it and writes a text with it, held-out perplexity runs through the family's tokenizer and chat template, and
the memorisation guard measures the family's text and catches a training article round-tripped through the
family's tokenizer. Tiny configs, one epoch of two steps: a few seconds per family."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from corpus_fixtures import write_style, write_voice
from model_fixtures import TinyModel, one_torch_thread, tiny_family
from safetensors import safe_open
from tiny_model import FAMILIES
from transformers import AutoTokenizer

from worker.config import Settings
from worker.engine.adapters import ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS, BASE, AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine, GenerationRequest
from worker.engine.sampling import RowSettings
from worker.errors import TrainingError
from worker.lab.eval_inputs import read_heldout
from worker.lab.eval_measures import perplexity
from worker.lab.options import TrainingOptions
from worker.lab.training import TrainResult, train_style
from worker.pipeline.prompts import PromptRenderer
from worker.scoring.memorisation import CorpusIndex, GuardLimits, memorisation_score
from worker.styles.catalog import StyleCatalog

__all__ = ["one_torch_thread"]  # fixture used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"max_length": 320, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "min_words": 30, "eval_fraction": 0.25}
# What the default LoRA targets (q_proj, v_proj) become on each family's layers.
DEFAULT_TARGETS = {"llama": {"q_proj", "v_proj"}, "qwen2": {"q_proj", "v_proj"}, "gemma3": {"q_proj", "v_proj"}}
DEFAULT_TARGETS["phi3"] = {"qkv_proj"}
LIMITS = GuardLimits(max_copied_words=40, max_similarity=0.9, max_copied_share=0.2)


@dataclass(frozen=True)
class Trained:
    tiny: TinyModel
    settings: Settings
    result: TrainResult


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A style ``calm`` trained for one epoch (two steps) on 8 plain articles, on the family's tiny model."""
    tiny = tiny_family(request.param, tmp_path_factory)
    root = tmp_path_factory.mktemp(f"train-{request.param}")
    settings = Settings(
        home=root / "home", styles_dir=root / "styles", model=str(tiny.model_dir), device="cpu", dtype="float32"
    )
    write_style(settings.styles_dir, "calm")
    corpus = write_voice(root / "corpus", "plain", 8)
    options = TrainingOptions(epochs=1, learning_rate=5e-3, **FAST)  # the default targets: q_proj, v_proj
    return Trained(tiny, settings, train_style(settings, "calm", corpus_dir=corpus, options=options))


def engine_for(tiny: TinyModel) -> Engine:
    source = BaseModelSource(tiny.model_id, tiny.model_dir, weights_hash(tiny.model_dir))
    return Engine(source, device="cpu", dtype=torch.float32, batch_size=2)


def test_training_writes_an_adapter_on_the_familys_own_layers(trained: Trained) -> None:
    directory = trained.result.directory
    config = json.loads((directory / ADAPTER_CONFIG).read_text())
    assert set(config["target_modules"]) == DEFAULT_TARGETS[trained.tiny.family]
    assert config["base_model_name_or_path"] == trained.tiny.model_id
    meta = json.loads((directory / ADAPTER_META).read_text())
    assert meta["base_model_weights_sha256"] == weights_hash(trained.tiny.model_dir)
    with safe_open(str(directory / ADAPTER_WEIGHTS), framework="pt") as handle:
        keys = list(handle.keys())
        trained_b = [handle.get_tensor(key) for key in keys if "lora_B" in key]
    assert len(trained_b) == 2 * len(DEFAULT_TARGETS[trained.tiny.family])  # two layers, one per target
    assert all(tensor.abs().sum() > 0 for tensor in trained_b)  # LoRA B starts at zero: training moved it
    tokenizer = AutoTokenizer.from_pretrained(trained.tiny.model_dir)
    assert (directory / "chat_template.jinja").read_text() == tokenizer.chat_template
    metrics = trained.result.metrics
    assert metrics["steps"] == 2 and math.isfinite(metrics["best_eval_loss"])
    assert metrics["best_eval_loss"] < metrics["base_eval_loss"]  # the held-out articles fit better


def test_the_engine_serves_the_trained_adapter_and_perplexity_runs_through_the_chat_template(
    trained: Trained,
) -> None:
    engine = engine_for(trained.tiny)
    ref = AdapterRef("calm", trained.result.version, trained.result.directory)
    engine.load_adapter(ref)
    style = StyleCatalog.load(trained.settings.styles_dir).get("calm")
    renderer = PromptRenderer(trained.settings.templates_dir)
    items = read_heldout(trained.result.directory)
    messages = renderer.render(items[0].brief, style).messages()
    row = RowSettings(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=16, seed=0)
    adapted, base = engine.generate(
        [GenerationRequest("adapted", messages, row, ref), GenerationRequest("base", messages, row, None)]
    )
    assert adapted.new_tokens > 0 and adapted.text  # a random model may well write blank lines
    assert adapted.prompt_tokens == base.prompt_tokens > 0
    with_adapter = perplexity(engine, renderer, style, items, ref.name, max_length=FAST["max_length"])
    without = perplexity(engine, renderer, style, items, BASE, max_length=FAST["max_length"])
    assert math.isfinite(with_adapter) and math.isfinite(without)
    assert with_adapter < without  # the adapter the engine serves is the one that learned the held-out voice


def test_the_memorisation_guard_reads_the_familys_text(trained: Trained) -> None:
    index = CorpusIndex.load(trained.result.directory)
    assert index is not None and len(index.hashes) > 0
    tokenizer = AutoTokenizer.from_pretrained(trained.tiny.model_dir)
    article = read_heldout(trained.result.directory)[0].article  # in the corpus index too (every article is)
    round_trip = tokenizer.decode(tokenizer(article, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
    copied = memorisation_score(index.closeness(round_trip), LIMITS)
    assert not copied.passed and "too close" in copied.detail  # a copy decoded by the family's tokenizer is caught
    random_ids = torch.randint(3, len(tokenizer), (60,), generator=torch.Generator().manual_seed(0)).tolist()
    noise = memorisation_score(index.closeness(tokenizer.decode(random_ids, skip_special_tokens=True)), LIMITS)
    assert noise.passed and noise.value < 0.2


def test_target_names_the_model_lacks_are_refused_naming_its_layers(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = tiny_family("phi3", tmp_path_factory).model_dir
    settings = Settings(home=tmp_path / "home", styles_dir=tmp_path / "styles", model=str(model_dir), device="cpu")
    write_style(settings.styles_dir, "calm")
    corpus = write_voice(tmp_path / "corpus", "plain", 8)
    options = TrainingOptions(epochs=1, target_modules=["c_attn"], **FAST)
    with pytest.raises(TrainingError, match=r"\['c_attn'\] are not linear layers of this 'phi3' model.*qkv_proj"):
        train_style(settings, "calm", corpus_dir=corpus, options=options)


def test_a_max_length_the_prompts_fill_is_refused_with_the_reason(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """TRL drops examples whose prompt alone fills --max-length; with none left, the run says so (not a KeyError)."""
    model_dir = tiny_family("llama", tmp_path_factory).model_dir
    settings = Settings(home=tmp_path / "home", styles_dir=tmp_path / "styles", model=str(model_dir), device="cpu")
    write_style(settings.styles_dir, "calm")
    corpus = write_voice(tmp_path / "corpus", "plain", 8)
    options = TrainingOptions(epochs=1, **{**FAST, "max_length": 64})  # the small tokenizer's prompts are longer
    with pytest.raises(TrainingError, match=r"every training example's prompt fills --max-length 64.*raise"):
        train_style(settings, "calm", corpus_dir=corpus, options=options)
