"""Unit tests of :mod:`worker.engine.prompt_attention`: one copy of each prompt, attended by all its rows at once."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import FAMILY_NAMES, TinyModel, tiny_family

from worker.engine import prompt_attention
from worker.engine.adapters import AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine, GenerationOutput, GenerationRequest
from worker.engine.placement import cpu_has_amx
from worker.engine.prompt_attention import (
    GROWTH,
    SharedPromptLayer,
    key_side_scores,
    query_side_scores,
    scores_from_key_side,
    supports,
)
from worker.engine.sampling import RowSettings
from worker.errors import ModelError

KV_HEADS, GROUP, DIM = 2, 3, 8


def layer_and_reference(
    prompt_of_row: list[int],
    padding: list[int],
    width: int = 7,
    generated: int = 4,
    dtype: torch.dtype = torch.float32,
    key_side: bool | None = None,
) -> tuple[SharedPromptLayer, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer over random prompts (``padding[p]`` masked columns on the left of prompt ``p``) with ``generated``
    positions per row written one at a time (as decode steps do), and each row's whole keys and values as one cache
    row would hold them."""
    generator = torch.Generator().manual_seed(0)
    prompts, rows = len(padding), len(prompt_of_row)
    prompt_keys = torch.randn(prompts, KV_HEADS, width, DIM, generator=generator).to(dtype)
    prompt_values = torch.randn(prompts, KV_HEADS, width, DIM, generator=generator).to(dtype)
    bias = torch.zeros(prompts, 1, 1, width)
    for prompt, count in enumerate(padding):
        bias[prompt, ..., :count] = float("-inf")
    of_row = torch.tensor(prompt_of_row)
    layer = SharedPromptLayer(
        prompt_keys, prompt_values, bias.to(dtype), of_row, capacity=generated + 2, key_side=key_side
    )
    own_keys = torch.randn(rows, KV_HEADS, generated, DIM, generator=generator).to(dtype)
    own_values = torch.randn(rows, KV_HEADS, generated, DIM, generator=generator).to(dtype)
    for column in range(generated):
        layer.update(own_keys[:, :, column : column + 1], own_values[:, :, column : column + 1])
    keys = torch.cat([prompt_keys[of_row], own_keys], dim=2)
    values = torch.cat([prompt_values[of_row], own_values], dim=2)
    return layer, keys, values, bias[of_row]


