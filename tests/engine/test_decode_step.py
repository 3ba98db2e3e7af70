"""Unit tests of :mod:`worker.engine.decode_step`: the lean decode step gives the model's own logits, to the bit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_fixtures import FAMILY_NAMES, TinyModel, one_torch_thread, tiny_family

from worker.engine.adapters import AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.decode_step import DecodeStep, decode_step_for
from worker.engine.engine import Engine, GenerationRequest
from worker.engine.grouped_projections import forget_outputs, group_projections
from worker.engine.kv_cache import preallocated_cache
from worker.engine.lora_batch import BASE, grouped_lora
from worker.engine.packed_linear import pack_linears
from worker.engine.prompt_attention import attending_prompts_once, shared_prompt_cache
from worker.engine.sampling import RowSettings

__all__ = ["one_torch_thread"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Families whose forward the lean step reproduces, among the tiny ones (Gemma 3 and Phi-3 keep the model's forward).
LEAN_FAMILIES = [name for name in FAMILY_NAMES if name not in {"gemma3", "phi3"}]
PROMPTS = [[5, 9, 11, 3, 7, 2], [4, 8, 6], [3, 3, 9, 12]]  # of different lengths: the shorter ones are left-padded
ROWS = [0, 0, 1, 1, 1, 2]  # each prompt's rows (a brief's candidates), as the engine attends them


@pytest.fixture(scope="module", params=LEAN_FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_family(request.param, tmp_path_factory)


def engine_for(family: TinyModel, *, groups: bool = True) -> Engine:
    source = BaseModelSource(family.model_id, family.model_dir, weights_hash(family.model_dir))
    return Engine(source, device="cpu", dtype=torch.bfloat16, batch_size=8, group_projections=groups)


def prefilled(model: Any, layers: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The prompts prefilled into a cache (left padding, as the engine does); their mask and last positions."""
    width = max(len(p) for p in PROMPTS)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = preallocated_cache(model, width)
    assert len(cache.layers) == layers
    model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
    return cache, mask, positions[:, -1:]


def both_ways(model: Any, names: list[str] | None, steps: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each step's logits through the model's forward (over one shared-prompt cache) and through the lean step (over
    another), from the same prefill and the same tokens; ``names``: each prompt's adapter (its rows')."""
    layers = int(model.config.get_text_config(decoder=True).num_hidden_layers)
    grouped = grouped_lora(model, names) if names else None
    try:
        with torch.inference_mode():
            cache, mask, last = prefilled(model, layers)
            rows = torch.tensor(ROWS)
            if grouped is not None:
                grouped.keep(rows)
            plain_cache = shared_prompt_cache(cache, mask, rows, steps)
            lean_cache = shared_prompt_cache(cache, mask, rows, steps)
            lean = decode_step_for(model)
            assert lean is not None
            positions, step_mask = last[rows], mask[rows]
            pairs = []
            for step in range(steps):
                ids = torch.tensor([[10 + step + row] for row in range(len(ROWS))])
                positions = positions + 1
                step_mask = torch.cat([step_mask, step_mask.new_ones(len(ROWS), 1)], dim=1)
                with attending_prompts_once(model, plain_cache):
                    plain = model(
                        input_ids=ids,
                        attention_mask=step_mask,
                        position_ids=positions,
                        cache=plain_cache,
                        use_cache=True,
                        logits_to_keep=1,
                    ).logits[:, -1, :]
                pairs.append((plain, lean.logits(ids, positions, lean_cache)))
            return pairs
    finally:
        if grouped is not None:
            grouped.close()
        forget_outputs(model)


@pytest.mark.parametrize("groups", [True, False], ids=["grouped-projections", "separate-projections"])
def test_logits_equal_the_models_forward_to_the_bit(family: TinyModel, groups: bool) -> None:
    """bf16, packed products, every row on its own adapter or the base model through the grouped LoRA products."""
    engine = engine_for(family, groups=groups)
    engine.load_adapter(AdapterRef("style-a", "v1", family.adapter_a_dir))
    engine.load_adapter(AdapterRef("style-b", "v1", family.adapter_b_dir))
    for plain, lean in both_ways(engine.model, ["style-a", "style-b", BASE]):
        assert plain.dtype == torch.bfloat16 and plain.shape == lean.shape
        assert torch.equal(plain, lean)


def test_logits_equal_the_models_forward_without_adapters(family: TinyModel) -> None:
    engine = engine_for(family)
    for plain, lean in both_ways(engine.model, None):
        assert torch.equal(plain, lean)


def tiny_qwen3(*, groups: bool) -> Any:
    """A tiny random Qwen3 (per-head q/k norms), prepared as the engine prepares a bf16 model."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        use_sliding_window=False,
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    with torch.no_grad():  # norms of ones would hide a norm applied in the wrong place
        for module in model.modules():
            if "RMSNorm" in type(module).__name__:
                module.weight.uniform_(0.5, 1.5)
    if groups:
        group_projections(model, 8)
    pack_linears(model, 8)
    return model


@pytest.mark.parametrize("groups", [True, False], ids=["grouped-projections", "separate-projections"])
def test_qwen3s_query_and_key_norms_are_applied_as_its_forward_does(groups: bool) -> None:
    for plain, lean in both_ways(tiny_qwen3(groups=groups), None):
        assert torch.equal(plain, lean)


@pytest.mark.parametrize("name", ["gemma3", "phi3"])
def test_other_families_keep_the_models_forward(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert decode_step_for(engine_for(tiny_family(name, tmp_path_factory)).model) is None


def requests(adapter: AdapterRef | None) -> list[GenerationRequest]:
    plan = [("Tea", adapter, 10), ("Tea", adapter, 10), ("Lisbon", None, 4), ("Lisbon", None, 10)]
    out = []
    for index, (topic, ref, budget) in enumerate(plan):
        messages = [{"role": "system", "content": "You write short articles."}, {"role": "user", "content": topic}]
        out.append(GenerationRequest(f"r{index}", messages, RowSettings(0.8, 0.9, 1.15, budget, index), ref))
    return out


def generate_counting(engine: Engine, batch: list[GenerationRequest]) -> tuple[list[tuple[str, int]], int]:
    """The outputs' texts and token counts, and how many decode steps went through the lean step."""
    calls = 0
    original = DecodeStep.logits

    def spy(self: DecodeStep, *args: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return original(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DecodeStep, "logits", spy)
        outputs = engine.generate(batch)
    return [(o.text, o.new_tokens) for o in outputs], calls


def test_the_engine_samples_the_same_texts_through_it(family: TinyModel) -> None:
    """Sampled rows (a row ending early leaves the batch) on an adapter and the base model: the same texts with the
    lean step as through the model's forward, and the lean step did run."""
    engine = engine_for(family)
    adapter = AdapterRef("style-a", "v1", family.adapter_a_dir)
    engine.load_adapter(adapter)
    assert engine.attend_prompts_once and engine.lean_decode
    lean, calls = generate_counting(engine, requests(adapter))
    engine.lean_decode = False
    plain, plain_calls = generate_counting(engine, requests(adapter))
    assert calls > 0 and plain_calls == 0
    assert lean == plain


def test_a_batch_peft_mixes_itself_keeps_the_models_forward(family: TinyModel) -> None:
    """Only base rows with an adapter loaded: PEFT's ``adapter_names`` path, whose hooks the lean step would skip."""
    engine = engine_for(family)
    engine.load_adapter(AdapterRef("style-a", "v1", family.adapter_a_dir))
    _, calls = generate_counting(engine, requests(None))
    assert calls == 0
