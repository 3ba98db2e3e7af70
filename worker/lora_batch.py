"""Mixed-adapter LoRA for one batch with two batched matmuls per layer, whatever the number of styles.

PEFT mixes adapters in a batch (``adapter_names``) by looping, in every LoRA layer and at every step, over the
adapters present: index the rows of each, run its A and B, scatter the result back — about six small
operations per adapter per layer, so the cost grows with the number of styles in the batch. Here each LoRA
layer gets, once per batch, the A and B matrices of every row's adapter stacked along the batch dimension
(rows on the base model get zeros), and adds ``(x @ A[row]) @ B[row] * scaling`` with ``bmm`` and ``baddbmm``.
The rows stay independent (a batched matmul never mixes rows). The LoRA product runs in the model's dtype
(PEFT runs it in the adapter's fp32 and casts back, two extra copies per layer and step); in fp32 the two
agree to rounding, under bf16 the difference is below bf16's own resolution of the layer output.

With ``exact=True`` (the engine's fp32 mode, which promises that a row's text does not depend on its batch)
the stacks are not used: each adapter's rows run as one sub-batch through its own A and B, exactly PEFT's
arithmetic (the same bits, checked in tests/test_engine.py), but with the row indices built once per batch
instead of in every layer at every step, and without PEFT's per-call forward hooks.

Only plain LoRA layers are handled (no DoRA or other variants, no LoRA bias, no fan-in-fan-out); for any
other adapter :func:`grouped_lora` returns ``None`` and the engine keeps PEFT's own mixed-batch path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

BASE = "__base__"


class _Stack:
    """The A and B matrices of the adapters of one rank, stacked; slot 0 holds zeros."""

    def __init__(self, layer: Any, adapters: list[str], names: Sequence[str], dtype: torch.dtype) -> None:
        base = layer.get_base_layer()
        rank = layer.lora_A[adapters[0]].weight.shape[0]
        device = base.weight.device
        self.stack_a = torch.zeros(len(adapters) + 1, base.in_features, rank, dtype=dtype, device=device)
        self.stack_b = torch.zeros(len(adapters) + 1, rank, base.out_features, dtype=dtype, device=device)
        self.scales = torch.zeros(len(adapters) + 1, 1, 1, dtype=dtype, device=device)
        for slot, name in enumerate(adapters, start=1):
            self.stack_a[slot] = layer.lora_A[name].weight.T.to(dtype)
            self.stack_b[slot] = layer.lora_B[name].weight.T.to(dtype)
            self.scales[slot] = layer.scaling[name]
        slots = {name: slot for slot, name in enumerate(adapters, start=1)}
        self.index = torch.tensor([slots.get(n, 0) for n in names], device=device)
        self.keep(None)

    def keep(self, rows: torch.Tensor | None) -> None:
        if rows is not None:
            self.index = self.index[rows.to(self.index.device)]
        self.rows_a = self.stack_a[self.index]
        self.rows_b = self.stack_b[self.index]
        self.rows_scale = self.scales[self.index]


class _SubBatches:
    """Every adapter's rows of the batch as an index tensor; rows of the base model are in none of them."""

    def __init__(self, adapters: list[str], names: Sequence[str], device: torch.device) -> None:
        self.adapters = adapters
        self.names = list(names)
        self.device = device
        self.keep(None)

    def keep(self, rows: torch.Tensor | None) -> None:
        if rows is not None:
            self.names = [self.names[i] for i in rows.tolist()]
        rows_of = {name: [i for i, n in enumerate(self.names) if n == name] for name in self.adapters}
        self.rows = {name: torch.tensor(rows, device=self.device) for name, rows in rows_of.items() if rows}


