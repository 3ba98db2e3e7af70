"""Unit tests of :mod:`worker.engine.sampling`: per-row repetition penalty, nucleus and the row sampler."""

from __future__ import annotations

import math

import pytest
import torch

from worker.engine.sampling import (
    RowSampler,
    RowSettings,
    apply_repetition_penalty,
    penalise_repetitions_,
    probabilities_at,
    sample_top_p,
    top_k,
    top_p_probabilities,
)

VOCAB = 50
EOS = 0
PROMPT = 6


def settings(**fields: float) -> RowSettings:
    values: dict[str, float] = {"temperature": 0.8, "top_p": 0.9, "repetition_penalty": 1.2}
    values.update(fields)
    return RowSettings(
        temperature=values["temperature"],
        top_p=values["top_p"],
        repetition_penalty=values["repetition_penalty"],
        max_new_tokens=int(fields.get("max_new_tokens", 20)),
        seed=int(fields.get("seed", 1)),
    )


def random_logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def input_ids(rows: int, length: int, seed: int = 0) -> torch.LongTensor:
    return torch.randint(1, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))


def chosen_tokens(forced: torch.Tensor) -> list[int]:
    """The single token each row of a forced logits tensor leaves possible."""
    finite = torch.isfinite(forced)
    assert finite.sum(dim=1).tolist() == [1] * forced.shape[0]
    assert (forced[finite] == 0).all()
    return finite.int().argmax(dim=1).tolist()


def run(sampler: RowSampler, ids: torch.Tensor, steps: int, logits_seed: int = 5) -> list[list[int]]:
    """Drive the sampler like ``generate`` does: append each row's choice, new logits every step."""
    picked: list[list[int]] = [[] for _ in range(ids.shape[0])]
    for step in range(steps):
        logits = random_logits(ids.shape[0], logits_seed + step)
        logits[:, EOS] = -1e4  # the model never ends on its own here: only a forced EOS ends a row
        tokens = chosen_tokens(sampler(ids, logits))
        for row, token in enumerate(tokens):
            picked[row].append(token)
        ids = torch.cat([ids, torch.tensor(tokens).unsqueeze(1)], dim=1)
    return picked


# ------------------------------------------------------------------------------------ repetition penalty


def test_repetition_penalty_per_row() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 3.0], [2.0, -2.0, 1.0, 3.0], [2.0, -2.0, 1.0, 3.0]])
    ids = torch.tensor([[0, 1, 0], [0, 1, 1], [2, 2, 2]])
    penalised = apply_repetition_penalty(logits, ids, torch.tensor([2.0, 1.0, 4.0]))
    assert penalised[0].tolist() == [1.0, -4.0, 1.0, 3.0]  # positive divided, negative multiplied
    assert penalised[1].tolist() == logits[1].tolist()  # penalty 1.0: unchanged
    assert penalised[2].tolist() == [2.0, -2.0, 0.25, 3.0]  # repeated ids penalised once
    assert logits[0].tolist() == [2.0, -2.0, 1.0, 3.0]  # input untouched


def test_repetition_penalty_lowers_probability_of_seen_tokens() -> None:
    logits = random_logits(1)
    ids = torch.tensor([[3, 7, 9]])
    before = torch.softmax(logits, dim=-1)
    after = torch.softmax(apply_repetition_penalty(logits, ids, torch.tensor([1.5])), dim=-1)
    for token in (3, 7, 9):
        assert after[0, token] < before[0, token]


def test_penalising_in_place_gives_the_out_of_place_formulas_values() -> None:
    logits = random_logits(3, 5)
    ids = input_ids(3, 40, 5)  # repeated ids among them
    penalty = torch.tensor([1.3, 1.0, 2.0])
    seen = torch.gather(logits, 1, ids)
    seen = torch.where(seen < 0, seen * penalty[:, None], seen / penalty[:, None])
    expected = logits.scatter(1, ids, seen)  # the formula as it was, into a new tensor
    own = logits.clone()
    assert penalise_repetitions_(own, ids, penalty) is own
    assert torch.equal(own, expected)
    assert torch.equal(apply_repetition_penalty(logits, ids, penalty), expected)
    assert not torch.equal(logits, expected)  # the input of the out-of-place one is untouched


