"""One decode step of a Llama-shaped model without transformers' module machinery: the same operations, fewer calls.

A decode step at 128 rows runs ~30 small operations per layer, and transformers wraps them in a model forward, a
decoder-layer, attention and MLP forward per layer, keyword-argument plumbing, output records and decorators: Python
work that costs a few percent of a CPU step on a 135M model. :class:`DecodeStep` calls the model's own modules
(embedding, norms, projections with their LoRA layers, activation, output head) in the order the decoder layers
do, and reads the engine's shared-prompt cache (:class:`worker.engine.prompt_attention.SharedPromptLayer`) directly.

It reproduces the forwards of the listed classes (:data:`DECODER_LAYERS`: Llama/SmolLM2, Qwen2, Qwen3) op for op, so
its logits equal the model's own forward to the bit (tests/engine/test_decode_step.py); any other model, a model with
a forward hook on a module whose call the step skips, and any batch PEFT mixes itself (``adapter_names``: its hooks
run inside the modules' calls, engine.py), keep the model's forward.
Two things change the route and not the arithmetic:

* q, k and v of a block grouped into one product (:mod:`worker.engine.grouped_projections`) are read as slices of
  the group's whole output, without the per-member hand-over;
* where no q/k norm intervenes, the rotary embedding runs once over the adjacent q and k heads instead of once
  each (elementwise, so every value is the one the separate calls compute).
"""

from __future__ import annotations

from typing import Any

import torch

from worker.engine.grouped_projections import MemberForward, ProjectionGroup
from worker.engine.prompt_attention import SharedPromptLayer, supports

# The model and decoder-layer classes whose forwards DecodeStep reproduces (transformers 5).
CAUSAL_LMS = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"})
DECODER_LAYERS = frozenset({"LlamaDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"})


class _Block:
    """One decoder layer's modules, and the group of its q/k/v and gate/up products when they are grouped."""

    def __init__(self, layer: Any) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.input_norm, self.post_attention_norm = layer.input_layernorm, layer.post_attention_layernorm
        self.q, self.k, self.v, self.o = attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj
        self.q_norm, self.k_norm = getattr(attention, "q_norm", None), getattr(attention, "k_norm", None)
        self.head_dim, self.scaling = int(attention.head_dim), float(attention.scaling)
        self.gate, self.up, self.down, self.act = mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn
        # Read once per batch: the engine installs its LoRA forwards (worker.engine.lora_batch) before this is built.
        self.qkv_group, self.mlp_group = _group_of(self.q, self.k, self.v), _group_of(self.gate, self.up)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k and v as [rows, 1, heads, head dim] (q and k rotated later)."""
        group = self.qkv_group
        q, k, v = (self.q(x), self.k(x), self.v(x)) if group is None else _slices(group, group.whole_output(x))
        shape = (x.shape[0], 1, -1, self.head_dim)
        return q.view(shape), k.view(shape), v.view(shape)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        group = self.mlp_group
        gate, up = (self.gate(x), self.up(x)) if group is None else _slices(group, group.whole_output(x))
        return self.down(self.act(gate) * up)


def _group_of(*members: Any) -> ProjectionGroup | None:
    """The group whose whole output holds ``members``' outputs in order, when every member hands over its slice of it
    (its ``forward`` a :class:`MemberForward` of that group at its index); else ``None``."""
    forwards = [getattr(member, "__dict__", {}).get("forward") for member in members]
    if not all(isinstance(forward, MemberForward) for forward in forwards) or any(map(_hooked, members)):
        return None  # a hooked member is called as a module, as the model's forward would
    group = forwards[0].group
    if len(group.linears) != len(members):
        return None
    if any(forward.group is not group or forward.index != index for index, forward in enumerate(forwards)):
        return None
    return group


def _slices(group: ProjectionGroup, whole: torch.Tensor) -> list[torch.Tensor]:
    return [whole[..., start:end] for start, end in group.bounds]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' ``apply_rotary_pos_emb`` for one tensor: ``x * cos + rotate_half(x) * sin``."""
    return (x * cos) + (_rotate_half(x) * sin)


