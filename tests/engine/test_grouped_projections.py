"""Tests of :mod:`worker.engine.grouped_projections`: q/k/v and gate/up as one product each, alone and under a
mixed-adapter batch, on every family of the matrix (Phi-3's projections are fused in the model already)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from model_fixtures import FAMILY_NAMES, TinyModel, one_torch_thread, tiny_family

from worker.engine.adapters import BASE, AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine
from worker.engine.grouped_projections import (
    ProjectionGroup,
    group_of,
    group_projections,
    is_grouped,
    model_groups,
    ungroup_unshared,
)
from worker.engine.lora_batch import grouped_lora

__all__ = ["one_torch_thread"]  # fixture used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["Compost", "How to fix a dripping kitchen tap", "Why B-tree indexes make range queries fast", "Tea"]
# Families whose blocks hold separate q/k/v and gate/up layers: two groups per decoder layer.
SEPARATE_PROJECTIONS = {"smollm2", "llama", "qwen2", "gemma3"}


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_family(request.param, tmp_path_factory)


def engine_for(family: TinyModel, *, dtype: torch.dtype = torch.bfloat16, grouped: bool = True) -> Engine:
    source = BaseModelSource(family.model_id, family.model_dir, weights_hash(family.model_dir))
    return Engine(source, device="cpu", dtype=dtype, batch_size=4, group_projections=grouped)


def encoded(engine: Engine) -> Any:
    prompts = [engine.chat_prompt([{"role": "user", "content": text}]) for text in PROMPTS]
    return engine.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


def groups(engine: Engine) -> list[ProjectionGroup]:
    return model_groups(engine.model)


def close_to(got: torch.Tensor, expected: torch.Tensor, real: torch.Tensor) -> bool:
    """bf16 agreement: the grouped product rounds like the separate ones only up to the kernel's blocking."""
    tolerance = 0.05 * float(expected[real].abs().max())
    return torch.allclose(got[real].float(), expected[real].float(), atol=tolerance)


def test_bf16_engine_groups_the_projections_that_share_an_input(family: TinyModel) -> None:
    engine = engine_for(family)
    layers = engine.model.config.get_text_config(decoder=True).num_hidden_layers
    expected = 2 * layers if family.family in SEPARATE_PROJECTIONS else 0
    assert len(groups(engine)) == expected
    assert engine.grouped_projections is True