# ------------------------------------------------------------------------------------------------ top-p


def test_top_p_keeps_the_nucleus_and_sums_to_one() -> None:
    probs = torch.tensor([0.5, 0.05, 0.3, 0.1, 0.05])
    kept = top_p_probabilities(probs.log(), 0.75)
    assert kept.sum().item() == pytest.approx(1.0)
    # 0.5 alone is below 0.75, 0.5 + 0.3 reaches it: those two form the nucleus.
    assert (kept > 0).tolist() == [True, False, True, False, False]
    assert kept[0].item() == pytest.approx(0.5 / 0.8)
    assert kept[2].item() == pytest.approx(0.3 / 0.8)


def test_top_p_always_keeps_the_most_likely_token() -> None:
    kept = top_p_probabilities(torch.tensor([0.0, 4.0, 1.0]), 0.01)
    assert kept.tolist() == [0.0, 1.0, 0.0]


def test_top_p_of_one_is_plain_softmax() -> None:
    logits = random_logits(1)[0]
    assert torch.allclose(top_p_probabilities(logits, 1.0), torch.softmax(logits, dim=-1))


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_nucleus_is_minimal(top_p: float) -> None:
    logits = random_logits(1, seed=3)[0]
    kept = top_p_probabilities(logits, top_p)
    full = torch.softmax(logits, dim=-1)
    assert kept.sum().item() == pytest.approx(1.0, abs=1e-5)
    mass = full[kept > 0].sum().item()
    assert mass >= top_p - 1e-6
    smallest_kept = full[kept > 0].min().item()
    assert mass - smallest_kept < top_p  # without its least likely token the nucleus is too small
    assert full[kept == 0].max().item() <= smallest_kept  # nothing left out is likelier than what is kept


def test_top_p_with_masked_tokens() -> None:
    logits = torch.tensor([1.0, float("-inf"), 2.0, float("-inf")])
    kept = top_p_probabilities(logits, 0.9)
    assert not torch.isnan(kept).any()
    assert kept[1] == 0 and kept[3] == 0
    assert kept.sum().item() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------- RowSampler


def test_sampler_leaves_exactly_one_token_per_row() -> None:
    rows = [settings(seed=1), settings(seed=2, temperature=0.0), settings(seed=3, top_p=1.0)]
    sampler = RowSampler(rows, PROMPT, EOS)
    forced = sampler(input_ids(3, PROMPT), random_logits(3))
    assert forced.shape == (3, VOCAB)
    assert forced.dtype == torch.float32
    chosen_tokens(forced)
    assert math.isinf(forced.min().item())


def test_sampler_keeps_the_input_dtype() -> None:
    sampler = RowSampler([settings()], PROMPT, EOS)
    forced = sampler(input_ids(1, PROMPT), random_logits(1).to(torch.bfloat16))
    assert forced.dtype == torch.bfloat16
    chosen_tokens(forced.float())


def test_sampler_is_deterministic_per_seed() -> None:
    rows = [settings(seed=7), settings(seed=8)]
    first = run(RowSampler(rows, PROMPT, EOS), input_ids(2, PROMPT), 15)
    second = run(RowSampler(rows, PROMPT, EOS), input_ids(2, PROMPT), 15)
    assert first == second
    other = run(RowSampler([settings(seed=9), settings(seed=8)], PROMPT, EOS), input_ids(2, PROMPT), 15)
    assert other[0] != first[0]
    assert other[1] == first[1]