class DecodeStep:
    """The next-token logits of one decode step over the engine's shared-prompt cache (see the module docstring)."""

    def __init__(self, causal_lm: Any) -> None:
        core = causal_lm.model
        self.embed, self.norm, self.rotary = core.embed_tokens, core.norm, core.rotary_emb
        self.head = causal_lm.lm_head
        layers = list(core.layers[: int(core.config.num_hidden_layers)])
        self.blocks = [_Block(layer) for layer in layers]

    def logits(self, input_ids: torch.Tensor, positions: torch.Tensor, cache: Any) -> torch.Tensor:
        """``input_ids``, ``positions``: [rows, 1]; ``cache``: one :class:`SharedPromptLayer` per layer. Returns
        [rows, vocabulary], the logits of the model's forward at that position."""
        hidden = self.embed(input_ids)
        cos, sin = self.rotary(hidden, positions)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [rows, 1, 1, head dim]: over the heads of [rows, 1, heads, dim]
        for block, layer in zip(self.blocks, cache.layers, strict=True):
            hidden = hidden + self._attention(block, layer, block.input_norm(hidden), cos, sin)
            hidden = hidden + block.mlp(block.post_attention_norm(hidden))
        return self.head(self.norm(hidden))[:, -1, :]

    @staticmethod
    def _attention(
        block: _Block, layer: SharedPromptLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        q, k, v = block.qkv(x)
        if block.q_norm is not None:
            q, k = block.q_norm(q), block.k_norm(k)
        q, k = _rotated_pair(q, k, cos, sin)
        layer.update(k.transpose(1, 2), v.transpose(1, 2))
        out = layer.attend(q.transpose(1, 2), block.scaling)  # [rows, 1, heads, head dim]
        return block.o(out.reshape(x.shape[0], 1, -1).contiguous())


def _rotated_pair(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[Any, Any]:
    """q and k rotated: in one pass when k's heads follow q's in one buffer (slices of one product), else each."""
    heads = q.shape[2]
    if _adjacent(q, k):
        both = q.as_strided((q.shape[0], 1, heads + k.shape[2], q.shape[3]), q.stride())
        rotated = _rotated(both, cos, sin)
        return rotated[:, :, :heads], rotated[:, :, heads:]
    return _rotated(q, cos, sin), _rotated(k, cos, sin)


def _adjacent(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether k's heads directly follow q's in memory with the same row stride ([rows, 1, heads, dim] views; the
    stride of the position dimension, of size 1, is whatever ``view`` chose)."""
    return (
        q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()
        and q.shape[1] == k.shape[1] == 1
        and q.stride(0) == k.stride(0)
        and q.stride(2) == k.stride(2) == q.shape[3]
        and q.stride(3) == k.stride(3) == 1
        and k.storage_offset() == q.storage_offset() + q.shape[2] * q.stride(2)
    )


def decode_step_for(model: Any) -> DecodeStep | None:
    """A :class:`DecodeStep` for ``model`` (a causal LM, or a PEFT model around one) when its classes are ones whose
    forward it reproduces, every layer attends to the whole sequence (:func:`worker.engine.prompt_attention.supports`)
    and no forward hook sits on a module whose call it skips; else ``None``."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    if type(causal_lm).__name__ not in CAUSAL_LMS or not supports(model):
        return None
    layers = causal_lm.model.layers
    if any(type(layer).__name__ not in DECODER_LAYERS for layer in layers):
        return None
    skipped = [model, getattr(model, "base_model", model), causal_lm, causal_lm.model]
    skipped += [module for layer in layers for module in (layer, layer.self_attn, layer.mlp)]
    if _global_hooks() or any(_hooked(module) for module in skipped):
        return None
    return DecodeStep(causal_lm)


def _hooked(module: Any) -> bool:
    return bool(getattr(module, "_forward_hooks", None) or getattr(module, "_forward_pre_hooks", None))


def _global_hooks() -> bool:
    from torch.nn.modules import module as nn_module

    return bool(nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks)
