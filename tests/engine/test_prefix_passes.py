"""worker.engine.prefix_passes: a shared prefix's single-row pass computes what the batch forward would, and its keys
and values land in the right rows and columns of the batch's cache (tiny llama, fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, one_torch_thread, tiny_model_dir

from worker.engine.adapters import BASE, AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine
from worker.engine.kv_cache import preallocated_cache
from worker.engine.prefix_passes import ModelCall, fill_shared_prefixes, prefix_pass

__all__ = ["adapter_a_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REF_STYLE = "style-a"
STYLE = AdapterRef(REF_STYLE, "v1", Path("unused")).name  # the adapter's name in the PEFT model


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, adapter_a_dir: Path) -> Engine:
    source = BaseModelSource(TINY_MODEL_ID, tiny_model_dir, weights_hash(tiny_model_dir))
    loaded = Engine(source, device="cpu", dtype=torch.float32, batch_size=4)
    loaded.load_adapter(AdapterRef(REF_STYLE, "v1", adapter_a_dir))
    return loaded


def model_call(engine: Engine) -> ModelCall:
    return ModelCall(engine.model, "cpu", engine._cache_argument, exact=True)


SYSTEM = "You write short articles."
LONG_SYSTEM = " ".join(["You write short, practical articles for a blog about homes, gardens, food and travel."] * 6)


def tokens_of(engine: Engine, topic: str, system: str = SYSTEM) -> list[int]:
    prompt = engine.chat_prompt([{"role": "system", "content": system}, {"role": "user", "content": topic}])
    return engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]


def plain_keys_values(engine: Engine, tokens: list[int], name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's keys and values from one ordinary forward of the whole row on adapter ``name`` (or BASE)."""
    ids = torch.tensor([tokens])
    kwargs = {"adapter_names": [name]}
    with torch.inference_mode():
        cache = engine.model(
            input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **kwargs
        ).past_key_values
    return [(layer.keys, layer.values) for layer in cache.layers]


@pytest.mark.parametrize("name", [BASE, STYLE])
def test_a_prefix_pass_gives_the_keys_and_values_of_a_plain_forward(engine: Engine, name: str) -> None:
    tokens = tokens_of(engine, "Compost")
    with torch.inference_mode():
        passed = prefix_pass(model_call(engine), tokens, name)
    plain = plain_keys_values(engine, tokens, name)
    assert len(passed) == len(plain)
    for (keys, values), (plain_keys, plain_values) in zip(passed, plain, strict=True):
        assert keys.shape == plain_keys.shape
        assert torch.allclose(keys, plain_keys, atol=1e-5)
        assert torch.allclose(values, plain_values, atol=1e-5)
    if name != BASE:  # the adapter changes them, so the comparison above could fail
        assert not torch.allclose(passed[0][1], plain_keys_values(engine, tokens, BASE)[0][1], atol=1e-5)


def test_shared_prefixes_land_in_each_rows_columns(engine: Engine) -> None:
    """Left-padded rows on one adapter sharing a long system prompt: every row's cache, from its first real column to
    the returned start, holds its own prefix's keys and values; the cache is advanced to the start."""
    topics = ("Compost", "How to fix a dripping kitchen tap", "Lisbon", "Tea")
    rows = [tokens_of(engine, topic, LONG_SYSTEM) for topic in topics]
    width = max(len(row) for row in rows)
    cache = preallocated_cache(engine.model, width + 4)
    with torch.inference_mode():
        start = fill_shared_prefixes(model_call(engine), cache, width, rows, [STYLE] * len(rows))
    assert 0 < start <= width
    assert all(layer.get_seq_length() == start for layer in cache.layers)
    for index, row in enumerate(rows):
        begin = width - len(row)
        assert begin < start  # every row has a shared part here
        plain = plain_keys_values(engine, row, STYLE)
        for layer, (plain_keys, plain_values) in zip(cache.layers, plain, strict=True):
            written = slice(begin, start)
            assert torch.allclose(layer.keys[index, :, written], plain_keys[0, :, : start - begin], atol=1e-5)
            assert torch.allclose(layer.values[index, :, written], plain_values[0, :, : start - begin], atol=1e-5)


def test_nothing_shared_leaves_the_cache_empty(engine: Engine) -> None:
    rows = [tokens_of(engine, "Compost")[:5], [1, 2, 3, 4, 5]]
    cache = preallocated_cache(engine.model, 8)
    with torch.inference_mode():
        assert fill_shared_prefixes(model_call(engine), cache, 5, rows, None) == 0
    assert not any(layer.is_initialized for layer in cache.layers)
