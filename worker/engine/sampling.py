"""Per-row sampling for mixed batches: each sequence keeps its own style's settings and its own seed.

``transformers``' ``generate`` applies one temperature/top-p to the whole batch and draws from one global
random generator, so a row's text would depend on what else shared its batch. :class:`RowSampler` is a
logits processor that, for every row, applies that row's repetition penalty, temperature and top-p, draws
the next token from that row's own ``torch.Generator``, and returns logits that leave ``generate`` no other
choice. A row's text therefore depends only on its prompt, settings and seed (exactly so with the engine's exact
rows), which makes every article reproducible from its provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """A ``LogitsProcessor`` that samples each row with its own settings and generator.

    Sampling is vectorised over the batch: per row it applies the repetition penalty and temperature,
    takes the ``prefilter`` likeliest tokens in sorted order (a top-k that is exact for top-p: a row whose
    nucleus is not inside them takes 4 times as many, up to three stages, then, as a row whose ``top_p`` is 1,
    the full sorted vocabulary; :func:`sample_top_p`), and inverts the cumulative nucleus distribution at one
    uniform number drawn from the row's own generator.
    Every step draws exactly one number per row, so a row's tokens depend only on its logits, settings and
    seed, never on its neighbours or on whether it is greedy or sampled.
    """

    def __init__(
        self, rows: Sequence[RowSettings], prompt_length: int, eos_token_id: int, *, prefilter: int = 64
    ) -> None:
        self.rows = list(rows)
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self.prefilter = prefilter
        self.temperature = torch.tensor([r.temperature for r in rows], dtype=torch.float32)
        self.top_p = torch.tensor([r.top_p for r in rows], dtype=torch.float32)
        self.penalty = torch.tensor([r.repetition_penalty for r in rows], dtype=torch.float32)
        self.budget = torch.tensor([r.max_new_tokens for r in rows], dtype=torch.long)
        self.generators = [torch.Generator().manual_seed(r.seed) for r in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = self.sample(input_ids, scores)
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(chosen.shape[0], device=scores.device), chosen.to(scores.device)] = 0.0
        return forced

    def sample(self, input_ids: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The next token of each row (a ``LongTensor`` on the device of ``scores``).

        ``rows`` maps the batch rows to this sampler's rows (by default the identity): an engine that drops
        finished rows from its batch passes the indices of the rows still in it. ``input_ids`` holds each
        row's prompt (padded to ``prompt_length``) and the tokens generated so far.
        """
        device = scores.device
        index = torch.arange(len(self.rows)) if rows is None else rows.cpu()
        # One uniform per row and step, whatever the row does with it: the row's stream stays its own.
        uniforms = torch.stack([torch.rand((), generator=self.generators[int(i)]) for i in index]).to(device)
        logits = scores.to(torch.float32, copy=True)  # a fresh tensor: penalised and scaled in place below
        penalise_repetitions_(logits, input_ids, self.penalty[index].to(device))
        temperature = self.temperature[index].to(device)
        greedy = temperature <= 0
        # Full-vocabulary passes only where a row needs them: argmax for greedy rows; when every row samples, the
        # (fresh) logits are scaled in place, not copied.
        chosen = torch.argmax(logits, dim=-1) if bool(greedy.any()) else logits.new_empty(len(index), dtype=torch.long)
        sampled = (~greedy).nonzero().flatten()
        if sampled.numel():
            every_row = sampled.numel() == len(index)
            scaled = (
                logits.div_(temperature.unsqueeze(1)) if every_row else logits[sampled] / temperature[sampled, None]
            )
            top_p = self.top_p[index].to(device)[sampled]
            chosen[sampled] = sample_top_p(scaled, top_p, uniforms[sampled], self.prefilter)
        step = input_ids.shape[1] - self.prompt_length
        chosen[(step >= self.budget[index] - 1).to(device)] = self.eos_token_id  # budget spent: end the row
        return chosen


