"""Mixed-adapter LoRA for one batch in three operations per layer, whatever the number of styles.

PEFT mixes adapters in a batch (``adapter_names``) by looping, in every LoRA layer and at every step, over the
adapters present: index the rows of each, run its A and B, scatter the result back — about six small
operations per adapter per layer, so the cost grows with the number of styles in the batch. Here each LoRA
layer gets, once per batch, the A matrices of the batch's adapters side by side (``A_cat``: every adapter's
rank columns), their B matrices stacked to match (``B_cat``), and a mask with one row per batch row that holds
the row's adapter scaling over that adapter's columns and zeros elsewhere (all zeros for a row on the base
model). The layer adds ``((x @ A_cat) * mask) @ B_cat``: a row's update is its own adapter's, the others'
columns contribute exact zeros, and each weight is read once per step. (The previous version stacked every
row's own A and B and ran two batched matmuls: it read the adapter weights once per row and cost ~20 % of a
step; ``bench/lora_mixing.py`` compares the two.) The LoRA product runs in the model's dtype (PEFT runs it in
the adapter's fp32 and casts back, two extra copies per layer and step); in fp32 the two agree to rounding,
under bf16 the difference is below bf16's own resolution of the layer output.

With ``exact=True`` (the engine's exact rows, fp32, which promise that a row's text does not depend on its batch)
the concatenated products are not used: each adapter's rows run as one sub-batch through its own A and B, exactly PEFT's
arithmetic (the same bits, checked in tests/engine/test_engine.py), but with the row indices built once per batch
instead of in every layer at every step, and without PEFT's per-call forward hooks.

Only plain LoRA linear layers are handled (no DoRA or other variants, no LoRA bias, no fan-in-fan-out, no LoRA
embedding, no ``modules_to_save`` or trainable tokens); for any other adapter :func:`grouped_lora` returns ``None``
and the engine keeps PEFT's own mixed-batch path.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from worker.engine.grouped_projections import MemberForward, ProjectionGroup, group_of
from worker.engine.packed_linear import Product

BASE = "__base__"


class _Concatenated:
    """Every adapter's A and B of one layer (or one group of layers) side by side, and each row's mask over their
    rank columns.

    ``x @ A_cat`` computes every adapter's rank columns for every row in one product; the mask keeps a row's own
    adapter's columns, multiplied by its scaling, and zeroes the others (all of them for a row on the base model);
    ``@ B_cat`` then adds only the row's own adapter's update. Three operations per layer and step whatever the
    number of adapters, and a weight read once per step, not once per row. For a group of layers that share their
    input (:mod:`worker.engine.grouped_projections`) the columns of every member are side by side and ``B_cat`` is
    block-diagonal: three operations for the whole group.
    """

    def __init__(self, products: tuple[Product, Product], mask: torch.Tensor) -> None:
        self.lora_a, self.lora_b = products
        self.mask = mask
        self.keep(None)

    def keep(self, rows: torch.Tensor | None) -> None:
        if rows is not None:
            self.mask = self.mask[rows.to(self.mask.device)]
        self.row_mask = self.mask.unsqueeze(1)  # [rows, 1, rank columns]: broadcasts over a prefill's positions

    def add_to(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1]).to(self.lora_a.weight.dtype)
        hidden = self.lora_a(flat).mul_(self.row_mask)
        return self.lora_b.add_to(hidden, result.reshape(hidden.shape[0], hidden.shape[1], -1)).reshape(result.shape)


def _layer_concatenated(layer: Any, adapters: list[str], names: Sequence[str], dtype: torch.dtype) -> _Concatenated:
    """One LoRA layer's :class:`_Concatenated` for the rows ``names``."""
    columns = _rank_columns(layer, adapters, 0)
    device = layer.get_base_layer().weight.device
    mask = _row_mask(columns, names, _width(layer, adapters), dtype, device)
    return _Concatenated(_products(layer, adapters, dtype), mask)


def _group_concatenated(
    group: ProjectionGroup, members: dict[int, Any], names: Sequence[str], dtype: torch.dtype
) -> _Concatenated | None:
    """The LoRA update of a group of layers (``members``: the group's index of each LoRA layer) for ``names``:
    every member's A side by side, B block-diagonal into the group's output columns; ``None`` when no row's
    adapter is in any member."""
    wanted = set(names)
    adapters = {index: sorted(wanted & set(layer.lora_A)) for index, layer in members.items()}
    adapters = {index: found for index, found in adapters.items() if found}
    if not adapters:
        return None
    columns: list[tuple[str, slice, float]] = []
    offset = 0
    for index, found in sorted(adapters.items()):
        columns += _rank_columns(members[index], found, offset)
        offset += _width(members[index], found)
    device = group.linears[0].weight.device
    mask = _row_mask(columns, names, offset, dtype, device)
    return _Concatenated(_group_products(group, members, adapters, dtype), mask)


