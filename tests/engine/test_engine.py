"""Unit tests of :mod:`worker.engine.engine` in fp32: batching, order, adapters, budgets, the KV cache, prefixes.

The generation tests run on every family of the matrix (``model_fixtures.FAMILY_NAMES``): the tiny llama with the
real SmolLM2 tokenizer, and tiny random Llama, Qwen2, Gemma 3 and Phi-3 models with a small tokenizer."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from model_fixtures import (
    FAMILY_NAMES,
    TINY_MODEL_ID,
    TinyModel,
    adapter_a_dir,
    adapter_b_dir,
    copy_dir,
    one_torch_thread,
    tiny_family,
    tiny_model_dir,
)

import worker.engine.engine as engine_module
from worker.engine.adapters import ADAPTER_WEIGHTS, AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine, GenerationOutput, GenerationRequest
from worker.engine.sampling import RowSettings
from worker.errors import AdapterError, ModelError

__all__ = ["adapter_a_dir", "adapter_b_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOPICS = [
    "Compost",
    "How to fix a dripping kitchen tap without calling a plumber",
    "Why B-tree indexes make range queries fast, with one worked example query",
    "Lisbon",
    "Five salads",
    "A gooseneck kettle review for people who make pour-over coffee every single morning",
    "Tea",
]


def make_engine(
    model_dir: Path,
    *,
    batch_size: int = 4,
    adapter_capacity: int = 8,
    model_id: str = TINY_MODEL_ID,
    dtype: torch.dtype = torch.float32,
) -> Engine:
    source = BaseModelSource(model_id, model_dir, weights_hash(model_dir))
    return Engine(source, device="cpu", dtype=dtype, batch_size=batch_size, adapter_capacity=adapter_capacity)


def family_engine(family: TinyModel, **kwargs: Any) -> Engine:
    return make_engine(family.model_dir, model_id=family.model_id, **kwargs)


def request(
    key: str,
    topic: str,
    *,
    seed: int,
    adapter: AdapterRef | None = None,
    max_new_tokens: int = 12,
    temperature: float = 0.9,
) -> GenerationRequest:
    messages = [{"role": "system", "content": "You write short articles."}, {"role": "user", "content": topic}]
    return GenerationRequest(key, messages, RowSettings(temperature, 0.9, 1.15, max_new_tokens, seed), adapter)


def same_text(a: GenerationOutput, b: GenerationOutput) -> bool:
    """Same row result: everything but the batch's wall time."""
    fields = ("key", "text", "new_tokens", "hit_eos", "prompt_tokens")
    return all(getattr(a, name) == getattr(b, name) for name in fields)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny model of one family and its two adapters: every test that uses it runs once per family."""
    return tiny_family(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def base_engine(family: TinyModel) -> Engine:
    """An engine that never loads an adapter (batch size 3, so that 7 requests make 3 batches)."""
    return family_engine(family, batch_size=3)


@pytest.fixture(scope="module")
def adapter_refs(family: TinyModel) -> tuple[AdapterRef, AdapterRef]:
    return AdapterRef("style-a", "v1", family.adapter_a_dir), AdapterRef("style-b", "v2", family.adapter_b_dir)


@pytest.fixture(scope="module")
def adapter_engine(family: TinyModel) -> Engine:
    """An engine that the adapter tests load adapters into (batch size 4)."""
    return family_engine(family, batch_size=4)


# ---------------------------------------------------------------------------------------------- generate


def test_outputs_come_back_in_request_order(base_engine: Engine) -> None:
    requests = [request(f"k{i}", topic, seed=i) for i, topic in enumerate(TOPICS)]
    outputs = base_engine.generate(requests)
    assert [o.key for o in outputs] == [r.key for r in requests]
    for req, out in zip(requests, outputs, strict=True):
        expected = base_engine.tokenizer(base_engine.chat_prompt(req.messages), add_special_tokens=False)
        assert out.prompt_tokens == len(expected["input_ids"])  # padding is not counted
        assert out.seconds > 0
    assert len({o.text for o in outputs}) == len(outputs)
    assert base_engine.generate([]) == []


def test_a_row_in_a_batch_equals_the_row_alone(base_engine: Engine) -> None:
    requests = [request(f"k{i}", topic, seed=100 + i) for i, topic in enumerate(TOPICS)]
    together = base_engine.generate(requests)
    for req, out in zip(requests, together, strict=True):
        alone = base_engine.generate([req])[0]
        assert same_text(alone, out), req.key


def test_same_seed_same_text_other_seed_other_text(base_engine: Engine) -> None:
    first = base_engine.generate([request("a", "Tea", seed=5)])[0]
    again = base_engine.generate([request("a", "Tea", seed=5)])[0]
    other = base_engine.generate([request("a", "Tea", seed=6)])[0]
    assert first.text == again.text
    assert first.text != other.text


def test_greedy_rows_ignore_the_seed(base_engine: Engine) -> None:
    outputs = base_engine.generate([request(f"g{s}", "Tea", seed=s, temperature=0.0) for s in (1, 2, 3)])
    assert len({o.text for o in outputs}) == 1


def test_max_new_tokens_is_respected_per_row(base_engine: Engine) -> None:
    budgets = [2, 5, 9, 16]
    requests = [request(f"b{n}", "Tea", seed=7, max_new_tokens=n) for n in budgets]
    outputs = base_engine.generate(requests)
    for budget, out in zip(budgets, outputs, strict=True):
        assert out.new_tokens <= budget - 1  # the last token of the budget is the forced EOS
        if out.new_tokens == budget - 1:
            assert not out.hit_eos  # cut by the budget, not a natural end
    # A random model practically never ends on its own within a few tokens: every row uses its budget.
    assert [o.new_tokens for o in outputs] == [n - 1 for n in budgets]
    # Same seed: each shorter text is a prefix of the longer ones.
    texts = [o.text for o in outputs]
    for shorter, longer in itertools.pairwise(texts):
        assert longer.startswith(shorter)


def test_duplicate_keys_are_refused(base_engine: Engine) -> None:
    with pytest.raises(ValueError, match="unique"):
        base_engine.generate([request("same", "Tea", seed=1), request("same", "Compost", seed=2)])


def test_chat_prompt_uses_the_chat_template(base_engine: Engine) -> None:
    prompt = base_engine.chat_prompt([{"role": "system", "content": "SYS"}, {"role": "user", "content": "USER"}])
    assert prompt.index("SYS") < prompt.index("USER")
    assert prompt.rstrip().endswith("assistant")
    assert base_engine.dtype_name == "float32"
    assert base_engine.tokenizer.padding_side == "left"


# ---------------------------------------------------------------------------------------------- adapters


def test_an_adapter_changes_the_output(
    adapter_engine: Engine, base_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    adapter_a, adapter_b = adapter_refs
    base = base_engine.generate([request("x", "Tea", seed=3)])[0]
    with_a, with_b = adapter_engine.generate(
        [request("a", "Tea", seed=3, adapter=adapter_a), request("b", "Tea", seed=3, adapter=adapter_b)]
    )
    assert with_a.text != base.text
    assert with_b.text != base.text
    assert with_a.text != with_b.text


def test_mixed_batch_rows_equal_rows_alone(
    adapter_engine: Engine, base_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    adapter_a, adapter_b = adapter_refs
    plan = [None, adapter_a, adapter_b, adapter_a, None, adapter_b, None]
    requests = [
        request(f"m{i}", topic, seed=200 + i, adapter=ref, max_new_tokens=8 + i)
        for i, (topic, ref) in enumerate(zip(TOPICS, plan, strict=True))
    ]
    together = adapter_engine.generate(requests)
    assert [o.key for o in together] == [r.key for r in requests]
    for req, out in zip(requests, together, strict=True):
        alone = adapter_engine.generate([req])[0]
        assert same_text(alone, out), req.key
        if req.adapter is None:
            # A base row in an adapter batch is exactly the base model's row.
            assert same_text(base_engine.generate([req])[0], out), req.key
    assert set(adapter_engine.adapters.loaded) == {adapter_a.name, adapter_b.name}


def test_an_adapter_with_a_lora_embedding_stays_on_its_own_rows(
    family: TinyModel, tmp_path: Path, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """An adapter with LoRA on the input embeddings among plain adapters and base rows: each row still gets only its
    own adapter, as in an engine where that adapter is the only one (PEFT's mixed batch, not the grouped LoRA, which
    handles LoRA linears only)."""
    from tiny_model import build_lora_adapter

    targets = (*family.lora_targets, "embed_tokens")
    special_dir = build_lora_adapter(
        family.model_dir, tmp_path / "special", base_model_id=family.model_id, target_modules=targets
    )
    special = AdapterRef("style-special", "v1", special_dir)
    adapter_a = adapter_refs[0]
    plan = [special, None, adapter_a, special, None]
    requests = [
        request(f"m{i}", topic, seed=300 + i, adapter=ref, max_new_tokens=8)
        for i, (topic, ref) in enumerate(zip(TOPICS[: len(plan)], plan, strict=True))
    ]
    mixed = family_engine(family, batch_size=8)
    for ref in (adapter_a, special):
        mixed.load_adapter(ref)
    together = mixed.generate(requests)
    for req, out in zip(requests, together, strict=True):
        alone = family_engine(family, batch_size=8).generate([req])[0]
        assert same_text(alone, out), req.key
    assert together[0].text != family_engine(family).generate([replace(requests[0], adapter=None)])[0].text


def test_an_evicted_lora_embedding_gives_the_grouped_lora_back(
    family: TinyModel, tmp_path: Path, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """PEFT leaves an emptied LoRA embedding layer in the model when its adapter is deleted: that alone must not keep
    every later batch off the grouped LoRA."""
    from tiny_model import build_lora_adapter

    from worker.engine.lora_batch import grouped_lora

    targets = (*family.lora_targets, "embed_tokens")
    special_dir = build_lora_adapter(
        family.model_dir, tmp_path / "special", base_model_id=family.model_id, target_modules=targets
    )
    engine = family_engine(family, adapter_capacity=1)
    engine.load_adapter(AdapterRef("style-special", "v1", special_dir))
    names = [adapter_refs[0].name]
    engine.load_adapter(adapter_refs[0])  # evicts the special adapter
    assert set(engine.adapters.loaded) == {adapter_refs[0].name}
    grouped = grouped_lora(engine.model, names)
    assert grouped is not None
    grouped.close()


def test_more_adapters_than_capacity_in_one_call(
    family: TinyModel, adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    adapter_a, adapter_b = adapter_refs
    small = family_engine(family, batch_size=4, adapter_capacity=1)
    requests = [
        request("a", "Tea", seed=1, adapter=adapter_a),
        request("base", "Compost", seed=2),
        request("b", "Lisbon", seed=3, adapter=adapter_b),
    ]
    outputs = small.generate(requests)
    assert [o.key for o in outputs] == ["a", "base", "b"]
    expected = adapter_engine.generate(requests)
    for got, want in zip(outputs, expected, strict=True):
        assert same_text(got, want)
    assert len(small.adapters.loaded) == 1


def mixed_adapter_batch(engine: Engine, refs: tuple[AdapterRef, AdapterRef]) -> tuple[list[str], Any]:
    """Both adapters loaded; four padded prompts on adapter a, the base model, adapter b and adapter a."""
    from worker.engine.adapters import BASE

    adapter_a, adapter_b = refs
    for ref in refs:
        engine.load_adapter(ref)
    names = [adapter_a.name, BASE, adapter_b.name, adapter_a.name]
    prompts = [engine.chat_prompt([{"role": "user", "content": topic}]) for topic in TOPICS[:4]]
    return names, engine.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


def test_grouped_lora_equals_peft_mixed_batch(
    adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """The stacked LoRA forward (worker.engine.lora_batch) gives PEFT's adapter_names logits, row by row; a second
    install on the same model is refused and leaves the first working."""
    from worker.engine.lora_batch import grouped_lora

    names, encoded = mixed_adapter_batch(adapter_engine, adapter_refs)
    with torch.inference_mode():
        peft_logits = adapter_engine.model(**encoded, adapter_names=names).logits
        with grouped_lora(adapter_engine.model, names) as grouped:
            assert grouped is not None
            with pytest.raises(RuntimeError, match="already installed"):
                grouped_lora(adapter_engine.model, names[::-1])
            grouped_logits = adapter_engine.model(**encoded).logits
            grouped.keep(torch.tensor([2, 0]))
            kept_logits = adapter_engine.model(**{k: v[[2, 0]] for k, v in encoded.items()}).logits
        after = adapter_engine.model(**encoded, adapter_names=names).logits  # PEFT's forward is back
    real = encoded["attention_mask"].bool()
    assert torch.allclose(grouped_logits[real], peft_logits[real], atol=1e-4)
    assert torch.allclose(kept_logits[real[[2, 0]]], peft_logits[[2, 0]][real[[2, 0]]], atol=1e-4)
    assert torch.equal(after, peft_logits)


def test_concatenated_products_are_built_once_per_adapter_set(
    adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """A worker's batches mix the same styles again and again: their packed LoRA matrices are reused."""
    from worker.engine.lora_batch import grouped_lora

    names, _ = mixed_adapter_batch(adapter_engine, adapter_refs)
    with grouped_lora(adapter_engine.model, names) as first:
        assert first is not None
    with grouped_lora(adapter_engine.model, names[::-1]) as second:
        assert second is not None
    plans = list(zip(first.plans, second.plans, strict=True))
    assert all(a.concatenated.lora_a is b.concatenated.lora_a for a, b in plans)  # type: ignore[union-attr]
    with grouped_lora(adapter_engine.model, [adapter_refs[0].name]) as single:
        assert single is not None
        assert single.plans[0].concatenated.lora_a is not plans[0][0].concatenated.lora_a  # type: ignore[union-attr]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_concatenated_lora_of_mixed_ranks_gives_pefts_logits(
    family: TinyModel, tmp_path: Path, dtype: torch.dtype
) -> None:
    """Adapters of rank 4 and 8 side by side, base rows among them, rows leaving: PEFT's logits to rounding."""
    from tiny_model import build_lora_adapter

    from worker.engine.adapters import BASE
    from worker.engine.lora_batch import grouped_lora

    wide_dir = build_lora_adapter(
        family.model_dir,
        tmp_path / "wide",
        base_model_id=family.model_id,
        seed=3,
        rank=8,
        target_modules=family.lora_targets,
    )
    wide = AdapterRef("style-wide", "v1", wide_dir)
    engine = family_engine(family, dtype=dtype, batch_size=4)
    narrow = AdapterRef("style-a", "v1", family.adapter_a_dir)
    for ref in (narrow, wide):
        engine.load_adapter(ref)
    names = [wide.name, BASE, narrow.name, wide.name]
    prompts = [engine.chat_prompt([{"role": "user", "content": topic}]) for topic in TOPICS[:4]]
    encoded = engine.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kept = [3, 1, 2]
    with torch.inference_mode():
        peft_logits = engine.model(**encoded, adapter_names=names).logits.float()
        with grouped_lora(engine.model, names) as grouped:
            assert grouped is not None
            logits = engine.model(**encoded).logits.float()
            grouped.keep(torch.tensor(kept))
            kept_logits = engine.model(**{k: v[kept] for k, v in encoded.items()}).logits.float()
    real = encoded["attention_mask"].bool()
    tolerance = 1e-4 if dtype == torch.float32 else 0.05 * float(peft_logits[real].abs().max())
    assert torch.allclose(logits[real], peft_logits[real], atol=tolerance)
    assert torch.allclose(kept_logits[real[kept]], peft_logits[kept][real[kept]], atol=tolerance)