def test_a_row_does_not_depend_on_the_other_rows() -> None:
    target = settings(seed=21, temperature=1.0, top_p=0.95)
    ids = input_ids(1, PROMPT, seed=4)
    alone = run(RowSampler([target], PROMPT, EOS), ids, 12)
    # The same row (same prompt ids and logits) among different neighbours, first and last.
    neighbours = [settings(seed=1, temperature=1.5), settings(seed=2, temperature=0.0, repetition_penalty=1.0)]
    ids_mixed = torch.cat([ids, input_ids(2, PROMPT, seed=5)])

    def mixed_run(rows: list[RowSettings], order: list[int]) -> list[list[int]]:
        picked: list[list[int]] = [[] for _ in rows]
        batch_ids = ids_mixed[order]
        sampler = RowSampler(rows, PROMPT, EOS)
        for step in range(12):
            logits = random_logits(3, 100 + step)
            target_logits = random_logits(1, 5 + step)[0]
            logits[order.index(0)] = target_logits
            logits[:, EOS] = -1e4  # as in run()
            tokens = chosen_tokens(sampler(batch_ids, logits))
            for row, token in enumerate(tokens):
                picked[row].append(token)
            batch_ids = torch.cat([batch_ids, torch.tensor(tokens).unsqueeze(1)], dim=1)
        return picked

    first = mixed_run([target, *neighbours], [0, 1, 2])
    last = mixed_run([*neighbours, target], [1, 2, 0])
    assert first[0] == alone[0]
    assert last[2] == alone[0]


def test_sampling_leaves_the_callers_logits_alone() -> None:
    # When every row samples, the sampler scales its own copy of the logits in place: never the caller's, even
    # where no repetition penalty applies.
    scores = random_logits(2, 7)
    before = scores.clone()
    rows = [settings(seed=1, temperature=0.7, repetition_penalty=1.0), settings(seed=2, repetition_penalty=1.0)]
    RowSampler(rows, PROMPT, EOS).sample(input_ids(2, PROMPT), scores)
    assert torch.equal(scores, before)


def test_a_penalised_step_with_a_greedy_row_leaves_the_callers_fp32_logits_alone() -> None:
    scores = random_logits(3, 8)
    before = scores.clone()
    rows = [settings(seed=1, repetition_penalty=1.5), settings(seed=2, temperature=0.0), settings(seed=3)]
    RowSampler(rows, PROMPT, EOS).sample(input_ids(3, PROMPT + 4), scores)
    assert torch.equal(scores, before)


def test_sampler_forces_eos_at_the_last_token_of_the_budget() -> None:
    rows = [settings(max_new_tokens=3, seed=1), settings(max_new_tokens=6, seed=2)]
    picked = run(RowSampler(rows, PROMPT, EOS), input_ids(2, PROMPT), 6)
    assert picked[0][2] == EOS  # step 2 = max_new_tokens - 1
    assert EOS not in picked[0][:2]
    assert picked[1][5] == EOS
    assert EOS not in picked[1][:5]


def test_sampler_step_counts_from_the_prompt_length() -> None:
    sampler = RowSampler([settings(max_new_tokens=16, temperature=0.0)], prompt_length=4, eos_token_id=EOS)
    logits = random_logits(1)
    logits[0, EOS] = -100.0
    assert chosen_tokens(sampler(input_ids(1, 4 + 14), logits)) != [EOS]  # step 14: free choice
    assert chosen_tokens(sampler(input_ids(1, 4 + 15), logits)) == [EOS]  # step 15 = max_new_tokens - 1


def test_temperature_zero_is_greedy() -> None:
    logits = random_logits(2, seed=8)
    ids = input_ids(2, PROMPT)
    greedy = RowSampler([settings(temperature=0.0, repetition_penalty=1.0, seed=s) for s in (1, 2)], PROMPT, EOS)
    assert chosen_tokens(greedy(ids, logits)) == logits.argmax(dim=1).tolist()