# Each prefilter stage takes this many times more of the likeliest tokens than the last, for the rows whose nucleus
# the last did not hold; after PREFILTER_STAGES (64, 256, 1024 tokens by default; 99.9 % of a real run's nuclei fit,
# bench/sampler.py) the rows left are sorted whole, so a flat distribution pays a few top-k's, not many.
PREFILTER_GROWTH = 4
PREFILTER_STAGES = 3


def sample_top_p(logits: torch.Tensor, top_p: torch.Tensor, uniforms: torch.Tensor, prefilter: int) -> torch.Tensor:
    """Draw one token per row from its nucleus distribution by inverting the sorted cumulative mass.

    Tokens are ordered by probability, equal ones by token id (bf16 logits tie often), so a draw does not depend
    on how the tokens were found. Each row is handled on its ``prefilter`` likeliest tokens when its nucleus ends
    before the tokens tied with the last one taken (:func:`_held`; the result is then what the full sort gives),
    else on :data:`PREFILTER_GROWTH` times as many, up to :data:`PREFILTER_STAGES` stages; a row whose nucleus no
    stage holds (or whose ``top_p`` is 1) is handled on its fully sorted vocabulary. Each stage is one top-k over the
    rows still left: most rows' nuclei are small, so the first stage can be.
    """
    chosen = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    probabilities = probabilities_at(logits)
    left = (top_p < 1.0).nonzero().flatten()
    rest = (top_p >= 1.0).nonzero().flatten()
    count, last = prefilter, prefilter * PREFILTER_GROWTH ** (PREFILTER_STAGES - 1)
    for _ in range(PREFILTER_STAGES):
        if not left.numel() or count >= logits.shape[1]:
            break
        rows = logits if left.numel() == logits.shape[0] else logits[left]  # every row: no copy
        values, order = _ties_by_id(*top_k(rows, count))
        probs = probabilities(left, order)
        held = _held(probs, values, top_p[left])
        inside = held.nonzero().flatten()
        if inside.numel():
            chosen[left[inside]] = _invert(probs[inside], order[inside], top_p[left[inside]], uniforms[left[inside]])
        # No token left out is likelier than the last one taken: a row whose nucleus even ``last`` tokens cannot
        # reach is sorted whole now, not after more stages (a flat distribution pays one small top-k, not three).
        hopeless = ~held & (probs.sum(dim=-1) + (last - count) * probs[:, -1] < top_p[left])
        rest = torch.cat([rest, left[hopeless]])
        left = left[~held & ~hopeless]
        count *= PREFILTER_GROWTH
    rest = torch.cat([rest, left])
    if rest.numel():
        values, order = torch.sort(logits[rest], dim=-1, descending=True, stable=True)  # ties keep id order
        probs = probabilities(rest, order)
        chosen[rest] = _invert(probs, order, top_p[rest], uniforms[rest])
    return chosen


def probabilities_at(logits: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``at(rows, tokens)``: the probabilities of ``tokens`` (token ids, one row of them per entry of ``rows``) in
    those rows of ``logits``, from one fused softmax over the whole batch.

    Not ``exp(logit - logsumexp)`` (the sampler before session 20): torch's CPU logsumexp makes four passes over the
    logits and a temporary of their size, 2-3x the softmax's time at 128 rows of 49,152 (bench/sampler.py,
    docs/benchmarks.md); the two agree to fp32 rounding."""
    probabilities = torch.softmax(logits, dim=-1)
    return lambda rows, tokens: probabilities[rows.unsqueeze(1), tokens]


# How far past ``top_p`` the mass before a stage's last ties must be for the stage to hold a nucleus: cumulative sums
# of different lengths may round differently (on a GPU's parallel scan); rows this close go on to the next stage.
_HELD_MARGIN = 1e-6


def _held(probs: torch.Tensor, values: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Whether each row's nucleus lies within the stage's tokens (``probs``, ``values``: descending) whatever the
    tokens tied with the last one taken are: every one of those must be outside the nucleus by :func:`_invert`'s own
    test (the mass before it past ``top_p``), since an equal token with a lower id may have been left out."""
    before = torch.cumsum(probs, dim=-1) - probs
    tied = values == values[:, -1:]
    return ((before > top_p.unsqueeze(1) + _HELD_MARGIN) | ~tied).all(dim=-1)


