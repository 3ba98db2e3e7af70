"""Behaviour pinned down: fixed briefs and seeds give the same fp32 articles, bit for bit.

The expected texts in ``tests/data/golden_articles.json`` were written by this module (``python
tests/test_golden_articles.py --record``) *before* ``worker/`` was restructured into one package per stage,
and the test checks that every later change that claims "behaviour unchanged" keeps them: three sample
briefs, one per shipped style, on their served adapters, generated together as one mixed fp32 batch with the
real default base model, every candidate of every attempt.

fp32 rows are exact on one CPU kind, but a kernel may round differently on another instruction set, so the
expected texts are kept per torch CPU capability (``torch.backends.cpu.get_cpu_capability()``: ``AVX512``
or ``AVX2``). The AVX2 entry was recorded on an AVX-512 machine held to AVX2 (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``). A capability with no entry fails and says
how to record one; it is never skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from worker.config import PROJECT_ROOT, Settings
from worker.engine.engine import Engine
from worker.intake.briefs import Brief
from worker.pipeline.pipeline import Pipeline
from worker.scoring.embeddings import default_embedder

pytestmark = pytest.mark.real_model

GOLDEN = Path(__file__).parent / "data" / "golden_articles.json"
BRIEF_IDS = ("howto-compost-bin", "explainer-postgres-mvcc", "listicle-weekend-lisbon")
TARGET_WORDS = 40


def golden_briefs() -> list[Brief]:
    records = yaml.safe_load((PROJECT_ROOT / "briefs" / "samples.yaml").read_text())["briefs"]
    by_id = {record["id"]: record for record in records}
    return [Brief(**{**by_id[brief_id], "target_words": TARGET_WORDS}) for brief_id in BRIEF_IDS]


def generate(home: Path) -> dict[str, Any]:
    """The articles and every candidate text for the golden briefs, in one mixed fp32 batch."""
    torch.set_num_threads(1)
    settings = Settings(home=home, dtype="float32", device="cpu", max_attempts=2, seed=20261203)
    pipeline = Pipeline(settings, Engine.from_settings(settings), embedder=default_embedder())
    outcomes = pipeline.run(golden_briefs())
    articles: dict[str, Any] = {}
    for outcome in outcomes:
        assert outcome.result is not None, outcome.error
        result = outcome.result
        articles[result.brief_id] = {
            "style": result.style,
            "adapter_version": result.adapter_version,
            "status": result.status.value,
            "body_markdown": result.body_markdown,
            "candidates": [
                {"attempt": c.attempt, "index": c.index, "seed": c.seed, "text": c.text} for c in result.candidates
            ],
        }
    return articles


def test_fixed_briefs_and_seeds_write_the_recorded_fp32_articles(tmp_path: Path) -> None:
    capability = torch.backends.cpu.get_cpu_capability()
    recorded = json.loads(GOLDEN.read_text())
    if capability not in recorded:
        pytest.fail(
            f"no golden articles for CPU capability {capability!r} in {GOLDEN}; record them on a commit known to be"
            " right with: .venv/bin/python tests/test_golden_articles.py --record"
        )
    assert generate(tmp_path / "home") == recorded[capability]


def record() -> None:
    """Write (or add) this machine's capability entry to the golden file."""
    import tempfile

    capability = torch.backends.cpu.get_cpu_capability()
    recorded = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    with tempfile.TemporaryDirectory() as home:
        recorded[capability] = generate(Path(home))
    GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"recorded {capability} in {GOLDEN}")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    record()
