"""Linear layers that read the same input, run as one product: q/k/v of an attention block, gate/up of an MLP.

A decode step of a small model is a long chain of small matmuls, and on a CPU each call has a fixed cost (~50 us
with two threads) that the arithmetic of a 576-wide product at 32-128 rows does not hide. Every attention block
calls ``q_proj``, ``k_proj`` and ``v_proj`` on the same hidden states, every gated MLP ``gate_proj`` and ``up_proj``:
here their weights are concatenated once (``[W_q; W_k; W_v]``) and packed, the first member called computes the
whole group's output in one product (a bias fused in), and the others get their slice of it (a view, no copy) when
they are called with the same input tensor. Under a mixed-adapter batch the group's LoRA update is one product too
(:mod:`worker.engine.lora_batch` sets :attr:`ProjectionGroup.lora`): one call for every member's A side, one for
every member's B side, instead of two per member.

Only without exact rows (bf16, fp16, and fp32 on the fast paths): the grouped product rounds a row like the separate
ones only up to the kernel's blocking, and exact rows promise bits (worker.engine.engine). Members keep their class
(PEFT wraps them); their weights become views into the concatenated weight (no second copy of the values; the packed
copy costs what a packed layer's does) and ``forward`` is replaced on the instance. A weight or bias replaced, or
changed in place through autograd-visible ops (which bump its version), is concatenated again before its next use; a
write through ``.data`` is not seen (as for :mod:`worker.engine.packed_linear`; the engine never merges adapters into
weights). A model that feeds a group's members different inputs would recompute the group per member: the engine runs
one short forward at load to find such groups and undoes them (:func:`ungroup_unshared`)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch

from worker.engine.packed_linear import Product

logger = logging.getLogger(__name__)

# Attribute names of the linear layers grouped, per module that holds them (Llama, Qwen2, Gemma 3, Mistral, ...).
GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
_ATTRIBUTE = "_copydesk_group"


class GroupUpdate(Protocol):
    """What a group adds to its output for the current batch (the LoRA update of :mod:`worker.engine.lora_batch`)."""

    def add_to(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor: ...


class ProjectionGroup:
    """The concatenated weight of linear layers that share their input, and each member's slice of its output.

    At grouping the members' weights become views into the concatenated one (:func:`group_projections`), so the
    group costs no memory beyond its packed copy, as a packed layer does; a weight replaced or changed later is
    concatenated again, as a copy."""

    def __init__(self, linears: list[torch.nn.Linear], batch_hint: int, *, pack: bool = True) -> None:
        self.linears = linears
        self.batch_hint = batch_hint
        self.pack = pack
        self.bounds: list[tuple[int, int]] = []
        start = 0
        for linear in linears:
            self.bounds.append((start, start + linear.out_features))
            start += linear.out_features
        self.width = start
        self.lora: GroupUpdate | None = None
        self._pending: dict[int, torch.Tensor] = {}
        self._input: torch.Tensor | None = None
        self.recomputed = 0  # members called with another input than the group's last one
        self._concatenate()

    def _concatenate(self) -> None:
        weight = torch.cat([linear.weight.detach() for linear in self.linears])
        self.product = Product(weight, self.batch_hint, pack=self.pack)
        biases = [linear.bias for linear in self.linears]
        self.bias: torch.Tensor | None = None
        if any(bias is not None for bias in biases):
            self.bias = torch.cat(
                [
                    bias.detach() if bias is not None else weight.new_zeros(linear.out_features)
                    for bias, linear in zip(biases, self.linears, strict=True)
                ]
            )
        self._sources = self._parameters()

    def share_weights(self) -> None:
        """Make each member's weight a view into the concatenated weight: one copy of the values, not two."""
        with torch.no_grad():
            for linear, (start, end) in zip(self.linears, self.bounds, strict=True):
                linear.weight.data = self.product.weight[start:end]
        self._sources = self._parameters()

    def _parameters(self) -> list[tuple[Any, int]]:
        """Every member's weight and bias with its in-place version: what the concatenation was made from."""
        tensors = [t for linear in self.linears for t in (linear.weight, linear.bias) if t is not None]
        return [(tensor, tensor._version) for tensor in tensors]

    def _stale(self) -> bool:
        current = self._parameters()
        return len(current) != len(self._sources) or any(
            tensor is not old or version != old_version
            for (tensor, version), (old, old_version) in zip(current, self._sources, strict=True)
        )

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Member ``index``'s output for ``x``: its slice of the group's product, computed once per input."""
        if x is self._input and index in self._pending:
            out = self._pending.pop(index)
            if not self._pending:
                self._input = None
            return out
        if self._pending:
            self.recomputed += 1
        outputs = self._compute(x)
        self._pending = {i: out for i, out in enumerate(outputs) if i != index}
        self._input = x if self._pending else None
        return outputs[index]

    def _compute(self, x: torch.Tensor) -> list[torch.Tensor]:
        result = self.whole_output(x)
        return [result[..., start:end] for start, end in self.bounds]

    def whole_output(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's output for ``x`` side by side (``bounds``: each one's columns), its LoRA update added;
        the members' pending outputs are left as they are."""
        if self._stale():
            self._concatenate()
        result = self.product(x, self.bias)
        if self.lora is not None:
            result = self.lora.add_to(x, result)
        return result

    def forget(self) -> None:
        """Drop the outputs not collected yet (the batch they were for is over)."""
        self._pending = {}
        self._input = None


