"""bench/exact_rows.py: the modes it reads and how it counts equal texts."""

from __future__ import annotations

import argparse

import pytest
from bench_helpers import load_bench

exact_rows = load_bench("exact_rows")


def test_a_mode_names_the_engine_mode_and_its_rows() -> None:
    assert exact_rows.parse_mode("exact:32") == ("exact", 32)
    assert exact_rows.parse_mode("fast:128") == ("fast", 128)
    for bad in ("exact", "fast:0", "fast:x", "bf16:32"):
        with pytest.raises(argparse.ArgumentTypeError, match="exact:<rows> or fast:<rows>"):
            exact_rows.parse_mode(bad)


def test_equal_texts_are_counted_request_by_request() -> None:
    texts = {"exact:32": ["a", "b", "c"], "fast:128": ["a", "x", "c"], "fast:32": ["c", "b", "a"]}
    assert exact_rows.same_texts(texts, "exact:32") == {"exact:32": 3, "fast:128": 2, "fast:32": 1}
