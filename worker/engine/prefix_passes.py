"""Running a plan of shared prompt prefixes (:mod:`worker.engine.prefix_sharing`): each prefix once, in a single-row
pass on its rows' adapter, its keys and values copied into those rows' cache slots before the batch prefill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from worker.engine.adapters import BASE
from worker.engine.kv_cache import preallocated_cache
from worker.engine.lora_batch import grouped_lora
from worker.engine.prefix_sharing import PrefixPlan, plan_prefixes


@dataclass(frozen=True)
class ModelCall:
    """What a forward of the engine's model needs besides its inputs."""

    model: Any
    device: Any
    cache_argument: str  # the forward's name for the KV cache (transformers 5 renamed it)
    exact: bool  # per-adapter sub-batches (fp32's exact rows), see worker.engine.lora_batch


def fill_shared_prefixes(
    call: ModelCall, cache: Any, width: int, tokens: list[list[int]], names: list[str] | None
) -> int:
    """Fill ``cache`` (a batch ``width`` columns wide, rows ``tokens`` without padding, on adapters ``names``; ``None``:
    no adapters) with the rows' shared prompt prefixes; returns the first column the batch forward still has to
    compute (0 when nothing is shared)."""
    plan = plan_prefixes(tokens, names or [BASE] * len(tokens), width=width)
    if plan is None:
        return 0
    for prefix in plan.prefixes:
        needed = max(plan.start - plan.begin(len(tokens[row])) for row in prefix.rows)
        if needed <= 0:
            continue
        layers = prefix_pass(call, prefix.tokens[:needed], prefix.name if names is not None else None)
        for layer, (keys, values) in zip(cache.layers, layers, strict=True):
            if not layer.is_initialized:
                layer.allocate(len(tokens), keys, values)
            for row in prefix.rows:
                begin = plan.begin(len(tokens[row]))
                if begin < plan.start:
                    layer.write(row, begin, keys[0, :, : plan.start - begin], values[0, :, : plan.start - begin])
    return _advance(cache, plan)


def _advance(cache: Any, plan: PrefixPlan) -> int:
    if not all(layer.is_initialized for layer in cache.layers):
        return 0  # nothing was written: the batch forward computes every column
    for layer in cache.layers:
        layer.advance(plan.start)
    return plan.start


def prefix_pass(call: ModelCall, tokens: Sequence[int], name: str | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of every layer for one prompt prefix on adapter ``name`` (``None``: no adapters)."""
    cache = preallocated_cache(call.model, len(tokens))
    ids = torch.tensor([list(tokens)], device=call.device)
    kwargs: dict[str, Any] = {call.cache_argument: cache}
    grouped = grouped_lora(call.model, [name], exact=call.exact) if name is not None else None
    if name is not None and grouped is None:
        kwargs["adapter_names"] = [name]
    try:
        call.model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(len(tokens), device=call.device).unsqueeze(0),
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
    finally:
        if grouped is not None:
            grouped.close()
    return [(layer.keys, layer.values) for layer in cache.layers]