def test_greedy_applies_the_repetition_penalty_first() -> None:
    logits = torch.full((1, VOCAB), -5.0)
    logits[0, 10] = 4.0
    logits[0, 20] = 3.0
    ids = torch.tensor([[10, 10, 11]])
    plain = RowSampler([settings(temperature=0.0, repetition_penalty=1.0)], 3, EOS)
    penalised = RowSampler([settings(temperature=0.0, repetition_penalty=2.0)], 3, EOS)
    assert chosen_tokens(plain(ids, logits)) == [10]
    assert chosen_tokens(penalised(ids, logits)) == [20]  # 4 / 2 < 3


def test_sampling_follows_the_distribution() -> None:
    logits = torch.tensor([[0.0, 0.0, 2.0, -50.0]])
    sampler = RowSampler([settings(temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=10_000)], 1, 3)
    counts = [0, 0, 0, 0]
    ids = torch.tensor([[3]])
    for _ in range(2000):
        counts[chosen_tokens(sampler(ids, logits))[0]] += 1
    expected = torch.softmax(logits[0], dim=-1) * 2000
    assert counts[3] == 0
    for observed, wanted in zip(counts[:3], expected[:3].tolist(), strict=True):
        assert abs(observed - wanted) < 0.15 * wanted + 20


@pytest.mark.parametrize(
    ("width", "k"), [(49_152, 64), (49_152, 256), (49_152, 1024), (5000, 64), (5000, 16), (4999, 64), (300, 64)]
)
def test_top_k_takes_the_values_torch_topk_takes(width: int, k: int) -> None:
    """The blocked top-k (two levels at 49,152, one at 5,000; torch.topk itself on a width not divisible into blocks or
    too narrow) takes the k largest values of every row, each token once, on logits with many ties."""
    generator = torch.Generator().manual_seed(width + k)
    logits = (torch.randn(6, width, generator=generator) * 4).round()  # integer values: ties everywhere
    logits[0] = 0.0  # a row of equal values
    logits[1, -k:] = 100.0  # the largest values at the end of the row: in the last blocks
    logits[2] = float("-inf")  # a row nearly all -inf: fewer than k finite values
    logits[2, 3 : 3 + k // 2] = 1.0
    values, ids = top_k(logits, k)
    expected = torch.topk(logits, k, dim=-1).values
    assert torch.equal(values.sort(dim=-1, descending=True).values, expected)
    assert torch.equal(logits.gather(1, ids), values)
    assert all(len(set(row)) == k for row in ids.tolist())


def test_probabilities_at_chosen_rows_and_tokens_are_the_softmaxs() -> None:
    """What each stage reads: the probabilities of its tokens in its rows, equal to exp(logit - logsumexp) to fp32
    rounding, on a real vocabulary's width and with -inf logits (probability 0)."""
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 49_152, generator=generator) * 4
    logits[3, :100] = float("-inf")
    rows = torch.tensor([6, 3, 0])
    tokens = torch.randint(0, 49_152, (3, 64), generator=generator)
    tokens[1, :5] = torch.arange(5)  # -inf logits of row 3
    got = probabilities_at(logits)(rows, tokens)
    expected = torch.exp(logits[rows].gather(1, tokens) - torch.logsumexp(logits[rows], dim=-1, keepdim=True))
    assert got.shape == (3, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0.0)
    assert got[1, :5].eq(0).all()


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95])
def test_prefiltered_sampling_equals_the_full_sort(top_p: float) -> None:
    """The top-k prefilter is exact: same token as inverting the fully sorted vocabulary, same uniforms."""
    vocab = 5000
    logits = torch.randn(64, vocab, generator=torch.Generator().manual_seed(11)) * 4
    uniforms = torch.rand(64, generator=torch.Generator().manual_seed(12))
    top = torch.full((64,), top_p)
    prefiltered = sample_top_p(logits, top, uniforms, prefilter=64)
    full = sample_top_p(logits, top, uniforms, prefilter=vocab)
    assert prefiltered.tolist() == full.tolist()
    for row in range(64):  # every drawn token lies in the row's nucleus
        assert top_p_probabilities(logits[row], top_p)[prefiltered[row]] > 0


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95])
def test_blocked_stages_on_a_real_vocabulary_width_draw_what_the_full_sort_draws(top_p: float) -> None:
    """SmolLM2's 49,152 tokens, bf16-like tied logits (every stage's top-k through the blocks), 64 rows."""
    vocab = 49_152
    generator = torch.Generator().manual_seed(31)
    logits = (torch.randn(64, vocab, generator=generator) * 3).to(torch.bfloat16).float() / 0.7
    uniforms = torch.rand(64, generator=generator)
    top = torch.full((64,), top_p)
    full = sample_top_p(logits, top, uniforms, prefilter=vocab)
    assert sample_top_p(logits, top, uniforms, prefilter=64).tolist() == full.tolist()