def _ties_by_id(values: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` (in any order, with their token ids ``order``) in descending order, equal values in ascending id
    order."""
    order, by_id = torch.sort(order, dim=-1)
    values, by_value = torch.sort(values.gather(-1, by_id), dim=-1, descending=True, stable=True)
    return values, order.gather(-1, by_value)


def _invert(
    sorted_probs: torch.Tensor, order: torch.Tensor, top_p: torch.Tensor, uniforms: torch.Tensor
) -> torch.Tensor:
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p.unsqueeze(1)
    outside &= (top_p < 1.0).unsqueeze(1)
    kept = torch.cumsum(sorted_probs.masked_fill(outside, 0.0), dim=-1)
    target = (uniforms * kept[:, -1]).unsqueeze(1)
    last = (~outside).sum(dim=-1, keepdim=True) - 1  # rounding must never pick a token outside the nucleus
    position = torch.minimum(torch.searchsorted(kept, target, right=True), last)
    return order.gather(1, position).squeeze(1)


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.LongTensor, penalty: torch.Tensor) -> torch.Tensor:
    """CTRL-style repetition penalty with one penalty per row (1.0 leaves a row unchanged), into a new tensor."""
    return penalise_repetitions_(logits.clone(), input_ids, penalty)


def penalise_repetitions_(logits: torch.Tensor, input_ids: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """:func:`apply_repetition_penalty` in place (the same values: every seen logit is read before any is written)."""
    seen = torch.gather(logits, 1, input_ids)
    per_row = penalty.unsqueeze(1)
    seen = torch.where(seen < 0, seen * per_row, seen / per_row)
    return logits.scatter_(1, input_ids, seen)


# Blocks of this many tokens (a row's ``j``-th block: tokens ``j``, ``j + n``, ..., ``n`` = width / BLOCK, so that the
# blocks' maxima are one vectorised pass) for :func:`top_k`; rows narrower than TOP_K_BLOCK * 4 * k, or whose width
# is not a multiple of TOP_K_BLOCK (real vocabularies are: 49,152, 151,936, 128,256, 262,144), take torch.topk.
TOP_K_BLOCK = 8


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest values of each row of ``x`` and their indices, in no particular order: ``torch.topk``'s
    values, its indices up to which of equal values are taken (:func:`_ties_by_id` orders both).

    torch's CPU top-k costs ~1 µs per 1,000 logits and row, several times a pass over them. Here each row is cut into
    blocks of :data:`TOP_K_BLOCK` tokens: the ``k`` largest values lie in the ``k`` blocks with the largest maxima
    (where maxima tie, any ``k`` of them hold ``k`` values as large), so the top-k runs over those blocks' tokens
    only, after one pass for the blocks' maxima, whose own top ``k`` is found the same way (64 of 49,152 for 128
    rows: 4.8 against 1.7 ms timed alone; the sampler's step on real logits 1.39x faster, ``bench/sampler.py``; both
    in docs/benchmarks.md)."""
    rows, width = x.shape
    blocks = width // TOP_K_BLOCK
    if width % TOP_K_BLOCK or blocks < 4 * k:
        return torch.topk(x, k, dim=-1, sorted=False)
    maxima = x.reshape(rows, TOP_K_BLOCK, blocks).amax(dim=1)
    _, best = top_k(maxima, k)
    candidates = (best.unsqueeze(-1) + torch.arange(0, width, blocks, device=x.device)).flatten(1)
    values, where = torch.topk(x.gather(1, candidates), k, dim=-1, sorted=False)
    return values, candidates.gather(1, where)


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
