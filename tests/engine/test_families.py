"""Unit tests of :mod:`worker.engine.families`: what each family brings, and what the engine refuses at load.

The generation properties (a row alone equals the row in a mixed batch, LoRA products equal PEFT's, shared prefixes
change nothing, greedy decoding equals transformers' ``generate``) run per family in tests/engine/test_engine.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from model_fixtures import FAMILY_NAMES, TinyModel, copy_dir, one_torch_thread, tiny_family
from tiny_model import FAMILIES, build_small_tokenizer

import worker.engine.families as families
from worker.engine.adapters import AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine
from worker.engine.kv_cache import PreallocatedLayer
from worker.engine.packed_linear import is_packed
from worker.errors import ModelError

__all__ = ["one_torch_thread"]  # fixture used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_family(request.param, tmp_path_factory)


def load(directory: Path, model_id: str = "tiny", dtype: torch.dtype = torch.float32) -> Engine:
    return Engine(
        BaseModelSource(model_id, directory, weights_hash(directory)), device="cpu", dtype=dtype, batch_size=2
    )


def test_every_linear_layer_is_packed_and_lora_sits_on_the_familys_modules(family: TinyModel) -> None:
    from peft.tuners.lora.layer import Linear as LoraLinear

    engine = load(family.model_dir, family.model_id)
    linears = [m for m in engine.model.modules() if type(m) is torch.nn.Linear]
    assert linears and all(is_packed(m) for m in linears)
    engine.load_adapter(AdapterRef("style-a", "v1", family.adapter_a_dir))
    lora = {name.rsplit(".", 1)[-1] for name, m in engine.model.named_modules() if isinstance(m, LoraLinear)}
    assert lora == set(family.lora_targets)
    assert all(is_packed(m.base_layer) for m in engine.model.modules() if isinstance(m, LoraLinear))


def test_the_families_bring_what_they_are_known_for(tmp_path_factory: pytest.TempPathFactory) -> None:
    configs = {
        name: json.loads((tiny_family(name, tmp_path_factory).model_dir / "config.json").read_text())
        for name in FAMILIES
    }
    assert {c["model_type"] for c in configs.values()} == {"llama", "qwen2", "gemma3_text", "phi3"}
    assert all(
        c["vocab_size"] <= 1000 and c["hidden_size"] == 64 and c["num_hidden_layers"] == 2 for c in configs.values()
    )
    assert configs["qwen2"]["tie_word_embeddings"] is True
    assert configs["gemma3"]["layer_types"] == ["sliding_attention", "full_attention"]
    assert configs["phi3"]["sliding_window"] == 16
    qwen2 = load(tiny_family("qwen2", tmp_path_factory).model_dir)
    attention = qwen2.model.model.layers[0].self_attn
    assert all(getattr(attention, name).bias is not None for name in ("q_proj", "k_proj", "v_proj"))
    assert qwen2.model.get_output_embeddings().weight is qwen2.model.get_input_embeddings().weight


@pytest.mark.parametrize("name", ["gemma3", "phi3"])
def test_the_sliding_window_shapes_the_logits_of_long_prompts(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The tiny models' windows (8 and 16 tokens) are shorter than the test prompts, so the engine's masks for sliding
    layers are exercised: widening the window changes the logits (and the engine equals ``generate`` with it)."""
    engine = load(tiny_family(name, tmp_path_factory).model_dir)
    ids = torch.arange(3, 43).unsqueeze(0)
    config = engine.model.config
    with torch.inference_mode():
        windowed = engine.model(input_ids=ids).logits[0, -1]
        saved, config.sliding_window = config.sliding_window, 4096
        try:
            wide = engine.model(input_ids=ids).logits[0, -1]
        finally:
            config.sliding_window = saved
    assert not torch.allclose(windowed, wide, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_load_probe_agrees_with_the_full_forward_and_restores_the_window(
    family: TinyModel, dtype: torch.dtype
) -> None:
    engine = load(family.model_dir, dtype=dtype)
    window = getattr(engine.model.config, "sliding_window", None)
    error = families.probe_cached_decoding(engine.model, engine._cache_argument)
    assert error <= (1e-5 if dtype == torch.float32 else 0.05)
    assert getattr(engine.model.config, "sliding_window", None) == window


def test_the_probe_narrows_the_window_below_its_sequence(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With the window narrowed, the probe's own sequence crosses it: a wrong sliding mask could not pass unseen."""
    engine = load(tiny_family("gemma3", tmp_path_factory).model_dir)
    ids = torch.arange(3, 3 + families.PROBE_TOKENS).unsqueeze(0)
    with torch.inference_mode():
        plain = engine.model(input_ids=ids).logits[0, -1]
        with families._narrow_sliding_window(engine.model):
            assert engine.model.config.sliding_window == families.PROBE_WINDOW < families.PROBE_TOKENS
            narrowed = engine.model(input_ids=ids).logits[0, -1]
    assert engine.model.config.sliding_window == 8
    assert not torch.allclose(plain, narrowed, atol=1e-4)


class OffByOneLayer(PreallocatedLayer):
    """A cache layer that, once decoding starts, holds the previous position's keys and values where the new ones
    belong (a cache the model's attention does not fit, as a family with other cache needs would see it)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        if key_states.shape[-2] == 1:
            keys[:, :, -1] = keys[:, :, -2]
            values[:, :, -1] = values[:, :, -2]
        return keys, values


def test_a_model_the_cache_decodes_wrongly_is_refused_at_load(
    family: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.cache_utils import Cache

    def off_by_one_cache(model: Any, capacity: int) -> Cache:
        layers = model.config.get_text_config(decoder=True).num_hidden_layers
        return Cache(layers=[OffByOneLayer(capacity) for _ in range(layers)])

    load(family.model_dir)  # passes the probe, and is remembered as passed in this process
    load(family.model_dir)
    monkeypatch.setattr(families, "preallocated_cache", off_by_one_cache)
    load(family.model_dir)  # the same model in the same process: not probed again
    monkeypatch.setattr(families, "_PROBED", set())
    with pytest.raises(ModelError, match="decoding through its KV cache gives other logits"):
        load(family.model_dir)


def build_other_family(directory: Path, config_name: str, **sizes: Any) -> Path:
    import transformers
    from transformers import AutoModelForCausalLM

    tokenizer = build_small_tokenizer(directory)
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.pad_token_id, **ids, **sizes
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    ("config_name", "sizes", "layer_kind"),
    [
        pytest.param(
            "MambaConfig", {"hidden_size": 64, "num_hidden_layers": 2, "state_size": 8}, "linear_attention", id="mamba"
        ),
        pytest.param(
            "Lfm2Config",
            {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "layer_types": ["conv", "full_attention"],
            },
            "conv",
            id="lfm2",
        ),
    ],
)
def test_families_with_state_beyond_keys_and_values_are_refused_with_the_reason(
    tmp_path: Path, config_name: str, sizes: dict[str, Any], layer_kind: str
) -> None:
    directory = build_other_family(tmp_path / config_name, config_name, **sizes)
    with pytest.raises(ModelError, match=rf"layers of type \['{layer_kind}'\] keep state other than attention keys"):
        load(directory)


def test_a_tokenizer_without_a_chat_template_is_refused(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = copy_dir(tiny_family("qwen2", tmp_path_factory).model_dir, tmp_path / "no-template")
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config.pop("chat_template", None)
    config_path.write_text(json.dumps(tokenizer_config))
    with pytest.raises(ModelError, match="'qwen2' model: its tokenizer has no chat template"):
        load(directory)


def test_lora_target_modules_follow_the_family(tmp_path_factory: pytest.TempPathFactory) -> None:
    for name, family in FAMILIES.items():
        config = load(tiny_family(name, tmp_path_factory).model_dir).model.config
        targets = families.lora_target_modules(config)
        assert set(family.lora_targets) <= set(targets)
    from transformers import LlamaConfig, Phi3Config

    assert families.lora_target_modules(Phi3Config()) == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert {"q_proj", "v_proj", "gate_proj"} <= set(families.lora_target_modules(LlamaConfig()))


def test_training_targets_name_the_familys_layers(tmp_path_factory: pytest.TempPathFactory) -> None:
    from transformers import AutoModelForCausalLM

    phi3 = AutoModelForCausalLM.from_pretrained(tiny_family("phi3", tmp_path_factory).model_dir)
    assert families.training_targets(phi3, ["q_proj", "v_proj"]) == ["qkv_proj"]
    assert families.training_targets(phi3, ["q_proj", "up_proj", "o_proj"]) == ["qkv_proj", "gate_up_proj", "o_proj"]
    assert families.training_targets(phi3, "all-linear") == "all-linear"
    assert families.training_targets(phi3, list(families.lora_target_modules(phi3.config))) == [
        "qkv_proj", "o_proj", "gate_up_proj", "down_proj"
    ]  # fmt: skip
    gemma = AutoModelForCausalLM.from_pretrained(tiny_family("gemma3", tmp_path_factory).model_dir)
    assert families.training_targets(gemma, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    with pytest.raises(ModelError, match=r"\['qkv_proj'\] are not linear layers of this 'gemma3_text' model"):
        families.training_targets(gemma, ["q_proj", "qkv_proj"])