def reference(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Plain SDPA of each row over its whole cache row (heads repeated for GQA): [rows, 1, heads, dim]."""
    keys = keys.repeat_interleave(GROUP, dim=1)
    values = values.repeat_interleave(GROUP, dim=1)
    full_bias = torch.cat([bias, torch.zeros(*bias.shape[:3], keys.shape[2] - bias.shape[3])], dim=3)
    out = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=full_bias, scale=0.3)
    return out.transpose(1, 2)


@pytest.mark.parametrize("key_side", [True, False])  # the scores as keys @ query^T (AMX) or query @ keys^T
@pytest.mark.parametrize("generated", [4, GROWTH + 8])  # within the first columns; after the buffers grew
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize(
    ("prompt_of_row", "padding"),
    [
        ([0, 0, 1, 1], [0, 2]),  # a brief's two candidates each
        ([2, 0, 1, 0, 0, 2], [3, 0, 1]),  # uneven groups, rows not in prompt order
        ([0, 1, 2], [0, 0, 4]),  # nothing shared
    ],
)
def test_attention_equals_plain_attention_over_each_rows_whole_cache(
    prompt_of_row: list[int], padding: list[int], dtype: torch.dtype, tolerance: float, generated: int, key_side: bool
) -> None:
    """Against fp32 SDPA over each row's whole cache row; in bf16 on the same bf16-rounded inputs."""
    layer, keys, values, bias = layer_and_reference(
        prompt_of_row, padding, generated=generated, dtype=dtype, key_side=key_side
    )
    assert layer.scores is (key_side_scores if key_side else query_side_scores)
    query = torch.randn(len(prompt_of_row), KV_HEADS * GROUP, 1, DIM, generator=torch.Generator().manual_seed(1))
    got = layer.attend(query.to(dtype), 0.3)
    assert got.shape == (len(prompt_of_row), 1, KV_HEADS * GROUP, DIM) and got.dtype == dtype
    expected = reference(query.to(dtype).float(), keys.float(), values.float(), bias)
    torch.testing.assert_close(got.float(), expected, rtol=tolerance, atol=tolerance)


def test_the_scores_are_taken_from_the_key_side_by_default_only_on_an_amx_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    layer, *_ = layer_and_reference([0, 0, 1], [0, 1])
    assert scores_from_key_side() == cpu_has_amx()
    assert layer.scores is (key_side_scores if cpu_has_amx() else query_side_scores)
    monkeypatch.setattr(prompt_attention, "scores_from_key_side", lambda: True)
    assert layer_and_reference([0, 0, 1], [0, 1])[0].scores is key_side_scores
    monkeypatch.setattr(prompt_attention, "scores_from_key_side", lambda: False)
    assert layer_and_reference([0, 0, 1], [0, 1])[0].scores is query_side_scores
    assert layer_and_reference([0, 0, 1], [0, 1], key_side=True)[0].scores is key_side_scores  # asked for: kept


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_in_prompt_order_pack_by_reshapes_alone_to_the_same_bits(dtype: torch.dtype) -> None:
    layer, *_ = layer_and_reference([0, 0, 1, 1, 2, 2], [0, 2, 1], dtype=dtype)
    assert layer.pack is None and layer.unpack is None  # each prompt's rows side by side, in slot order
    query = torch.randn(6, KV_HEADS * GROUP, 1, DIM, generator=torch.Generator().manual_seed(2)).to(dtype)
    by_reshapes = layer.attend(query, 0.3)
    layer.pack = layer.unpack = torch.arange(6)  # the same packing by row selection
    assert torch.equal(layer.attend(query, 0.3), by_reshapes)
    assert layer_and_reference([0, 1, 0, 1], [0, 0])[0].pack is not None  # rows not in prompt order
    assert layer_and_reference([0, 0, 1], [0, 0])[0].pack is not None  # a slot filled by a repeated row


def test_rows_leaving_drop_prompts_nobody_uses() -> None:
    layer, keys, values, bias = layer_and_reference([0, 0, 1, 2, 2], [1, 0, 2])
    keep = torch.tensor([0, 3, 4])  # prompt 1's only row leaves
    layer.batch_select_indices(keep)
    assert layer.prompt_keys.shape[0] == 2 and layer.get_seq_length() == 7 + 4
    new_keys = torch.randn(3, KV_HEADS, 1, DIM)
    new_values = torch.randn(3, KV_HEADS, 1, DIM)
    layer.update(new_keys, new_values)
    keys = torch.cat([keys[keep], new_keys], dim=2)
    values = torch.cat([values[keep], new_values], dim=2)
    query = torch.randn(3, KV_HEADS * GROUP, 1, DIM)
    torch.testing.assert_close(
        layer.attend(query, 0.3), reference(query, keys, values, bias[keep]), rtol=1e-5, atol=1e-5
    )


def test_the_generated_part_grows_a_block_at_a_time_up_to_the_capacity() -> None:
    prompt = torch.zeros(1, KV_HEADS, 7, DIM)
    layer = SharedPromptLayer(prompt, prompt, torch.zeros(1, 1, 1, 7), torch.tensor([0, 0]), capacity=GROWTH + 5)
    layer.update(torch.zeros(2, KV_HEADS, 1, DIM), torch.zeros(2, KV_HEADS, 1, DIM))
    assert layer.key_buffer.shape[2] == GROWTH and layer.get_seq_length() == 7 + 1
    layer.update(torch.zeros(2, KV_HEADS, GROWTH, DIM), torch.zeros(2, KV_HEADS, GROWTH, DIM))
    assert layer.key_buffer.shape[2] == layer.value_buffer.shape[2] == GROWTH + 5  # not 2 * GROWTH: the capacity
    assert layer.keys.shape[2] == GROWTH + 1


def test_overflowing_the_generated_part_is_an_error() -> None:
    layer, _, _, _ = layer_and_reference([0, 0], [0], generated=4)
    layer.update(torch.zeros(2, KV_HEADS, 2, DIM), torch.zeros(2, KV_HEADS, 2, DIM))
    with pytest.raises(RuntimeError, match="overflow"):
        layer.update(torch.zeros(2, KV_HEADS, 1, DIM), torch.zeros(2, KV_HEADS, 1, DIM))


def test_every_row_leaving_empties_the_layer() -> None:
    layer, _, _, _ = layer_and_reference([0, 0, 1], [1, 0])
    layer.batch_select_indices(torch.tensor([], dtype=torch.long))
    assert layer.prompt_keys.shape[0] == layer.prompt_bias.shape[0] == 0 and layer.key_buffer.shape[0] == 0
    assert layer.pack is None and layer.unpack is None and layer.get_seq_length() == 7 + 4  # nothing to select
    assert layer.attend(torch.zeros(0, KV_HEADS * GROUP, 1, DIM), 0.3).shape == (0, 1, KV_HEADS * GROUP, DIM)


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [
        ("crop", (-1,)),  # drop the last position (transformers' own calls; 0 too)
        ("batch_repeat_interleave", (2,)),
        ("reorder_cache", (torch.tensor([1, 0]),)),
        ("reset", ()),
        ("offload", ()),
        ("prefetch", ()),
    ],
)
def test_other_ways_to_change_the_cache_are_refused(operation: str, arguments: tuple[object, ...]) -> None:
    """DynamicLayer's versions would change ``keys``/``values`` alone and leave the prompt part and buffers behind."""
    layer, _, _, _ = layer_and_reference([0, 1], [0, 0])
    with pytest.raises(NotImplementedError, match=operation):
        getattr(layer, operation)(*arguments)
    assert layer.get_seq_length() == 7 + 4 and layer.key_buffer.shape[0] == 2


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_family(request.param, tmp_path_factory)


