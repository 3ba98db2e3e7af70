"""bench/sampler.py: the staged prefilter draws what the full sort draws on tied logits; the comparison counts it."""

from __future__ import annotations

import torch
from bench_helpers import load_bench

sampler_bench = load_bench("sampler")


def test_the_staged_prefilter_equals_the_full_sort_where_ties_are_many() -> None:
    generator = torch.Generator().manual_seed(5)
    steps = []
    for _ in range(3):
        logits = (torch.randn(16, 3000, generator=generator) * 3).round()  # integer logits: many ties
        steps.append((logits, torch.full((16,), 0.9), torch.rand(16, generator=generator)))
    report = sampler_bench.compare(steps, repeats=1)
    assert report["draws"] == 48 and sum(report["nucleus_sizes"].values()) == 48
    assert report["equal_to_full_sort"]["staged"] == 48
    assert report["equal_to_full_sort"]["staged, torch.topk"] == 48  # the blocked top-k changes no draw
    assert report["equal_to_full_sort"]["staged, logsumexp"] == 48  # nor does the softmax for exp(x - logsumexp)
    assert report["equal_to_full_sort"]["single"] < 48  # the baseline orders ties as top-k does: what it shows
    assert set(report["ms_per_step"]) == {"single", "staged, torch.topk", "staged, logsumexp", "staged"}
    assert report["blocked_speedup"] > 0 and report["softmax_speedup"] > 0