def test_concatenated_products_follow_an_adapter_changed_in_place(
    adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    from worker.engine.lora_batch import grouped_lora

    names, _ = mixed_adapter_batch(adapter_engine, adapter_refs)
    with grouped_lora(adapter_engine.model, names) as first:
        assert first is not None
        plan = first.plans[0]
        before = plan.concatenated.lora_a  # type: ignore[union-attr]
    weight = plan.layer.lora_A[adapter_refs[0].name].weight
    with torch.no_grad():
        weight.mul_(1.0)  # same values, a new version: what a reload in place would look like
    with grouped_lora(adapter_engine.model, names) as second:
        assert second is not None
        assert second.plans[0].concatenated.lora_a is not before  # type: ignore[union-attr]


def test_exact_sub_batches_give_pefts_logits_bit_for_bit(
    adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """fp32's exact mode runs PEFT's per-adapter arithmetic op for op: the same bits, also after rows leave."""
    from worker.engine.lora_batch import grouped_lora

    names, encoded = mixed_adapter_batch(adapter_engine, adapter_refs)
    kept = [3, 1, 2]
    with torch.inference_mode():
        peft_logits = adapter_engine.model(**encoded, adapter_names=names).logits
        peft_kept = adapter_engine.model(
            **{k: v[kept] for k, v in encoded.items()}, adapter_names=[names[i] for i in kept]
        ).logits
        with grouped_lora(adapter_engine.model, names, exact=True) as grouped:
            assert grouped is not None
            exact_logits = adapter_engine.model(**encoded).logits
            grouped.keep(torch.tensor(kept))
            exact_kept = adapter_engine.model(**{k: v[kept] for k, v in encoded.items()}).logits
    assert torch.equal(exact_logits, peft_logits)
    assert torch.equal(exact_kept, peft_kept)


def test_bf16_engine_mixes_adapters_through_the_stacked_path(
    family: TinyModel, adapter_refs: tuple[AdapterRef, AdapterRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under bf16 a mixed batch runs on worker.engine.lora_batch's stacked products (fp32 on its exact sub-batches)."""
    import worker.engine.lora_batch as lora_batch

    used: list[list[str]] = []
    original = lora_batch.grouped_lora

    def spy(model: object, names: list[str], *, exact: bool) -> object:
        used.append(list(names))
        assert exact is False  # bf16: the stacked products
        return original(model, names, exact=exact)

    monkeypatch.setattr(engine_module, "grouped_lora", spy)
    engine = family_engine(family, dtype=torch.bfloat16, batch_size=4)
    adapter_a, adapter_b = adapter_refs
    requests = [
        request("a", "Tea", seed=1, adapter=adapter_a),
        request("base", "Compost", seed=2),
        request("b", "Lisbon", seed=3, adapter=adapter_b),
    ]
    outputs = engine.generate(requests)
    assert [o.key for o in outputs] == ["a", "base", "b"]
    assert all(o.new_tokens > 0 for o in outputs)
    assert used and set(used[0]) == {adapter_a.name, adapter_b.name, "__base__"}
    assert "forward" not in vars(next(m for m in engine.model.modules() if hasattr(m, "lora_A")))  # restored


def test_shared_prompt_prefixes_change_the_work_not_the_texts(
    family: TinyModel, adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """Forced on in fp32 (where rounding cannot hide a wrong cache): each shared prefix runs once in a
    single-row pass, the batch forward starts after it, and every row's text is the one it gets without."""
    from peft import PeftModel

    adapter_a, adapter_b = adapter_refs
    system = "You write short practical articles for a blog about homes, gardens, food and travel. " * 8
    plan = [adapter_a, adapter_a, None, adapter_b, adapter_a, None]
    requests = []
    for i, (topic, ref) in enumerate(zip(TOPICS, plan, strict=False)):
        for candidate in range(2):  # two parts of one topic: distinct prompts (a repeated one is prefilled once)
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": f"{topic}, part {candidate}"},
            ]
            settings = RowSettings(0.9, 0.9, 1.15, 10, 300 + 10 * i + candidate)
            requests.append(GenerationRequest(f"p{i}-{candidate}", messages, settings, ref))
    without = [adapter_engine.generate([r])[0] for r in requests]  # fp32: no sharing

    shared = family_engine(family, batch_size=len(requests))
    assert shared.share_prefixes is False  # fp32 default
    shared.share_prefixes = True
    for ref in adapter_refs:
        shared.load_adapter(ref)
    calls: list[tuple[int, int]] = []
    original = PeftModel.forward

    def spy(self: object, *args: object, **kwargs: object) -> object:
        calls.append(tuple(kwargs["input_ids"].shape))  # type: ignore[union-attr,arg-type]
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PeftModel, "forward", spy)
        together = shared.generate(requests)
    width = max(len(shared.tokenizer(shared.chat_prompt(r.messages)).input_ids) for r in requests)
    passes = [c for c in calls if c[0] == 1]
    batch_prefill = next(c for c in calls if c[0] == len(requests))
    assert 1 <= len(passes) <= 3 + len(TOPICS)  # per adapter and per prompt, never per row
    assert batch_prefill[1] < width - 20  # the shared system prompt is not prefilled again
    for one, both in zip(without, together, strict=True):
        assert same_text(one, both), one.key


def test_prefix_sharing_is_on_for_reduced_precision_only(tiny_model_dir: Path) -> None:
    source = BaseModelSource(TINY_MODEL_ID, tiny_model_dir, weights_hash(tiny_model_dir))
    assert Engine(source, device="cpu", dtype=torch.bfloat16).share_prefixes is True
    assert Engine(source, device="cpu", dtype=torch.bfloat16, share_prefixes=False).share_prefixes is False
    assert Engine(source, device="cpu", dtype=torch.float32).share_prefixes is False


def test_greedy_decoding_matches_transformers_generate(base_engine: Engine) -> None:
    """The engine's own loop (preallocated KV cache, left padding, rows leaving) decodes what generate does."""
    requests = [request(f"g{i}", topic, seed=i, temperature=0.0, max_new_tokens=10) for i, topic in enumerate(TOPICS)]
    outputs = base_engine.generate(requests)
    tokenizer = base_engine.tokenizer
    for req, out in zip(requests, outputs, strict=True):
        encoded = tokenizer(base_engine.chat_prompt(req.messages), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            reference = base_engine.model.generate(
                **encoded,
                do_sample=False,
                max_new_tokens=9,
                repetition_penalty=req.settings.repetition_penalty,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = reference[0, encoded["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        assert out.text == tokenizer.decode(new, skip_special_tokens=True), req.key


def test_rows_with_early_ends_leave_the_batch(
    family: TinyModel, base_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a quarter of a batch has ended, the later steps run on fewer rows; the texts do not change."""
    budgets = [2, 3, 14, 14]
    requests = [request(f"e{n}-{i}", "Tea", seed=i, max_new_tokens=n) for i, n in enumerate(budgets)]
    alone = [base_engine.generate([r])[0] for r in requests]
    widths: list[int] = []
    model = base_engine.model
    original = type(model).forward

    def spy(self: object, *args: object, **kwargs: object) -> object:
        widths.append(int(kwargs["input_ids"].shape[0]))  # type: ignore[union-attr]
        return original(self, *args, **kwargs)

    engine = family_engine(family, batch_size=4)  # its load probe runs before the spy
    engine.model = model
    monkeypatch.setattr(type(model), "forward", spy)
    together = engine.generate(requests)
    assert widths[0] == 1  # the four rows have one prompt: prefilled once
    assert widths[-1] == 2  # the two short rows left
    assert widths[:4] == [1, 4, 3, 2] and len(widths) == 14  # steps 0..13 (the budget of 14 ends at 13)
    for one, both in zip(alone, together, strict=True):
        assert same_text(one, both)


def test_rows_with_one_prompt_on_one_adapter_are_prefilled_once(
    family: TinyModel, adapter_engine: Engine, adapter_refs: tuple[AdapterRef, AdapterRef]
) -> None:
    """A brief's candidates (one prompt, their own seeds) share the prefill; the same prompt on another adapter or on
    the base model is another prefill row. Each row's text is the one it gets alone (fp32: exact rows)."""
    adapter_a, _ = adapter_refs
    plan = [("Tea", adapter_a, 1), ("Tea", adapter_a, 2), ("Tea", None, 3), ("Lisbon", adapter_a, 4), ("Tea", None, 5)]
    requests = [request(f"d{i}", topic, seed=seed, adapter=ref) for i, (topic, ref, seed) in enumerate(plan)]
    alone = [adapter_engine.generate([r])[0] for r in requests]
    prefill_rows: list[int] = []
    model = adapter_engine.model
    original = type(model).forward

    def spy(self: object, *args: object, **kwargs: object) -> object:
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:  # type: ignore[union-attr]
            prefill_rows.append(int(ids.shape[0]))  # type: ignore[union-attr]
        return original(self, *args, **kwargs)

    engine = family_engine(family, batch_size=len(requests))
    for ref in adapter_refs:
        engine.load_adapter(ref)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(engine.model), "forward", spy)
        together = engine.generate(requests)
    assert prefill_rows == [3]  # Tea on a, Tea on the base model, Lisbon on a
    assert together[0].text != together[1].text  # their own seeds after the shared prompt
    for one, both in zip(alone, together, strict=True):
        assert same_text(one, both), one.key


def test_exact_batches_are_padded_to_the_pad_multiple(base_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    widths: list[int] = []
    model_class = type(base_engine.model)
    original = model_class.forward

    def spy(self: object, *args: Any, **kwargs: Any) -> Any:
        widths.append(kwargs["input_ids"].shape[1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", spy)
    base_engine.generate([request("a", TOPICS[0], seed=1, max_new_tokens=2), request("b", TOPICS[2], seed=2)])
    assert widths[0] % engine_module.EXACT_PAD_MULTIPLE == 0 and widths[1:] == [1] * (len(widths) - 1)


@pytest.mark.parametrize("shift", [engine_module.EXACT_PAD_MULTIPLE, 3 * engine_module.EXACT_PAD_MULTIPLE])
def test_decode_attention_keeps_a_rows_bits_when_its_padding_grows_by_the_pad_multiple(shift: int) -> None:
    """The property the exact engine relies on, on this machine: SDPA's math kernel for one query position gives
    a row the same bits when masked columns in front of its keys grow by a multiple of the pad multiple."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    generator = torch.Generator().manual_seed(0)
    heads, dim, padding = 9, 64, 23
    for length in (20, 131, 450):
        query = torch.randn(1, heads, 1, dim, generator=generator)
        keys, values = (torch.randn(1, heads, padding + length, dim, generator=generator) for _ in range(2))
        results = []
        for pad in (padding, padding + shift):
            noise = torch.randn(1, heads, pad - padding, dim, generator=generator)
            mask = torch.cat([torch.full((1, 1, 1, pad), float("-inf")), torch.zeros(1, 1, 1, length)], dim=-1)
            others = torch.randn(2, heads, pad + length, dim, generator=generator)  # the rest of a batch
            with sdpa_kernel(SDPBackend.MATH):
                out = torch.nn.functional.scaled_dot_product_attention(
                    torch.cat([torch.randn(2, heads, 1, dim, generator=generator), query]),
                    torch.cat([others, torch.cat([noise, keys], dim=2)]),
                    torch.cat([others, torch.cat([noise, values], dim=2)]),
                    attn_mask=torch.cat([torch.zeros(2, 1, 1, pad + length), mask]),
                )
            results.append(out[2])
        assert torch.equal(results[0], results[1]), length


def test_the_output_head_gets_a_fresh_tensor_not_the_last_position_view(base_engine: Engine) -> None:
    # The prefill's last position is a view with the whole sequence's strides; torch's linear turns such an input
    # into a bmm over one copy of the head's weight per row (seconds at 32 rows of the real model).
    head = base_engine.model.get_output_embeddings()
    seen: list[tuple[int, ...]] = []
    handle = head.register_forward_hook(lambda _module, args, _output: seen.append(args[0].stride()))
    try:
        hidden = torch.randn(1, 5, head.in_features)
        view = hidden[:, -1:, :]
        assert view.stride() == (5 * head.in_features, head.in_features, 1)
        with torch.inference_mode():
            logits = head(view)
            fresh = head(view.clone(memory_format=torch.contiguous_format))
        assert torch.equal(logits, fresh)
    finally:
        handle.remove()
    assert seen == [(head.in_features, head.in_features, 1)] * 2


def test_broken_adapter_raises_on_load(tmp_path: Path, tiny_model_dir: Path, adapter_a_dir: Path) -> None:
    engine = make_engine(tiny_model_dir)
    broken_dir = copy_dir(adapter_a_dir, tmp_path / "broken")
    (broken_dir / ADAPTER_WEIGHTS).write_bytes(os.urandom(2048))
    broken = AdapterRef("broken", "v1", broken_dir)
    with pytest.raises(AdapterError, match="corrupt"):
        engine.load_adapter(broken)
    with pytest.raises(AdapterError, match="corrupt"):
        engine.generate([request("x", "Tea", seed=1, adapter=broken)])
    assert not engine.adapters.loaded
    # The engine still serves the base model.
    assert engine.generate([request("y", "Tea", seed=1)])[0].new_tokens > 0


def test_adapter_for_another_base_model_raises_on_load(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tiny_model import build_lora_adapter

    engine = make_engine(tiny_model_dir)
    foreign = build_lora_adapter(tiny_model_dir, tmp_path / "foreign", base_model_id="some-other-model")
    with pytest.raises(AdapterError, match="some-other-model"):
        engine.load_adapter(AdapterRef("foreign", "v1", foreign))


def test_missing_model_directory_is_a_model_error(tmp_path: Path) -> None:
    source = BaseModelSource("nothing", tmp_path, "0" * 64)
    with pytest.raises(ModelError, match="cannot load the base model"):
        Engine(source, device="cpu", dtype=torch.float32)