def engine_for(family: TinyModel, dtype: torch.dtype) -> Engine:
    source = BaseModelSource(family.model_id, family.model_dir, weights_hash(family.model_dir))
    return Engine(source, device="cpu", dtype=dtype, batch_size=8)


# The tiny Gemma 3 has a sliding-window layer and the tiny Phi-3 a sliding window on every layer (tests/tiny_model.py).
WINDOWED = {"gemma3", "phi3"}


def test_on_for_bf16_where_every_layer_attends_to_everything(family: TinyModel) -> None:
    plain_attention = family.family not in WINDOWED
    bf16 = engine_for(family, torch.bfloat16)
    assert supports(bf16.model) is plain_attention
    assert bf16.attend_prompts_once is plain_attention
    assert engine_for(family, torch.float32).attend_prompts_once is False  # exact rows


def test_on_in_fp32_without_exact_rows(family: TinyModel) -> None:
    """fp32 without exact rows (what ``dtype: auto`` runs on a CPU without bf16 units) takes bf16's fast paths."""
    source = BaseModelSource(family.model_id, family.model_dir, weights_hash(family.model_dir))
    fast = Engine(source, device="cpu", dtype=torch.float32, batch_size=8, exact_rows=False)
    assert fast.attend_prompts_once is (family.family not in WINDOWED)
    assert fast.share_prefixes and fast.grouped_projections and fast._pad_multiple is None
    with pytest.raises(ModelError, match="exact rows need float32"):
        Engine(source, device="cpu", dtype=torch.bfloat16, batch_size=8, exact_rows=True)


@pytest.fixture(scope="module", params=[name for name in FAMILY_NAMES if name not in WINDOWED])
def full_attention_family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_family(request.param, tmp_path_factory)


def generate_spying(engine: Engine, requests: list[GenerationRequest]) -> tuple[list[GenerationOutput], int]:
    """The engine's outputs and how many decode attentions went through a SharedPromptLayer."""
    calls: list[object] = []
    original = SharedPromptLayer.attend

    def spy(self: SharedPromptLayer, query: torch.Tensor, scale: float | None) -> torch.Tensor:
        calls.append(self)
        return original(self, query, scale)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SharedPromptLayer, "attend", spy)
        outputs = engine.generate(requests)
    return outputs, len(calls)


def requests_for(plan: list[tuple[str, AdapterRef | None, int]]) -> list[GenerationRequest]:
    requests = []
    for index, (topic, ref, budget) in enumerate(plan):
        messages = [{"role": "system", "content": "You write short articles."}, {"role": "user", "content": topic}]
        requests.append(GenerationRequest(f"r{index}", messages, RowSettings(0.0, 1.0, 1.15, budget, index), ref))
    return requests


