"""Unit tests of :mod:`worker.engine.decode_step`: the lean decode step gives the model's own logits, to the bit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_fixtures import FAMILY_NAMES, TinyModel, one_torch_thread, tiny_family
from tiny_model import build_lora_adapter

from worker.engine import decode_step
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
LEAVING_AT = 2  # the step before which two rows leave the batch
# Every projection a LoRA adapter can target in these families: the grouped q/k/v and gate/up updates, o and down.
ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


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


def both_ways(model: Any, names: list[str] | None, steps: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
                if step == LEAVING_AT:  # rows end: prompt 2's only row (its prompt goes) and a candidate of prompt 0
                    keep = torch.tensor([0, 2, 3, 4])
                    for shared in (plain_cache, lean_cache):
                        shared.batch_select_indices(keep)
                    if grouped is not None:
                        grouped.keep(keep)
                    positions, step_mask = positions[keep], step_mask[keep]
                ids = torch.tensor([[10 + step + row] for row in range(positions.shape[0])])
                positions = positions + 1
                step_mask = torch.cat([step_mask, step_mask.new_ones(positions.shape[0], 1)], dim=1)
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


@pytest.fixture(scope="module")
def every_target_adapter(family: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> AdapterRef:
    """An adapter on all seven projections of the family's tiny model (the shared ones target q and v only)."""
    directory = tmp_path_factory.mktemp(f"{family.family}-every-target")
    build_lora_adapter(family.model_dir, directory, base_model_id=family.model_id, seed=3, target_modules=ALL_TARGETS)
    return AdapterRef("style-c", "v1", directory)


def both_ways_recording_routes(model: Any, names: list[str] | None) -> tuple[list[Any], list[bool], list[Any]]:
    """:func:`both_ways`, for every rotation whether q and k went in one pass, and the lean step's blocks (as built
    inside the batch, with the batch's LoRA forwards installed)."""
    adjacent: list[bool] = []
    steps: list[DecodeStep] = []

    def recording_adjacent(q: torch.Tensor, k: torch.Tensor) -> bool:
        adjacent.append(original_adjacent(q, k))
        return adjacent[-1]

    def recording_step(lean_for: Any) -> DecodeStep | None:
        step = decode_step.decode_step_for(lean_for)
        for block in step.blocks if step is not None else []:  # the groups' LoRA updates, while the batch has them
            block.qkv_lora = block.qkv_group is not None and block.qkv_group.lora is not None  # type: ignore[attr-defined]
            block.mlp_lora = block.mlp_group is not None and block.mlp_group.lora is not None  # type: ignore[attr-defined]
        steps.extend([step] if step is not None else [])
        return step

    original_adjacent = decode_step._adjacent
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode_step, "_adjacent", recording_adjacent)
        patch.setitem(globals(), "decode_step_for", recording_step)
        pairs = both_ways(model, names)
    return pairs, adjacent, [block for step in steps for block in step.blocks]


@pytest.mark.parametrize("groups", [True, False], ids=["grouped-projections", "separate-projections"])
def test_logits_equal_the_models_forward_to_the_bit(
    family: TinyModel, every_target_adapter: AdapterRef, groups: bool
) -> None:
    """bf16, packed products, rows on three adapters (one on every projection) and the base model through the grouped
    LoRA products, two rows leaving on the way; grouped, the lean step reads the groups' whole outputs and rotates q
    and k in one pass."""
    engine = engine_for(family, groups=groups)
    a, b, c = (
        AdapterRef("style-a", "v1", family.adapter_a_dir),
        AdapterRef("style-b", "v1", family.adapter_b_dir),
        every_target_adapter,
    )
    for ref in (a, b, c):
        engine.load_adapter(ref)
    for names in ([a.name, b.name, BASE], [c.name, BASE, a.name]):  # the names the adapters are registered under
        pairs, adjacent, blocks = both_ways_recording_routes(engine.model, names)
        for plain, lean in pairs:
            assert plain.dtype == torch.bfloat16 and plain.shape == lean.shape
            assert torch.equal(plain, lean)
        assert adjacent and all(adjacent) is groups
        assert blocks and all((b.qkv_group is not None, b.mlp_group is not None) == (groups, groups) for b in blocks)
        if (
            groups
        ):  # the groups carry the batch's LoRA updates: q/v for every set, gate/up with the every-target adapter
            assert all(b.qkv_lora for b in blocks) and all(b.mlp_lora for b in blocks) is (c.name in names)


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


def test_a_hook_on_a_module_it_would_skip_keeps_the_models_forward(family: TinyModel) -> None:
    """A forward hook on a decoder layer, or on a grouped projection whose call the lean step replaces by a slice:
    the lean step is not built, or calls that member as a module."""
    engine = engine_for(family)
    layer = engine.model.model.layers[0]
    handle = layer.register_forward_hook(lambda *args: None)
    assert decode_step_for(engine.model) is None
    handle.remove()
    assert decode_step_for(engine.model) is not None
    handle = layer.self_attn.k_proj.register_forward_pre_hook(lambda *args: None)
    step = decode_step_for(engine.model)
    assert step is not None and step.blocks[0].qkv_group is None and step.blocks[1].qkv_group is not None
    handle.remove()


def test_a_windowed_layer_keeps_the_models_forward() -> None:
    """A Qwen2 with its sliding window on: the class is one the lean step knows, the attention is not."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, use_sliding_window=True, sliding_window=8,
    )  # fmt: skip
    assert decode_step_for(Qwen2ForCausalLM(config)) is None
    config.use_sliding_window = False
    assert decode_step_for(Qwen2ForCausalLM(config)) is not None