def test_every_engine_checks_at_load_that_its_groups_share_an_input(
    family: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load probe runs once per model kind and process; the sharing check must run for every engine."""
    if family.family not in SEPARATE_PROJECTIONS:
        pytest.skip(f"{family.family} has no separate projections to group")
    engine_for(family)  # the first engine of this kind in the process: the probe may run here
    calls: list[int] = []
    output = ProjectionGroup.output

    def counted(self: ProjectionGroup, index: int, x: torch.Tensor) -> torch.Tensor:
        calls.append(index)
        return output(self, index, x)

    monkeypatch.setattr(ProjectionGroup, "output", counted)
    engine = engine_for(family)
    assert calls, "no forward went through the second engine's groups before it served"
    assert all(group._input is None for group in groups(engine))  # the check's outputs are not kept


def test_fp32_engine_keeps_its_projections_apart(family: TinyModel) -> None:
    """fp32 promises a row's bits whatever its batch: the separate packed products it was measured with stay."""
    engine = engine_for(family, dtype=torch.float32)
    assert groups(engine) == []
    assert engine.grouped_projections is False


def test_grouped_logits_equal_the_separate_ones(family: TinyModel) -> None:
    grouped, separate = engine_for(family), engine_for(family, grouped=False)
    batch = encoded(grouped)
    with torch.inference_mode():
        got = grouped.model(**batch).logits
        expected = separate.model(**batch).logits
    assert close_to(got, expected, batch["attention_mask"].bool())
    assert all(group.recomputed == 0 for group in groups(grouped))  # each block fed its members one input


def mixed_logits(engine: Engine, family: TinyModel, kept: list[int]) -> tuple[torch.Tensor, ...]:
    """Logits of a mixed batch (two adapters and a base row) under PEFT's path and the concatenated one, the latter
    also after rows leave; then PEFT's again, once the concatenated forward is closed."""
    refs = AdapterRef("style-a", "v1", family.adapter_a_dir), AdapterRef("style-b", "v2", family.adapter_b_dir)
    for ref in refs:
        engine.load_adapter(ref)
    names = [refs[0].name, BASE, refs[1].name, refs[0].name]
    batch = encoded(engine)
    with torch.inference_mode():
        peft_logits = engine.model(**batch, adapter_names=names).logits
        with grouped_lora(engine.model, names) as grouped:
            assert grouped is not None
            assert bool(grouped.groups) == bool(groups(engine))
            logits = engine.model(**batch).logits
            grouped.keep(torch.tensor(kept))
            kept_logits = engine.model(**{k: v[kept] for k, v in batch.items()}).logits
        after = engine.model(**batch, adapter_names=names).logits
    return peft_logits, logits, kept_logits, after, batch["attention_mask"].bool()


def test_mixed_adapter_batch_with_groups_gives_the_ungrouped_logits(family: TinyModel) -> None:
    """Every member's LoRA update as one product per group, base rows among them, rows leaving: the logits of the
    per-layer products (tests/engine/test_engine.py holds those to PEFT's), to bf16 rounding."""
    kept = [3, 1, 2]
    peft_logits, logits, kept_logits, after, real = mixed_logits(engine_for(family), family, kept)
    _, separate, separate_kept, _, _ = mixed_logits(engine_for(family, grouped=False), family, kept)
    assert close_to(logits, separate, real)
    assert close_to(kept_logits, separate_kept, real[kept])
    assert torch.equal(after, peft_logits)  # PEFT's forward and the groups' base-only products are back


@pytest.mark.parametrize("name", sorted(SEPARATE_PROJECTIONS & set(FAMILY_NAMES)))
def test_the_groups_lora_update_is_the_adapters(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Not only close to PEFT: without the update the rows of an adapter differ (so the test above can fail)."""
    family = tiny_family(name, tmp_path_factory)
    engine = engine_for(family)
    ref = AdapterRef("style-a", "v1", family.adapter_a_dir)
    engine.load_adapter(ref)
    batch = encoded(engine)
    names = [ref.name] * len(PROMPTS)
    with torch.inference_mode():
        with grouped_lora(engine.model, names) as grouped:
            assert grouped is not None
            with_update = engine.model(**batch).logits
            for group, _ in grouped.groups:
                group.lora = None
            without = engine.model(**batch).logits
        peft_logits = engine.model(**batch, adapter_names=names).logits
    real = batch["attention_mask"].bool()
    assert (with_update[real].float() - peft_logits[real].float()).abs().max() < 0.1 * peft_logits[real].abs().max()
    assert not close_to(without, with_update, real)  # dropping the update fails the tolerance the tests above use


def test_a_member_called_with_another_input_gets_its_own_output() -> None:
    """A model that fed a group's members different tensors would still get each one's product (only slower)."""
    torch.manual_seed(0)
    holder = torch.nn.Module()
    for name, width in (("q_proj", 8), ("k_proj", 4), ("v_proj", 4)):
        setattr(holder, name, torch.nn.Linear(6, width, bias=name != "k_proj"))
    plain = {
        name: (module.weight.clone(), None if module.bias is None else module.bias.clone())
        for name, module in holder.named_children()
    }
    assert group_projections(holder, batch_hint=32) == 1
    assert all(is_grouped(module) for module in holder.children())
    x, other = torch.randn(3, 6), torch.randn(3, 6)
    with torch.inference_mode():
        q = holder.q_proj(x)
        k = holder.k_proj(other)  # not the group's input: computed again
        v = holder.v_proj(x)  # not the input k's call left: computed again
    group = group_of(holder.q_proj)[0]  # type: ignore[index]
    assert group.recomputed == 2
    for name, out, source in (("q_proj", q, x), ("k_proj", k, other), ("v_proj", v, x)):
        weight, bias = plain[name]
        assert torch.allclose(out, torch.nn.functional.linear(source, weight, bias), atol=1e-5), name


def test_a_weight_changed_in_place_is_concatenated_again() -> None:
    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.gate_proj, holder.up_proj = torch.nn.Linear(6, 5, bias=False), torch.nn.Linear(6, 5, bias=False)
    group_projections(holder, batch_hint=32)
    x = torch.randn(2, 6)
    with torch.no_grad():
        before = holder.up_proj(x), holder.gate_proj(x)
        holder.up_proj.weight.mul_(2.0)
        gate, up = holder.gate_proj(x), holder.up_proj(x)
    assert torch.allclose(up, 2 * before[0], atol=1e-5)
    assert torch.allclose(gate, before[1], atol=1e-6)


def test_layers_of_other_widths_replaced_forwards_or_one_module_twice_are_not_grouped() -> None:
    holder = torch.nn.Module()
    holder.gate_proj, holder.up_proj = torch.nn.Linear(6, 5), torch.nn.Linear(7, 5)
    attention = torch.nn.Module()
    for name in ("q_proj", "k_proj", "v_proj"):
        setattr(attention, name, torch.nn.Linear(6, 4))
    attention.k_proj.forward = lambda x: x  # type: ignore[method-assign]
    twice = torch.nn.Module()
    twice.gate_proj = twice.up_proj = torch.nn.Linear(6, 5)
    assert group_projections(holder, 32) == 0
    assert group_projections(attention, 32) == 0
    assert group_projections(twice, 32) == 0


def attention_holder(bias: tuple[bool, bool, bool] = (True, False, True)) -> torch.nn.Module:
    """q/k/v of other widths, some with a bias (Qwen2 has them on q/k/v, Llama on none)."""
    torch.manual_seed(0)
    holder = torch.nn.Module()
    for (name, width), has_bias in zip((("q_proj", 8), ("k_proj", 4), ("v_proj", 4)), bias, strict=True):
        setattr(holder, name, torch.nn.Linear(6, width, bias=has_bias))
    return holder


def plain_products(holder: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: torch.nn.functional.linear(x, module.weight, module.bias) for name, module in holder.named_children()}


@pytest.mark.parametrize("pack", [True, False])
def test_each_member_gets_its_own_product_from_one_call(pack: bool) -> None:
    """The stashed slices are each member's product (bias included), and the group computed once for the three."""
    holder = attention_holder()
    x = torch.randn(3, 2, 6)
    expected = plain_products(holder, x)
    group_projections(holder, batch_hint=32, pack=pack)
    group = group_of(holder.q_proj)[0]  # type: ignore[index]
    calls = []
    original = group._compute
    group._compute = lambda t: calls.append(t) or original(t)  # type: ignore[method-assign]
    with torch.inference_mode():
        got = {name: module(x) for name, module in holder.named_children()}
    assert len(calls) == 1 and group.recomputed == 0
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5), name


def test_grouped_weights_are_views_of_one_concatenated_weight() -> None:
    holder = attention_holder()
    before = {name: module.weight.clone() for name, module in holder.named_children()}
    group_projections(holder, batch_hint=32)
    group = group_of(holder.k_proj)[0]  # type: ignore[index]
    storage = group.product.weight.untyped_storage().data_ptr()
    for name, module in holder.named_children():
        assert module.weight.untyped_storage().data_ptr() == storage  # no second copy of the values
        assert torch.equal(module.weight, before[name])
        assert isinstance(module.weight, torch.nn.Parameter)


def test_a_bias_changed_in_place_is_concatenated_again() -> None:
    holder = attention_holder()
    group_projections(holder, batch_hint=32)
    x = torch.randn(2, 6)
    with torch.no_grad():
        holder.q_proj(x), holder.k_proj(x), holder.v_proj(x)
        holder.v_proj.bias.add_(1.0)
        got = {name: module(x) for name, module in holder.named_children()}
    expected = plain_products(holder, x)
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5), name


