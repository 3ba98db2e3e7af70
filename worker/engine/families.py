"""Model families: which causal LMs the engine can serve, checked when the base model loads.

The engine does not special-case a family: it drives any transformers causal LM through the same forward
(``input_ids``, a 2-D attention mask, ``position_ids``, its own KV cache, ``logits_to_keep``), packs whatever
``nn.Linear`` layers the model has, and mixes LoRA adapters on whatever modules they target. Tested on tiny
models of each family (tests/engine/test_families.py): Llama/SmolLM, Qwen2 (q/k/v biases, tied embeddings),
Gemma 3 (sliding-window layers), Phi-3 (fused ``qkv_proj`` and ``gate_up_proj``).

What the engine cannot serve is refused at load with the reason (:func:`check_family`), never answered with a
wrong text: encoder-decoder models, layers that keep state other than attention keys and values (Mamba, linear
attention, convolutions: the engine's cache holds keys and values only), a forward without ``logits_to_keep``,
a tokenizer without a chat template or an end-of-sequence token. Then :func:`probe_cached_decoding` runs the
engine's way of decoding (left padding, position ids, the preallocated cache, a token after the prefill) against
the model's own forward without a cache on a short sequence, with any sliding window narrowed so that the sequence
crosses it, and refuses the model when the two disagree or its forward cannot take the engine's arguments.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

from worker.engine.kv_cache import preallocated_cache
from worker.errors import ModelError

logger = logging.getLogger(__name__)

# Families whose tiny models the tests check end to end (config.model_type).
TESTED_FAMILIES = frozenset({"llama", "qwen2", "qwen3", "gemma3_text", "phi3"})
# Attention layer kinds the engine's key/value cache serves (config.layer_types); anything else keeps other state.
ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})
# LoRA target names per family for training all attention and MLP projections (PEFT's "all-linear" finds them too).
LORA_TARGETS = {
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
}
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Families that fuse projections into one linear layer: the unfused name -> the fused layer that holds it.
FUSED_PROJECTIONS = {
    "phi3": {
        "q_proj": "qkv_proj",
        "k_proj": "qkv_proj",
        "v_proj": "qkv_proj",
        "gate_proj": "gate_up_proj",
        "up_proj": "gate_up_proj",
    },
}
# The probe's sequence: long enough to cross the narrowed sliding window, short enough to cost milliseconds.
PROBE_TOKENS = 12
PROBE_WINDOW = 4
PROBE_PADDING = 3
# Largest disagreement of the probe's logits, relative to their largest magnitude, per dtype (rounding only: in fp32
# the tiny families disagree by 1e-7, a cache one position off by 0.2 to 1).
_PROBE_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.1, torch.float16: 0.05}


def lora_target_modules(config: Any) -> tuple[str, ...]:
    """The attention and MLP projection names a LoRA adapter of this family targets (Phi-3's are fused)."""
    return LORA_TARGETS.get(str(getattr(config, "model_type", "")), DEFAULT_LORA_TARGETS)


def training_targets(model: Any, requested: str | list[str]) -> str | list[str]:
    """The LoRA target names for training ``model``: ``requested`` where the model has linear layers of those names,
    a fused family's layer where it fuses them (Phi-3: ``q_proj`` and ``v_proj`` are in ``qkv_proj``), PEFT's
    ``"all-linear"`` as it is. A name the model has in neither form raises ModelError listing the names it has."""
    if isinstance(requested, str):
        return requested
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    family = str(getattr(model.config, "model_type", "?"))
    fused = FUSED_PROJECTIONS.get(family, {})
    targets: list[str] = []
    missing: list[str] = []
    for name in requested:
        target = name if name in linear else fused.get(name)
        if target is None or target not in linear:
            missing.append(name)
        elif target not in targets:
            targets.append(target)
    if missing:
        raise ModelError(
            f"LoRA target modules {missing} are not linear layers of this {family!r} model; its linear layers are "
            f"{sorted(linear)} (or use all-linear)"
        )
    if targets != list(requested):
        logger.info("LoRA targets %s of this %r model are its layers %s", list(requested), family, targets)
    return targets


def check_family(model: Any, tokenizer: Any) -> None:
    """Refuse, with the reason, a model the engine cannot serve; see the module's docstring."""
    config = model.config
    text = config.get_text_config(decoder=True)
    family = str(getattr(config, "model_type", "?"))
    problems = []
    if getattr(config, "is_encoder_decoder", False):
        problems.append("it is an encoder-decoder model; the engine serves decoder-only causal LMs")
    other_layers = sorted(set(getattr(text, "layer_types", None) or []) - ATTENTION_LAYER_TYPES)
    if other_layers:
        problems.append(
            f"its layers of type {other_layers} keep state other than attention keys and values, which the "
            "engine's KV cache does not hold"
        )
    if not getattr(tokenizer, "chat_template", None):
        problems.append("its tokenizer has no chat template (prompts are chat messages)")
    if tokenizer.eos_token_id is None:
        problems.append("its tokenizer has no end-of-sequence token")
    if problems:
        raise ModelError(f"the engine cannot serve this {family!r} model: " + "; ".join(problems))
    if family not in TESTED_FAMILIES:
        logger.warning(
            "model family %r is not among the tested ones (%s); it passed the load checks",
            family,
            ", ".join(sorted(TESTED_FAMILIES)),
        )


# What passed the probe in this process: its verdict depends on the model's code, config, dtype and device, not on
# its weights, so a process that loads the same model again (evaluation, a reload) does not probe it again.
_PROBED: set[tuple[str, str, str, str]] = set()


def probe_once(model: Any, cache_argument: str) -> float | None:
    """:func:`probe_cached_decoding` unless a model of the same class, config, dtype and device passed it in this
    process (then ``None``)."""
    parameter = next(model.parameters())
    key = (type(model).__qualname__, model.config.to_json_string(), str(parameter.dtype), str(parameter.device))
    if key in _PROBED:
        return None
    error = probe_cached_decoding(model, cache_argument)
    _PROBED.add(key)
    return error


def probe_cached_decoding(model: Any, cache_argument: str) -> float:
    """Decode a short sequence the engine's way and compare with the model's full forward; returns the largest
    difference of the last logits relative to their magnitude, raising ModelError when it is beyond rounding.

    Two rows, the second left-padded by :data:`PROBE_PADDING` columns: the prompt is prefilled into the
    preallocated cache but for its last token, which then goes in alone, as decoding does; the reference is one
    forward over the whole padded batch without a cache. Sliding windows are narrowed to :data:`PROBE_WINDOW`
    tokens for the probe, so that a wrong window shows. Three forwards of a few tokens. A model on the ``meta``
    device (no data) is not probed.
    """
    parameter = next(model.parameters())
    if parameter.is_meta:
        return 0.0
    vocab = int(model.config.get_text_config(decoder=True).vocab_size)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, vocab, (2, PROBE_TOKENS), generator=generator).to(parameter.device)
    tokens[1, :PROBE_PADDING] = 0
    mask = torch.ones_like(tokens)
    mask[1, :PROBE_PADDING] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    last = PROBE_TOKENS - 1
    with torch.inference_mode(), _narrow_sliding_window(model):
        expected = (
            model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)
            .logits[:, -1]
            .float()
        )
        cache = preallocated_cache(model, PROBE_TOKENS)
        for start, end in ((0, last), (last, PROBE_TOKENS)):
            logits = (
                model(
                    input_ids=tokens[:, start:end],
                    attention_mask=mask[:, :end],
                    position_ids=positions[:, start:end],
                    use_cache=True,
                    logits_to_keep=1,
                    **{cache_argument: cache},
                )
                .logits[:, -1]
                .float()
            )
    error = max(_relative_error(logits[row], expected[row]) for row in range(2))
    if not error <= _PROBE_TOLERANCE.get(parameter.dtype, 0.1):
        family = getattr(model.config, "model_type", "?")
        raise ModelError(
            f"the engine cannot serve this {family!r} model: decoding through its KV cache gives other logits than "
            f"the model's own forward (relative difference {error:.2g}); its attention needs what the engine's "
            "cache or masks do not provide"
        )
    return error


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    scale = float(expected.abs().max()) or 1.0
    return float((got - expected).abs().max()) / scale


@contextlib.contextmanager
def _narrow_sliding_window(model: Any) -> Iterator[None]:
    """Within the block, the model's sliding window (where it has one) is :data:`PROBE_WINDOW` tokens."""
    configs = {id(c): c for c in (model.config, model.config.get_text_config(decoder=True))}.values()
    saved = [(c, c.sliding_window) for c in configs if getattr(c, "sliding_window", None)]
    modules = [m for m in model.modules() if isinstance(getattr(m, "sliding_window", None), int)]
    saved_modules = [(m, m.sliding_window) for m in modules]
    try:
        for config, _ in saved:
            config.sliding_window = PROBE_WINDOW
        for module, _ in saved_modules:
            module.sliding_window = PROBE_WINDOW
        yield
    finally:
        for config, window in saved:
            config.sliding_window = window
        for module, window in saved_modules:
            module.sliding_window = window