class _LayerPlan:
    """The stacked LoRA matrices of one layer for the rows of the current batch.

    Adapters are stacked per rank: zero-padding a smaller rank would change the order of the sums in the
    second product, and with it the last bits of a row's result depending on its neighbours. Rows outside
    a stack get its zero slot, and adding an exact zero changes nothing.
    """

    def __init__(self, layer: Any, names: Sequence[str], sub_batches: _SubBatches | None) -> None:
        self.layer = layer
        self.sub_batches = sub_batches
        self.stacks: list[_Stack] = []
        if sub_batches is not None:
            return
        dtype = layer.get_base_layer().weight.dtype  # the model's compute dtype: no casts per step
        by_rank: dict[int, list[str]] = {}
        for name in sorted({n for n in names if n in layer.lora_A}):
            by_rank.setdefault(layer.lora_A[name].weight.shape[0], []).append(name)
        self.stacks = [_Stack(layer, adapters, names, dtype) for _, adapters in sorted(by_rank.items())]

    def keep(self, rows: torch.Tensor) -> None:
        for stack in self.stacks:
            stack.keep(rows)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.layer.base_layer(x, *args, **kwargs)
        if self.sub_batches is not None:
            return self._add_sub_batches(x, result, self.sub_batches)
        if not self.stacks:
            return result
        shape = result.shape
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        for stack in self.stacks:
            flat = flat.to(stack.rows_a.dtype)
            delta = torch.bmm(torch.bmm(flat, stack.rows_a), stack.rows_b) * stack.rows_scale
            result = result + delta.reshape(shape).to(result.dtype)
        return result

    def _add_sub_batches(self, x: torch.Tensor, result: torch.Tensor, sub_batches: _SubBatches) -> torch.Tensor:
        """PEFT's own mixed-batch arithmetic, op for op (so the same bits), with the row indices built once."""
        layer = self.layer
        for name, rows in sub_batches.rows.items():
            if name not in layer.lora_A:
                continue
            lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
            sub_batch = x.index_select(0, rows).to(lora_a.weight.dtype)
            lora_output = lora_b(lora_a(sub_batch)) * layer.scaling[name]
            result[rows] += lora_output.to(result.dtype)
        return result


class GroupedLora:
    """Installs the stacked forward on every LoRA layer of a model for one batch; ``close`` restores PEFT's."""

    def __init__(self, layers: list[Any], names: Sequence[str], *, exact: bool = False) -> None:
        self.sub_batches = None
        if exact:
            adapters = sorted({n for n in names if n != BASE})
            self.sub_batches = _SubBatches(adapters, names, layers[0].get_base_layer().weight.device)
        self.plans = [_LayerPlan(layer, names, self.sub_batches) for layer in layers]
        for plan in self.plans:
            plan.layer.forward = plan.forward

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch), as the engine drops finished rows."""
        if self.sub_batches is not None:
            self.sub_batches.keep(rows)
        for plan in self.plans:
            plan.keep(rows)

    def close(self) -> None:
        for plan in self.plans:
            plan.layer.__dict__.pop("forward", None)

    def __enter__(self) -> GroupedLora:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def grouped_lora(model: Any, names: Sequence[str], *, exact: bool = False) -> GroupedLora | None:
    """A :class:`GroupedLora` for ``names`` (one adapter name or ``__base__`` per row), or ``None`` when the
    model has no LoRA layers or one of them is not plain LoRA (then PEFT's ``adapter_names`` path is used).

    ``exact``: per-adapter sub-batches, PEFT's arithmetic op for op (a row's result does not depend on its
    neighbours beyond what the base matmuls allow), instead of the stacked products."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return None
    layers = [module for module in model.modules() if isinstance(module, LoraLinear)]
    wanted = {n for n in names if n != BASE}
    if not layers or not wanted:
        return None
    for layer in layers:
        if layer.merged_adapters or getattr(layer, "fan_in_fan_out", False):
            return None
        for name in wanted & set(layer.lora_A.keys()):
            if name in getattr(layer, "lora_variant", {}) or getattr(layer, "use_dora", {}).get(name, False):
                return None
            if getattr(layer, "lora_bias", {}).get(name, False):
                return None
    return GroupedLora(layers, names, exact=exact)
