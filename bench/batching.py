"""Benchmark: one brief at a time against batched briefs, through the real pipeline and store.

Both modes run in one invocation on the same briefs and settings (real default model, candidates and
sampling from each style, one attempt), writing into fresh SQLite stores, so the figures compare
side by side. Reports generated tokens per second and finished articles per hour (scoring and store
included), and the ratio batched / one-at-a-time.

    python bench/batching.py --briefs 8 --target-words 120
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from worker.config import Settings, load_settings
from worker.engine.engine import Engine
from worker.intake.briefs import Brief
from worker.intake.loading import load_brief_files
from worker.pipeline.pipeline import Pipeline
from worker.pipeline.runner import write_briefs
from worker.scoring.embeddings import default_embedder, embedder_dtype_for
from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent


def sample_briefs(count: int, target_words: int) -> list[Brief]:
    loaded = [item.brief for item in load_brief_files([ROOT / "briefs" / "samples.yaml"]).briefs]
    briefs = []
    for i in range(count):
        base = loaded[i % len(loaded)]
        briefs.append(base.model_copy(update={"id": f"bench-{i:03d}-{base.brief_id}", "target_words": target_words}))
    return briefs


def run_mode(name: str, pipeline: Pipeline, briefs: list[Brief], group: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    pipeline.settings = replace_settings(pipeline.settings, home)
    store = Store(pipeline.settings.effective_store_url)
    store.migrate()
    for brief in briefs:
        store.add_brief(brief)
    ids = [b.brief_id for b in briefs]
    started = time.perf_counter()
    outcomes = []
    for start in range(0, len(ids), group):
        outcomes += write_briefs(
            ids[start : start + group], store=store, pipeline=pipeline, owner=f"bench-{name}", lease_seconds=3600
        )
    seconds = time.perf_counter() - started
    tokens = sum(c["new_tokens"] for brief_id in ids for c in store.list_candidates(brief_id))
    articles = sum(1 for o in outcomes if o.article is not None)
    return {
        "seconds": round(seconds, 1),
        "articles": articles,
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "articles_per_hour": round(articles * 3600 / seconds, 1),
    }


def replace_settings(settings: Settings, home: Path) -> Settings:
    return settings.model_copy(update={"home": home, "store_url": None, "max_attempts": 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=8)
    parser.add_argument("--target-words", type=int, default=120)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    settings = load_settings(dtype=args.dtype, batch_size=max(16, args.briefs * 2))
    engine = Engine.from_settings(settings)
    pipeline = Pipeline(settings, engine, embedder=default_embedder(embedder_dtype_for(engine.dtype_name)))
    briefs = sample_briefs(args.briefs, args.target_words)
    pipeline.run(briefs[:1])  # warm-up: first call pays one-off costs
    one = run_mode("one-at-a-time", pipeline, briefs, group=1)
    batched = run_mode("batched", pipeline, briefs, group=len(briefs))
    report = {
        "briefs": args.briefs,
        "target_words": args.target_words,
        "dtype": engine.dtype_name,
        "one_at_a_time": one,
        "batched": batched,
        "ratio_articles_per_hour": round(batched["articles_per_hour"] / one["articles_per_hour"], 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