def _rank_columns(layer: Any, adapters: list[str], offset: int) -> list[tuple[str, slice, float]]:
    """Each adapter's slice of the rank columns (from ``offset``) and its scaling."""
    columns = []
    for name in adapters:
        rank = layer.lora_A[name].weight.shape[0]
        columns.append((name, slice(offset, offset + rank), layer.scaling[name]))
        offset += rank
    return columns


def _width(layer: Any, adapters: list[str]) -> int:
    return sum(layer.lora_A[name].weight.shape[0] for name in adapters)


def _row_mask(
    columns: list[tuple[str, slice, float]], names: Sequence[str], width: int, dtype: torch.dtype, device: Any
) -> torch.Tensor:
    """One row per batch row: its adapter's scaling over that adapter's columns, zeros elsewhere.

    Built as one template row per distinct name, then indexed by the rows' names (a few operations per layer and
    batch, not one per row)."""
    distinct = list(dict.fromkeys(names))
    templates = torch.zeros(len(distinct), width, dtype=dtype)
    for index, row_name in enumerate(distinct):
        for name, block, scaling in columns:
            if name == row_name:
                templates[index, block] = scaling
    position = {name: index for index, name in enumerate(distinct)}
    return templates[torch.tensor([position[name] for name in names])].to(device)


# Per LoRA layer (or group of layers), the concatenated products of the adapter sets it served recently: a worker's
# batches mix the same styles again and again, and packing the matrices costs ~0.2 ms per layer (0.4 s per batch of
# a 30-layer model). Least recently used first; prefix passes add one single-adapter set per adapter.
_PRODUCTS: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[Any, ...], tuple[Product, Product]]] = (
    weakref.WeakKeyDictionary()
)
_PRODUCTS_PER_LAYER = 24


class _Same:
    """A tensor by identity in a cache key, without keeping it alive: once the tensor is freed the key matches
    nothing (its ``id`` alone could match a new tensor at the same address, e.g. an adapter reloaded)."""

    __slots__ = ("_hash", "_ref")

    def __init__(self, tensor: torch.Tensor) -> None:
        self._ref = weakref.ref(tensor)
        self._hash = id(tensor)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Same):
            return NotImplemented
        target = self._ref()
        return target is not None and target is other._ref()


def _weights_key(layer: Any, adapters: list[str]) -> tuple[Any, ...]:
    """The adapters' weight tensors by identity and in-place version: a reloaded or changed adapter is new."""
    weights = ((name, layer.lora_A[name].weight, layer.lora_B[name].weight) for name in adapters)
    return tuple((name, _Same(a), a._version, _Same(b), b._version) for name, a, b in weights)


