"""Per-row sampling for mixed batches: each sequence keeps its own style's settings and its own seed.

``transformers``' ``generate`` applies one temperature/top-p to the whole batch and draws from one global
random generator, so a row's text would depend on what else shared its batch. :class:`RowSampler` is a
logits processor that, for every row, applies that row's repetition penalty, temperature and top-p, draws
the next token from that row's own ``torch.Generator``, and returns logits that leave ``generate`` no other
choice. A row's text therefore depends only on its prompt, settings and seed (exactly so in fp32), which
makes every article reproducible from its provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowSettings:
    """Sampling settings of one sequence. ``temperature == 0`` means greedy."""

    temperature: float
    top_p: float
    repetition_penalty: float
    max_new_tokens: int
    seed: int


class RowSampler:
    """A ``LogitsProcessor`` that samples each row with its own settings and generator."""

    def __init__(self, rows: Sequence[RowSettings], prompt_length: int, eos_token_id: int) -> None:
        self.rows = list(rows)
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self.temperature = torch.tensor([r.temperature for r in rows], dtype=torch.float32)
        self.top_p = torch.tensor([r.top_p for r in rows], dtype=torch.float32)
        self.penalty = torch.tensor([r.repetition_penalty for r in rows], dtype=torch.float32)
        self.generators = [torch.Generator().manual_seed(r.seed) for r in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = apply_repetition_penalty(scores.float(), input_ids, self.penalty.to(scores.device))
        greedy = self.temperature <= 0
        temperature = torch.where(greedy, torch.ones_like(self.temperature), self.temperature).to(scores.device)
        probs = batched_top_p_probabilities(logits / temperature.unsqueeze(1), self.top_p.to(scores.device)).cpu()
        step = input_ids.shape[1] - self.prompt_length
        chosen = [self._choose(row, logits[row], probs[row], step) for row in range(logits.shape[0])]
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(len(chosen)), torch.tensor(chosen, device=scores.device)] = 0.0
        return forced

    def _choose(self, row: int, logits: torch.Tensor, probs: torch.Tensor, step: int) -> int:
        settings = self.rows[row]
        if step >= settings.max_new_tokens - 1:
            return self.eos_token_id  # this row's budget is spent: end it here
        if settings.temperature <= 0:
            return int(torch.argmax(logits))
        return int(torch.multinomial(probs, 1, generator=self.generators[row]))


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.LongTensor, penalty: torch.Tensor) -> torch.Tensor:
    """CTRL-style repetition penalty with one penalty per row (1.0 leaves a row unchanged)."""
    seen = torch.gather(logits, 1, input_ids)
    per_row = penalty.unsqueeze(1)
    seen = torch.where(seen < 0, seen * per_row, seen / per_row)
    return logits.scatter(1, input_ids, seen)


def batched_top_p_probabilities(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Row-wise nucleus probabilities: each row keeps the smallest set of tokens reaching its own top_p.

    Every operation is row-independent, so a row's result does not depend on the other rows.
    """
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p.unsqueeze(1)
    outside &= (top_p < 1.0).unsqueeze(1)
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    kept = torch.zeros_like(probs).scatter(1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def top_p_probabilities(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Softmax over the smallest set of tokens whose probability mass reaches ``top_p`` (nucleus)."""
    probs = torch.softmax(logits, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    kept = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return kept / kept.sum()