def test_groups_whose_members_get_different_inputs_are_undone() -> None:
    holder = attention_holder()
    group_projections(holder, batch_hint=32)
    x, other = torch.randn(2, 6), torch.randn(2, 6)
    with torch.no_grad():
        holder.q_proj(x), holder.k_proj(other), holder.v_proj(other)
    assert ungroup_unshared(holder) == 1
    assert not any(is_grouped(module) or "forward" in vars(module) for module in holder.children())
    with torch.no_grad():
        got = holder.k_proj(other)
    assert torch.allclose(got, plain_products(holder, other)["k_proj"], atol=1e-6)


def test_fp32_grouped_lora_of_all_linear_and_qv_adapters_gives_pefts_logits(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """In fp32, where rounding cannot hide a wrong column: groups installed by hand on an unpacked engine, an
    adapter on all seven projections (the shipped styles' targets) mixed with a q/v-only one and a base row, so
    that every member of both groups has a LoRA update, some members of one adapter only. PEFT's logits to 1e-4,
    also after rows leave; and the group products are reused for the same adapter set."""
    from tiny_model import build_lora_adapter

    from worker.engine.families import DEFAULT_LORA_TARGETS

    family = tiny_family("llama", tmp_path_factory)
    wide_dir = build_lora_adapter(
        family.model_dir, tmp_path / "wide", base_model_id=family.model_id, seed=5, target_modules=DEFAULT_LORA_TARGETS
    )
    source = BaseModelSource(family.model_id, family.model_dir, weights_hash(family.model_dir))
    engine = Engine(source, device="cpu", dtype=torch.float32, batch_size=4, packed_matmuls=False)
    layers = engine.model.config.num_hidden_layers
    assert group_projections(engine.model, 32) == 2 * layers  # on the base model, as the engine does in bf16
    refs = AdapterRef("style-wide", "v1", wide_dir), AdapterRef("style-a", "v1", family.adapter_a_dir)
    for ref in refs:
        engine.load_adapter(ref)
    names = [refs[0].name, BASE, refs[1].name, refs[0].name]
    batch = encoded(engine)
    kept = [3, 1, 2]
    with torch.inference_mode():
        peft_logits = engine.model(**batch, adapter_names=names).logits  # PEFT's updates on the groups' base products
        with grouped_lora(engine.model, names) as grouped:
            assert grouped is not None
            assert len(grouped.groups) == 2 * layers
            assert all(update is not None for _, update in grouped.groups)
            logits = engine.model(**batch).logits
            grouped.keep(torch.tensor(kept))
            kept_logits = engine.model(**{k: v[kept] for k, v in batch.items()}).logits
            first_products = [update.lora_a for _, update in grouped.groups]  # type: ignore[union-attr]
        with grouped_lora(engine.model, names[::-1]) as again:
            assert again is not None
            assert [u.lora_a for _, u in again.groups] == first_products  # type: ignore[union-attr]
    real = batch["attention_mask"].bool()
    assert torch.allclose(logits[real], peft_logits[real], atol=1e-4)
    assert torch.allclose(kept_logits[real[kept]], peft_logits[kept][real[kept]], atol=1e-4)
    separate = Engine(source, device="cpu", dtype=torch.float32, batch_size=4, packed_matmuls=False)
    for ref in refs:
        separate.load_adapter(ref)
    with torch.inference_mode():
        assert torch.allclose(separate.model(**batch, adapter_names=names).logits[real], peft_logits[real], atol=1e-4)