@pytest.mark.parametrize("lean", [True, False], ids=["lean-step", "model-forward"])
def test_greedy_texts_equal_with_prompts_attended_once(full_attention_family: TinyModel, lean: bool) -> None:
    """Forced on in fp32, where rounding is far below any token's margin: the same greedy texts as one cache row per
    row, for a brief's candidates on the base model and on an adapter (with shared prefixes, forced on too), a row on
    its own, and rows that end early; the model's attention setting and layers are left as they were. Through the
    lean decode step (worker.engine.decode_step) and through the model's forward."""
    family = full_attention_family
    engine = engine_for(family, torch.float32)
    engine.lean_decode = lean
    adapter = AdapterRef("style-a", "v1", family.adapter_a_dir)
    engine.load_adapter(adapter)
    engine.share_prefixes = True
    requests = requests_for(
        [("Tea", None, 12), ("Tea", None, 3), ("Lisbon", adapter, 12), ("Lisbon", adapter, 12), ("Compost", adapter, 8)]
    )
    plain = engine.generate(requests)
    previous = engine.model.config._attn_implementation
    engine.attend_prompts_once = True
    once, calls = generate_spying(engine, requests)
    assert calls > 0, "the shared-prompt attention never ran"
    assert engine.model.config._attn_implementation == previous  # restored after the batch
    assert not any("_copydesk_prompt_layer" in module.__dict__ for module in engine.model.modules())
    assert [o.text for o in once] == [o.text for o in plain]
    assert [o.new_tokens for o in once] == [o.new_tokens for o in plain]


def test_fp32_without_exact_rows_writes_the_exact_engines_greedy_texts(full_attention_family: TinyModel) -> None:
    """Rounding in fp32 is far below any token's margin here: the fast paths (prompts attended once, shared prefixes,
    grouped projections, concatenated LoRA) give the greedy texts of the exact rows, adapters mixed."""
    family = full_attention_family
    source = BaseModelSource(family.model_id, family.model_dir, weights_hash(family.model_dir))
    exact = engine_for(family, torch.float32)
    fast = Engine(source, device="cpu", dtype=torch.float32, batch_size=8, exact_rows=False)
    adapter = AdapterRef("style-a", "v1", family.adapter_a_dir)
    requests = requests_for([("Tea", None, 12), ("Tea", None, 3), ("Lisbon", adapter, 12), ("Lisbon", adapter, 12)])
    once, calls = generate_spying(fast, requests)
    assert calls > 0, "the shared-prompt attention never ran"
    assert [o.text for o in once] == [o.text for o in exact.generate(requests)]


def test_a_prompt_with_many_rows_beside_single_ones_keeps_the_copied_cache(full_attention_family: TinyModel) -> None:
    """Packing pads every prompt to the most rows one has: 4 candidates beside 3 single rows (4 x 4 query slots for 7
    rows) would cost more than the copy, so the engine copies."""
    engine = engine_for(full_attention_family, torch.float32)
    engine.attend_prompts_once = True
    requests = requests_for([("Tea", None, 4)] * 4 + [("Lisbon", None, 4), ("Compost", None, 4), ("Salad", None, 4)])
    _, calls = generate_spying(engine, requests)
    assert calls == 0


@pytest.mark.parametrize("lean", [True, False], ids=["lean-step", "model-forward"])
def test_an_error_inside_the_decode_steps_restores_the_models_attention(
    full_attention_family: TinyModel, lean: bool
) -> None:
    """The config's attention setting and the layers' cache attribute are put back when a decode step raises."""
    engine = engine_for(full_attention_family, torch.float32)
    engine.lean_decode = lean
    engine.attend_prompts_once = True
    previous = engine.model.config._attn_implementation
    requests = requests_for([("Tea", None, 6), ("Tea", None, 6)])
    before = engine.generate(requests)

    def fail(self: SharedPromptLayer, query: torch.Tensor, scale: float | None) -> torch.Tensor:
        raise RuntimeError("planted failure in a decode step")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SharedPromptLayer, "attend", fail)
        with pytest.raises(RuntimeError, match="planted failure"):
            engine.generate(requests)
    assert engine.model.config._attn_implementation == previous
    assert not any("_copydesk_prompt_layer" in module.__dict__ for module in engine.model.modules())
    after = engine.generate(requests)  # and it still serves, as before
    assert [(o.text, o.new_tokens) for o in after] == [(o.text, o.new_tokens) for o in before]
