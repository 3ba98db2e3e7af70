"""Token lengths of a corpus with the base model's tokenizer: the distribution, and what ``--max-length`` cuts."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from worker.config import Settings

TokenCounter = Callable[[str], int]


def base_model_counter(settings: Settings) -> TokenCounter:
    """Count tokens with the configured base model's tokenizer (loads transformers: a few seconds)."""
    from transformers import AutoTokenizer

    from worker.engine.base_model import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(settings).directory)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def length_report(tokens: Sequence[int], max_length: int) -> dict[str, Any]:
    """p10 / median / p90 / max of the articles' tokens, and how many (and how many tokens) ``max_length`` cuts."""
    if not tokens:
        return {"articles": 0, "max_length": max_length, "longer": 0, "tokens_cut": 0}
    ordered = sorted(tokens)
    deciles = statistics.quantiles(ordered, n=10) if len(ordered) > 1 else [ordered[0]] * 9
    longer = [count for count in ordered if count > max_length]
    return {
        "articles": len(ordered),
        "total": sum(ordered),
        "p10": round(deciles[0]),
        "median": round(statistics.median(ordered)),
        "p90": round(deciles[-1]),
        "max": ordered[-1],
        "max_length": max_length,
        "longer": len(longer),
        "tokens_cut": sum(count - max_length for count in longer),
        "mean_within_max_length": round(statistics.fmean(min(count, max_length) for count in ordered), 1),
    }