@pytest.mark.parametrize("prefilter", [4, 16, 64])
def test_tied_logits_draw_the_same_token_whatever_the_prefilter(prefilter: int) -> None:
    """bf16 logits tie often; equal tokens are ordered by id, so every stage size draws what the full sort draws
    (top-k and sort order ties differently: before, 9-11 % of real bf16 draws differed, bench/sampler.py)."""
    vocab = 2000
    generator = torch.Generator().manual_seed(21)
    logits = (torch.randn(64, vocab, generator=generator) * 3).round()  # integer logits: many ties
    uniforms = torch.rand(64, generator=generator)
    top = torch.full((64,), 0.9)
    full = sample_top_p(logits, top, uniforms, prefilter=vocab)
    assert sample_top_p(logits, top, uniforms, prefilter=prefilter).tolist() == full.tolist()


def test_a_nucleus_ending_exactly_before_a_stages_last_ties_draws_what_the_full_sort_draws() -> None:
    """top_p equal to the mass above the prefilter's last value: the first tied token is then inside the nucleus,
    and top-k may have taken another tied token than the full sort's lowest id; such a row must go on."""
    rows, vocab, prefilter = 64, 500, 16
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(rows, vocab, generator=generator) * 2).round().clamp(min=0)  # many ties
    values, ids = torch.topk(logits, prefilter, dim=-1)
    probs = probabilities_at(logits)(torch.arange(rows), ids)  # the sampler's own probabilities, to the bit
    top = probs.masked_fill(values == values[:, -1:], 0.0).sum(dim=-1)  # the mass above the last ties, exactly
    uniforms = torch.full((rows,), 0.9999)  # lands on the nucleus's last token
    full = sample_top_p(logits, top, uniforms, prefilter=vocab)
    assert sample_top_p(logits, top, uniforms, prefilter=prefilter).tolist() == full.tolist()


def test_flat_logits_fall_back_to_the_full_vocabulary() -> None:
    logits = torch.zeros(2, 1000)  # the nucleus (90 % of a flat distribution) is far wider than the prefilter
    chosen = sample_top_p(logits, torch.tensor([0.9, 0.9]), torch.tensor([0.0, 0.999]), prefilter=16)
    assert chosen.tolist()[0] != chosen.tolist()[1]
    assert all(0 <= token < 1000 for token in chosen.tolist())


def test_sampling_a_subset_of_rows_equals_sampling_them_in_the_full_batch() -> None:
    """An engine that drops finished rows passes the indices of the rows left; their draws do not change."""
    rows = [settings(seed=s, temperature=0.9, top_p=0.95) for s in (1, 2, 3, 4)]
    full = RowSampler(rows, PROMPT, EOS)
    part = RowSampler(rows, PROMPT, EOS)
    ids, logits = input_ids(4, PROMPT), random_logits(4)
    first = full.sample(ids, logits)
    assert part.sample(ids, logits).tolist() == first.tolist()
    keep = torch.tensor([1, 3])
    second_full = full.sample(ids, logits)
    second_part = part.sample(ids[keep], logits[keep], keep)
    assert second_part.tolist() == second_full[keep].tolist()
