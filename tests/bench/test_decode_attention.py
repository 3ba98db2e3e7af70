"""bench/decode_attention.py: its baseline (the flash kernel, as the engine ran before) and the engine's batched
products compute the same attention, so the bench compares two ways of one thing."""

from __future__ import annotations

import sys

import pytest
from bench_helpers import load_bench

decode_attention = load_bench("decode_attention")


def test_the_two_formulations_agree_within_bf16_rounding(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--rows", "8", "--prompt-length", "24", "--generated", "3", "40", "--calls", "1"]
    monkeypatch.setattr(sys, "argv", ["decode_attention.py", *arguments])
    decode_attention.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["3", "40"]
    differences = [float(row.split("|")[-2]) for row in rows]
    assert all(difference < 0.05 for difference in differences)  # bf16 rounding; a wrong mask gives ~0.5 or more


def test_the_scores_taken_from_either_side_give_the_same_attention() -> None:
    """The scores as ``query @ keys^T`` (CPUs without AMX) and as ``keys @ query^T`` (AMX): the same products."""
    import argparse

    arguments = argparse.Namespace(
        rows=8, prompt_length=24, kv_heads=3, group=3, head_dim=64, generated=[3, 40], calls=1
    )
    for row in decode_attention.layer_figures(arguments):
        assert row["key_side_difference"] < 1e-2  # bf16 rounding at most
        assert row["products_key_side_ms"] > 0 and row["products_query_side_ms"] > 0
    engines = "products_key_side" if decode_attention.scores_from_key_side() else "products_query_side"
    assert engines == decode_attention.ENGINE_FORM  # the CPU's form, as the engine's layers take it
