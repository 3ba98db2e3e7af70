"""Decode attention over one copy of each distinct prompt (no exact rows): a brief's candidates read their
prompt's keys and values once per step, not once each.

The engine prefills one row per distinct prompt (:func:`worker.engine.prefix_sharing.distinct_rows`). Instead of
copying that row's cache to every row that shares it, :class:`SharedPromptLayer` keeps, per layer, the prompt part
once per distinct prompt (``[prompts, kv heads, prompt columns, head dim]``, left padding masked) and a generation
part per row. A decode step's attention, for every row's query heads of one key head together (GQA):

* the scores of every prompt against the queries of all its rows at once (a prompt shared by ``n`` rows gives ``n``
  times as many query rows per key head: one larger product instead of ``n`` small ones, and the prompt is read
  once), and of every row against its own generated tokens;
* one softmax over both, per row, in fp32;
* the two weighted sums of values: each prompt's again for all its rows at once, each row's over its own tokens.

These are batched matrix products over contiguous buffers, not the CPU flash kernel: with a few queries per key head
the flash kernel's per-head work is too small to pay its tiling, and it read these caches several times slower
(docs/benchmarks.md, "Decode attention in batched products"). The scores are the products' output in the cache's
dtype (bf16: the flash kernel kept them in fp32; transformers' eager attention rounds them too), scaled and
normalised in fp32, and the sums run in another order than one kernel over a whole cache row, so the bits differ
from it by rounding. That is why the engine uses it only where it does not promise exact rows (bf16, or fp32 on the
fast paths, on the CPU), and only for the tested families whose every layer attends to the whole sequence with plain
scaled dot products (:func:`supports`): Llama/SmolLM2 and Qwen2/Qwen3 without sliding windows or soft-capping.

The attention runs through transformers' attention interface under its own name (:data:`ATTENTION_NAME`), set on
the model's config only while the decode steps run (:func:`attending_prompts_once`); having no mask function,
transformers builds no attention mask for those steps at all.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from worker.engine.placement import cpu_has_amx

ATTENTION_NAME = "copydesk_prompt_once"
_LAYER_ATTRIBUTE = "_copydesk_prompt_layer"
GROWTH = 32  # generated positions a row's buffers grow by at a time


class SharedPromptLayer(DynamicLayer):
    """One layer's cache: the prompt part once per distinct prompt, the generated part per row.

    ``prompt_of_row[r]`` is the index of row ``r``'s prompt in ``prompt_keys``; ``prompt_bias`` is an additive mask
    (0 or -inf) over the prompt columns, hiding each prompt's left padding. The generated part grows by
    :data:`GROWTH` columns at a time up to ``capacity``: its buffers hold exactly their columns, so the attention's
    products read them contiguously (a slice of a longer buffer would be copied first). Columns not yet written are
    zero, masked in the attention. ``key_side``: how the scores are taken (:func:`key_side_scores`,
    :func:`query_side_scores`); by default the form that is faster on this CPU (:func:`scores_from_key_side`).
    """

    is_croppable = False

    def __init__(
        self,
        prompt_keys: torch.Tensor,
        prompt_values: torch.Tensor,
        prompt_bias: torch.Tensor,
        prompt_of_row: torch.Tensor,
        capacity: int,
        *,
        key_side: bool | None = None,
    ) -> None:
        super().__init__()
        key_side = scores_from_key_side() if key_side is None else key_side
        self.scores = key_side_scores if key_side else query_side_scores
        self.prompt_keys, self.prompt_values, self.prompt_bias = prompt_keys, prompt_values, prompt_bias
        self.prompt_length = prompt_keys.shape[2]
        self.capacity = capacity
        rows, heads = prompt_of_row.shape[0], prompt_keys.shape[1]
        self.key_buffer = prompt_keys.new_zeros(rows, heads, 0, prompt_keys.shape[-1])
        self.value_buffer = prompt_values.new_zeros(rows, heads, 0, prompt_values.shape[-1])
        self.device, self.is_initialized = prompt_keys.device, True
        self._advance(0)
        self._set_rows(prompt_of_row)

    def _advance(self, length: int) -> None:
        self.length = length
        self.keys = self.key_buffer[:, :, :length]
        self.values = self.value_buffer[:, :, :length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append generated positions ([rows, kv heads, positions, dim]); returns the generated part so far."""
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {end} positions, capacity {self.capacity}")
        if end > self.key_buffer.shape[2]:
            columns = min(-(-end // GROWTH) * GROWTH, self.capacity)
            self.key_buffer = _widened(self.key_buffer, columns)
            self.value_buffer = _widened(self.value_buffer, columns)
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self._advance(end)
        return self.keys, self.values

    def _set_rows(self, prompt_of_row: torch.Tensor) -> None:
        """Each row's prompt, and how the rows' queries pack per prompt: ``pack`` lists, for every prompt and slot,
        the row whose query goes there (slots past a prompt's rows repeat one of them: computed, then ignored);
        ``unpack`` is each row's place among them. Both are ``None`` where they are the identity."""
        self.prompt_of_row = prompt_of_row
        prompts = self.prompt_keys.shape[0]
        counts = torch.bincount(prompt_of_row, minlength=prompts)
        self.slots = max(int(counts.max()), 1) if counts.numel() else 1  # every row left: no prompts either
        order = torch.argsort(prompt_of_row, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        slot_of_row = torch.empty_like(prompt_of_row)
        slot_of_row[order] = (
            torch.arange(prompt_of_row.shape[0], device=prompt_of_row.device) - starts[prompt_of_row[order]]
        )
        unpack = prompt_of_row * self.slots + slot_of_row
        pack = torch.full((prompts * self.slots,), -1, dtype=torch.long, device=prompt_of_row.device)
        pack[unpack] = torch.arange(prompt_of_row.shape[0], device=prompt_of_row.device)
        first_row = order[starts.clamp(max=prompt_of_row.shape[0] - 1)]  # any row of the prompt fills its gaps
        self.pack: torch.Tensor | None = torch.where(pack < 0, first_row.repeat_interleave(self.slots), pack)
        self.unpack: torch.Tensor | None = unpack
        if torch.equal(self.pack, torch.arange(self.pack.shape[0], device=self.pack.device)):
            # The rows already sit prompt by prompt, slot by slot (a batch before any row leaves): packing and
            # unpacking are reshapes alone, no row selection.
            self.pack = self.unpack = None

    def get_seq_length(self) -> int:
        return self.prompt_length + self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows ``indices``; prompts no row uses any more are dropped."""
        self.key_buffer = self.key_buffer[indices]
        self.value_buffer = self.value_buffer[indices]
        self._advance(self.length)
        used, prompt_of_row = torch.unique(self.prompt_of_row[indices], return_inverse=True)
        if used.shape[0] < self.prompt_keys.shape[0]:
            self.prompt_keys = self.prompt_keys[used]
            self.prompt_values = self.prompt_values[used]
            self.prompt_bias = self.prompt_bias[used]
        self._set_rows(prompt_of_row)

    # The other ways to change a cache layer that it inherits (DynamicLayer's and CacheLayerMixin's) know only
    # ``keys``/``values`` and would leave the prompt part, the buffers and the row packing inconsistent: the engine
    # never calls them (transformers reaches them only from ``generate``), and nothing else may.
    def crop(self, tokens_to_remove: int) -> None:
        _unsupported("crop")

    def batch_repeat_interleave(self, repeats: int) -> None:
        _unsupported("batch_repeat_interleave")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        _unsupported("reorder_cache")

    def reset(self) -> None:
        _unsupported("reset")

    def offload(self) -> None:
        _unsupported("offload")

    def prefetch(self) -> None:
        _unsupported("prefetch")

    def attend(self, query: torch.Tensor, scale: float | None) -> torch.Tensor:
        """Attention of one new position per row (``query``: [rows, heads, 1, dim]) over its prompt and its generated
        tokens; returns [rows, 1, heads, dim], as transformers' attention functions do."""
        rows, heads, _, dim = query.shape
        kv_heads = self.prompt_keys.shape[1]
        group = heads // kv_heads
        scale = scale if scale is not None else dim**-0.5
        per_row = query.reshape(rows, kv_heads, group, dim)  # query heads of one key head together (GQA)
        prompt_scores = self.scores(_packed(per_row, self.pack, self.slots), self.prompt_keys, scale)
        prompt_scores = _unpacked(prompt_scores.add_(self.prompt_bias), self.slots, group, self.unpack)
        own_scores = self.scores(per_row, self.key_buffer, scale)
        own_scores[..., self.length :] = float("-inf")  # columns not generated yet
        weights = torch.softmax(torch.cat([prompt_scores, own_scores], dim=-1), dim=-1).to(query.dtype)
        prompt_weights, own_weights = weights.split([self.prompt_length, own_scores.shape[-1]], dim=-1)
        prompt_out = torch.matmul(_packed(prompt_weights, self.pack, self.slots), self.prompt_values)
        out = torch.matmul(own_weights, self.value_buffer).float()
        out += _unpacked(prompt_out, self.slots, group, self.unpack)
        return out.to(query.dtype).reshape(rows, 1, heads, dim)


def _unsupported(operation: str) -> None:
    raise NotImplementedError(
        f"SharedPromptLayer does not support {operation}: it keeps each prompt once and each row's generated part "
        "apart (rows leave through batch_select_indices only)"
    )


def _widened(buffer: torch.Tensor, columns: int) -> torch.Tensor:
    """``buffer`` ([rows, heads, positions, dim]) copied into a zeroed one of ``columns`` positions."""
    wider = buffer.new_zeros(*buffer.shape[:2], columns, buffer.shape[-1])
    wider[:, :, : buffer.shape[2]] = buffer
    return wider


def key_side_scores(query: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled dot products in fp32 of ``query`` ([..., queries, dim]) with ``keys`` ([..., columns, dim]): [...,
    queries, columns], computed as ``keys @ query^T`` (the many key columns on the product's long side, the few
    queries on its short one) and transposed back in the copy to fp32 that the scores take anyway.

    On an AMX CPU 1.3-1.8x faster per product in bf16 than :func:`query_side_scores` (timed alone over 30 layers'
    caches) and Engine.generate 1.02x (session 19); on the Zen 4 EPYC (AVX-512 BF16, no AMX) Engine.generate 0.95x
    (session 20; ``bench/decode_attention.py``, docs/benchmarks.md). The same values up to bf16 rounding."""
    by_column = torch.matmul(keys, query.transpose(-1, -2))
    scores = torch.empty(by_column.shape[:-2] + by_column.shape[:-3:-1], dtype=torch.float32, device=query.device)
    return scores.copy_(by_column.transpose(-1, -2)).mul_(scale)


def query_side_scores(query: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """:func:`key_side_scores` computed as ``query @ keys^T``, then copied to fp32 (sessions 16-18, and CPUs
    without AMX since session 20)."""
    return torch.matmul(query, keys.transpose(-1, -2)).float().mul_(scale)


@functools.cache
def scores_from_key_side() -> bool:
    """Whether this CPU takes decode attention's scores from the key side: where it has AMX (measured faster there,
    slower on an AVX-512 BF16 CPU without; see :func:`key_side_scores`). Read once per process."""
    return cpu_has_amx()


def _packed(per_row: torch.Tensor, pack: torch.Tensor | None, slots: int) -> torch.Tensor:
    """One entry per row ([rows, kv heads, group, rest]) to the rows of each prompt side by side: [prompts, kv heads,
    slots * group, rest], the row of slot ``s`` of prompt ``p`` being ``pack[p * slots + s]`` (row ``p * slots + s``
    where ``pack`` is ``None``)."""
    _, kv_heads, group, rest = per_row.shape
    chosen = per_row if pack is None else per_row.index_select(0, pack)
    by_slot = chosen.view(-1, slots, kv_heads, group, rest)
    return by_slot.transpose(1, 2).reshape(-1, kv_heads, slots * group, rest)


def _unpacked(packed: torch.Tensor, slots: int, group: int, unpack: torch.Tensor | None) -> torch.Tensor:
    """[prompts, kv heads, slots * group, *rest] back to one entry per row: [rows, kv heads, group, *rest] (``unpack``
    ``None``: the slots are the rows, in order)."""
    prompts, kv_heads = packed.shape[:2]
    rest = packed.shape[3:]
    per_slot = packed.view(prompts, kv_heads, slots, group, *rest).transpose(1, 2)
    slotted = per_slot.reshape(prompts * slots, kv_heads, group, *rest)
    return slotted if unpack is None else slotted.index_select(0, unpack)


def shared_prompt_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; ``key``/``value`` are the layer's generated part (already in it)."""
    layer: SharedPromptLayer | None = module.__dict__.get(_LAYER_ATTRIBUTE)
    if layer is None or query.shape[2] != 1:
        raise RuntimeError("shared-prompt attention serves decode steps of a cache made by shared_prompt_cache only")
    return layer.attend(query, scaling), None


# Families whose attention is plain SDPA over the cache (no sinks, biases or extra kwargs), tested with this path.
FAMILIES = frozenset({"llama", "qwen2", "qwen3"})


def supports(model: Any) -> bool:
    """True for a model of a tested plain-attention family whose every layer attends to the whole sequence (no layer
    type but full attention, no sliding window in use, no soft-capping)."""
    config = model.config.get_text_config(decoder=True)
    if getattr(config, "model_type", None) not in FAMILIES:
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and any(kind != "full_attention" for kind in layer_types):
        return False
    windowed = getattr(config, "use_sliding_window", True) and getattr(config, "sliding_window", None) is not None
    if windowed or getattr(config, "attn_logit_softcapping", None) is not None:
        return False
    modules = _attention_modules(model)
    return len(modules) == int(config.num_hidden_layers)


def _attention_modules(model: Any) -> dict[int, Any]:
    return {
        int(module.layer_idx): module
        for module in model.modules()
        if hasattr(module, "layer_idx") and hasattr(module, "num_key_value_groups")
    }


def shared_prompt_cache(cache: Cache, prompt_mask: torch.Tensor, prompt_of_row: torch.Tensor, capacity: int) -> Cache:
    """A cache for the decode steps from ``cache`` filled by the prefill of the distinct prompts (one row each,
    ``prompt_mask`` their attention mask); ``prompt_of_row``: each batch row's prompt; ``capacity``: positions to
    generate."""
    keys = cache.layers[0].keys  # every layer's have one dtype and device
    bias = torch.zeros(prompt_mask.shape, dtype=keys.dtype, device=keys.device)
    bias = bias.masked_fill_(~prompt_mask.bool(), float("-inf"))[:, None, None, :]
    layers = [SharedPromptLayer(layer.keys, layer.values, bias, prompt_of_row, capacity) for layer in cache.layers]
    return Cache(layers=layers)


@contextlib.contextmanager
def attending_prompts_once(model: Any, cache: Cache) -> Iterator[None]:
    """Run ``model``'s attention through :func:`shared_prompt_attention` on ``cache``'s layers while in the block."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if ATTENTION_NAME not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, shared_prompt_attention)
    modules = _attention_modules(model)
    configs = {id(m.config): m.config for m in modules.values()}
    # The value itself, not through the property's setter: that would also overwrite every sub-config's on restore.
    previous = {key: config._attn_implementation_internal for key, config in configs.items()}
    try:
        for index, module in modules.items():
            module.__dict__[_LAYER_ATTRIBUTE] = cache.layers[index]
        for config in configs.values():
            config._attn_implementation_internal = ATTENTION_NAME
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation_internal = previous[key]
        for module in modules.values():
            module.__dict__.pop(_LAYER_ATTRIBUTE, None)