def _cached(owner: Any, key: tuple[Any, ...], build: Any) -> tuple[Product, Product]:
    cache = _PRODUCTS.setdefault(owner, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    while len(cache) >= _PRODUCTS_PER_LAYER:
        cache.popitem(last=False)
    cache[key] = build()
    return cache[key]


def _concatenated_weights(layer: Any, adapters: list[str], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A_cat and B_cat of ``adapters`` in ``layer``: [rank columns, in] and [out, rank columns]."""
    lora_a = torch.cat([layer.lora_A[name].weight.detach().to(dtype) for name in adapters], dim=0)
    lora_b = torch.cat([layer.lora_B[name].weight.detach().to(dtype) for name in adapters], dim=1)
    return lora_a, lora_b


def _products(layer: Any, adapters: list[str], dtype: torch.dtype) -> tuple[Product, Product]:
    """A_cat and B_cat of ``adapters`` in ``layer`` as packed products, cached per adapter set."""

    def build() -> tuple[Product, Product]:
        lora_a, lora_b = _concatenated_weights(layer, adapters, dtype)
        return Product(lora_a.contiguous()), Product(lora_b.contiguous())

    return _cached(layer, (dtype, *_weights_key(layer, adapters)), build)


def _group_products(
    group: ProjectionGroup, members: dict[int, Any], adapters: dict[int, list[str]], dtype: torch.dtype
) -> tuple[Product, Product]:
    """The group's A_cat (every member's, side by side) and block-diagonal B_cat, cached per adapter set."""

    def build() -> tuple[Product, Product]:
        parts = {index: _concatenated_weights(members[index], found, dtype) for index, found in adapters.items()}
        lora_a = torch.cat([parts[index][0] for index in sorted(parts)], dim=0)
        lora_b = lora_a.new_zeros(group.width, lora_a.shape[0])
        column = 0
        for index in sorted(parts):
            start, end = group.bounds[index]
            rank_columns = parts[index][1].shape[1]
            lora_b[start:end, column : column + rank_columns] = parts[index][1]
            column += rank_columns
        return Product(lora_a.contiguous()), Product(lora_b)

    key = (dtype, *((index, *_weights_key(members[index], found)) for index, found in sorted(adapters.items())))
    return _cached(group, key, build)


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
    """The concatenated LoRA matrices of one layer for the rows of the current batch (or its sub-batches)."""

    def __init__(self, layer: Any, names: Sequence[str], sub_batches: _SubBatches | None) -> None:
        self.layer = layer
        self.sub_batches = sub_batches
        self.concatenated: _Concatenated | None = None
        if sub_batches is not None:
            return
        dtype = layer.get_base_layer().weight.dtype  # the model's compute dtype: no casts per step
        adapters = sorted({n for n in names if n in layer.lora_A})
        if adapters:
            self.concatenated = _layer_concatenated(layer, adapters, names, dtype)

    def keep(self, rows: torch.Tensor) -> None:
        if self.concatenated is not None:
            self.concatenated.keep(rows)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.layer.base_layer(x, *args, **kwargs)
        if self.sub_batches is not None:
            return self._add_sub_batches(x, result, self.sub_batches)
        if self.concatenated is None:
            return result
        return self.concatenated.add_to(x, result)

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
    """Installs the concatenated forward on every LoRA layer of a model for one batch; ``close`` restores PEFT's.

    LoRA layers whose base layers are grouped (:mod:`worker.engine.grouped_projections`, without exact rows only) get
    their group's output instead, the group's LoRA update computed once for all its members."""

    def __init__(self, layers: list[Any], names: Sequence[str], *, exact: bool = False) -> None:
        if any("forward" in layer.__dict__ for layer in layers):
            # A second install would replace the first's forwards, and its close would remove them under it.
            raise RuntimeError("a grouped LoRA forward is already installed on this model: close it first")
        self.sub_batches = None
        if exact:
            adapters = sorted({n for n in names if n != BASE})
            self.sub_batches = _SubBatches(adapters, names, layers[0].get_base_layer().weight.device)
        # Everything is built before anything is installed: a failure on the way leaves the model as it was.
        members = {} if exact else _group_members(layers)
        self.groups: list[tuple[ProjectionGroup, _Concatenated | None]] = [
            (group, _group_concatenated(group, by_index, names, group.linears[0].weight.dtype))
            for group, by_index in members.items()
        ]
        self.grouped_layers = [
            (layer, group, index) for group, by_index in members.items() for index, layer in by_index.items()
        ]
        in_groups = {id(layer) for layer, _, _ in self.grouped_layers}
        self.plans = [_LayerPlan(layer, names, self.sub_batches) for layer in layers if id(layer) not in in_groups]
        for group, update in self.groups:
            group.forget()
            group.lora = update
        for layer, group, index in self.grouped_layers:
            layer.forward = MemberForward(group, index)
        for plan in self.plans:
            plan.layer.forward = plan.forward

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch), as the engine drops finished rows."""
        if self.sub_batches is not None:
            self.sub_batches.keep(rows)
        for plan in self.plans:
            plan.keep(rows)
        for group, update in self.groups:
            group.forget()
            if update is not None:
                update.keep(rows)

    def close(self) -> None:
        for plan in self.plans:
            plan.layer.__dict__.pop("forward", None)
        for layer, _, _ in self.grouped_layers:
            layer.__dict__.pop("forward", None)
        for group, _ in self.groups:
            group.lora = None
            group.forget()

    def __enter__(self) -> GroupedLora:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _group_members(layers: list[Any]) -> dict[ProjectionGroup, dict[int, Any]]:
    """The LoRA layers whose base layers are grouped, by group and index in it."""
    members: dict[ProjectionGroup, dict[int, Any]] = {}
    for layer in layers:
        found = group_of(layer.get_base_layer())
        if found is not None:
            members.setdefault(found[0], {})[found[1]] = layer
    return members


def grouped_lora(model: Any, names: Sequence[str], *, exact: bool = False) -> GroupedLora | None:
    """A :class:`GroupedLora` for ``names`` (one adapter name or ``__base__`` per row), or ``None`` when the
    model has no LoRA layers or one of them is not plain LoRA (then PEFT's ``adapter_names`` path is used).

    ``exact``: per-adapter sub-batches, PEFT's arithmetic op for op (a row's result does not depend on its
    neighbours beyond what the base matmuls allow), instead of the concatenated products."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return None
    layers = [module for module in model.modules() if isinstance(module, LoraLinear)]
    wanted = {n for n in names if n != BASE}
    if not layers or not wanted or _has_other_adapter_modules(model, LoraLinear):
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


def _has_other_adapter_modules(model: Any, lora_linear: type) -> bool:
    """Whether the model holds adapter modules other than LoRA linears: LoRA embeddings, whole modules an adapter
    carries (``modules_to_save``), trainable tokens. A GroupedLora passes no ``adapter_names``, so PEFT would run
    such a module with its active adapter for every row; PEFT's own mixed batch gives each row its own."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper  # the base of ModulesToSaveWrapper, TrainableTokensWrapper

    return any(
        isinstance(module, AuxiliaryTrainingWrapper)
        or (isinstance(module, BaseTunerLayer) and not isinstance(module, lora_linear) and _holds_adapters(module))
        for module in model.modules()
    )


def _holds_adapters(layer: Any) -> bool:
    """Whether a PEFT layer still holds an adapter's weights (deleting the last adapter leaves the layer in place)."""
    return any(len(getattr(layer, name, ())) for name in layer.adapter_layer_names)