class MemberForward:
    """``forward`` of one grouped ``nn.Linear``: its slice of the group's output."""

    def __init__(self, group: ProjectionGroup, index: int) -> None:
        self.group = group
        self.index = index

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.output(self.index, x)


def group_projections(model: Any, batch_hint: int, *, pack: bool = True) -> int:
    """Group the q/k/v and gate/up layers of every block of ``model`` that has them all as plain linear layers with
    one input width; returns how many groups were made. Layers grouped already are left alone. ``pack``: the
    concatenated weights as packed oneDNN products (:mod:`worker.engine.packed_linear`) where the CPU allows."""
    made = 0
    for module in model.modules():
        for names in GROUPS:
            linears = [getattr(module, name, None) for name in names]
            if not _groupable(linears):
                continue
            group = ProjectionGroup(linears, batch_hint, pack=pack)  # type: ignore[arg-type]
            group.share_weights()
            for index, linear in enumerate(linears):
                linear.__dict__[_ATTRIBUTE] = group  # type: ignore[union-attr]
                linear.forward = MemberForward(group, index)  # type: ignore[union-attr]
            made += 1
    if made:
        logger.debug("grouped %d sets of projections that share their input", made)
    return made


def model_groups(model: Any) -> list[ProjectionGroup]:
    """Every group of ``model``'s projections, once each."""
    return list({id(g): g for g in (group_of_module(m) for m in model.modules()) if g is not None}.values())


def forget_outputs(model: Any) -> None:
    """Drop every group's outputs not collected yet (after a forward that raised, or a batch that did not call
    every member), so they do not keep a batch's tensors alive."""
    for group in model_groups(model):
        group.forget()


def ungroup_unshared(model: Any) -> int:
    """Undo every group whose members were called with different inputs (each call then computed the whole group:
    correct but slower than separate products); returns how many. Run it after a forward.
    The members keep their weights (views into the concatenated one) and get their plain ``forward`` back."""
    undone = 0
    for group in model_groups(model):
        if group.recomputed == 0:
            continue
        for linear in group.linears:
            linear.__dict__.pop(_ATTRIBUTE, None)
            linear.__dict__.pop("forward", None)
        group.forget()
        undone += 1
    if undone:
        logger.warning("%d groups of projections undone: the model feeds their members different inputs", undone)
    return undone


def group_of_module(linear: Any) -> ProjectionGroup | None:
    return getattr(linear, "__dict__", {}).get(_ATTRIBUTE)


def group_of(linear: Any) -> tuple[ProjectionGroup, int] | None:
    """The group ``linear`` belongs to and its index there, or ``None``."""
    group = group_of_module(linear)
    if group is None:
        return None
    return group, next(i for i, member in enumerate(group.linears) if member is linear)


def is_grouped(module: Any) -> bool:
    return _ATTRIBUTE in getattr(module, "__dict__", {})


def _groupable(linears: list[Any]) -> bool:
    if any(type(linear) is not torch.nn.Linear or is_grouped(linear) for linear in linears):
        return False
    if len({id(linear) for linear in linears}) != len(linears):  # one module under two names
        return False
    first = linears[0].weight
    return all(
        linear.in_features == linears[0].in_features
        and linear.weight.dtype == first.dtype
        and linear.weight.device == first.device
        and "forward" not in linear.__dict__  # a forward replaced by someone else (packing is done after grouping)
        for linear in linears
    )
