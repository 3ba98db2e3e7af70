"""Linear layers as oneDNN matmuls with pre-packed weights, for a CPU model: faster, and in fp32 batch-invariant.

Two reasons, measured on an AVX2 machine in fp32 (docs/benchmarks.md, ``bench/head_matmul.py``); in bf16 on an
AMX machine the speed reason holds too (1.3-1.8x on the model's shapes at 32 rows), the bits are bf16's anyway:

* **Speed.** PyTorch's default fp32 ``linear`` (MKL) runs the output head (576 x 49,152 for SmolLM2-135M, 21 %
  of the weights, the largest matmul of a decode step) at a fraction of the machine's speed for a batch of
  8-64 rows; oneDNN with the weight reordered once into its blocked layout runs it 1.6-3x faster (2.75x at 32
  rows). This is the reorder ``torch.compile``'s CPU backend does for frozen weights
  (``torch.ops.mkldnn._reorder_linear_weight`` and ``_linear_pointwise``), without compiling anything.
* **Batch invariance.** The engine promises in fp32 that a row's text does not depend on the other rows of its
  batch. MKL's fp32 kernels keep a row's bits whatever the batch size on some CPUs but not on others (on an AMD
  EPYC with AVX2, 1-3 rows round differently from the same rows among 32). The packed kernels, packed for a
  batch of ``batch_hint`` (at least 32) rows, give a row the same bits alone or among any number of rows
  (tests/engine/test_packed_linear.py checks it on the machine it runs on).

Each ``nn.Linear`` keeps its class, weight and bias (PEFT wraps and inspects them; the output head's weight is
tied to the input embeddings); only its ``forward`` is replaced, on the instance, by the packed product. The
packed copy costs the weights' size once more. A weight that is replaced or changed in place is packed again
before its next use. A layer whose packed product disagrees with the plain one on a probe stays plain.

:func:`contiguous_head_input` gives the output head a freshly laid-out input (a strided view makes torch's ``linear``
broadcast the head's weight per row).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Relative tolerance of the probe that checks a packed product against the plain one, per weight dtype (rounding only).
_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
# Packing for fewer rows selects kernels whose bits depend on the number of rows; 32 does not (measured).
MIN_BATCH_HINT = 32
_ATTRIBUTE = "_copydesk_packed"


class PackedLinear:
    """The packed weight of one ``nn.Linear`` and the forward that uses it."""

    def __init__(self, linear: torch.nn.Linear, batch_hint: int) -> None:
        self.linear = linear
        self.batch_hint = max(batch_hint, MIN_BATCH_HINT)
        self.pack()

    def pack(self) -> None:
        weight = self.linear.weight
        self.source, self.version = weight, weight._version
        self.weight = _reorder(weight.detach(), self.batch_hint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.linear.weight
        if weight is not self.source or weight._version != self.version:
            self.pack()
        bias = self.linear.bias
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, bias, "none", [], "")


class Product:
    """``x @ weight.T`` (and ``x @ weight.T + other``) for a weight that is not an ``nn.Linear``'s.

    Packed for oneDNN when ``pack`` is on, the weight is a CPU fp32/bf16 tensor and the packed product agrees with the
    plain one on a probe; otherwise the plain ``linear``. Used for the concatenated LoRA matrices (cached per adapter
    set) and the grouped projections (:mod:`worker.engine.grouped_projections`).
    """

    def __init__(self, weight: torch.Tensor, batch_hint: int = MIN_BATCH_HINT, *, pack: bool = True) -> None:
        self.weight = weight
        self.packed: torch.Tensor | None = None
        if pack and _packable_weight(weight):
            try:
                packed = _reorder(weight, max(batch_hint, MIN_BATCH_HINT))
                probe = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0)).to(weight.dtype)
                if _close(torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], ""), probe @ weight.T):
                    self.packed = packed
            except (RuntimeError, AttributeError) as exc:  # oneDNN ops missing from this torch build
                logger.debug("product left unpacked: %s", exc)

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
        return torch.nn.functional.linear(x, self.weight, bias)

    def add_to(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``other + x @ weight.T`` in one call when packed (oneDNN's fused sum post-op)."""
        if self.packed is not None and other.dtype == x.dtype and other.is_contiguous():
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, self.packed, None, "add")
        return other + torch.nn.functional.linear(x, self.weight).to(other.dtype)


def pack_linears(model: Any, batch_hint: int) -> int:
    """Pack every plain fp32 or bf16 CPU ``nn.Linear`` of ``model`` not packed yet; returns how many were packed now.

    Call it again after modules were added (a newly loaded adapter's LoRA matrices): packed layers are skipped.
    """
    packed = 0
    for module in model.modules():
        if not _packable(module):  # a packed layer's forward is replaced already
            continue
        try:
            layer = PackedLinear(module, batch_hint)
            agrees = _agrees(module, layer)
        except (RuntimeError, AttributeError) as exc:  # oneDNN ops missing from this torch build
            logger.info("linear layers left unpacked: %s", exc)
            return packed
        if not agrees:
            logger.warning(
                "a %s layer left unpacked: its packed product disagreed with the plain one", tuple(module.weight.shape)
            )
            continue
        module.__dict__[_ATTRIBUTE] = layer
        module.forward = layer.forward
        packed += 1
    if packed:
        logger.debug("packed %d linear layers for oneDNN (batch hint %d)", packed, max(batch_hint, MIN_BATCH_HINT))
    return packed


def is_packed(module: torch.nn.Module) -> bool:
    return _ATTRIBUTE in module.__dict__


def _reorder(weight: torch.Tensor, batch_hint: int) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint)


def _packable(module: Any) -> bool:
    return (
        type(module) is torch.nn.Linear
        and "forward" not in module.__dict__  # replaced already: packed, or grouped (engine.grouped_projections)
        and _packable_weight(module.weight)
    )


def _packable_weight(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype in _TOLERANCE and torch.backends.mkldnn.is_available()


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    scale = float(expected.abs().max()) or 1.0
    error = float((got.float() - expected.float()).abs().max())
    return got.shape == expected.shape and error <= _TOLERANCE[expected.dtype] * scale


def _agrees(plain: torch.nn.Linear, packed: PackedLinear) -> bool:
    weight = plain.weight
    probe = torch.randn(3, plain.in_features, generator=torch.Generator().manual_seed(0)).to(weight.dtype)
    with torch.inference_mode():
        expected = torch.nn.functional.linear(probe, plain.weight, plain.bias)
        got = packed.forward(probe)
    return _close(got, expected)


def contiguous_head_input(model: Any) -> None:
    """Give the output head a freshly laid-out input.

    With ``logits_to_keep=1`` transformers slices the last position out of the prefill's hidden states, a
    ``[rows, 1, hidden]`` view with the strides of the whole sequence; torch's ``linear`` then broadcasts the
    head's weight to one copy per row and runs a ``bmm`` in bf16: for SmolLM2-135M at 32 rows a 1.8 GB copy,
    2.4 s against 6 ms for the same product on a fresh tensor (83 ms against 4 ms at one row; 2 AMX cores,
    ``bench/head_matmul.py``). At one row the view even counts as contiguous (``.contiguous()`` keeps it), so the
    hook always copies: a few kilobytes, no bits changed.
    """
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_fresh_first_argument)


def _fresh_first_argument(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].clone(memory_format=torch.contiguous_format), *args[1:])
