"""Grouped projections on and off (worker.engine.grouped_projections), side by side on the same bf16 batch.

Two engines in one process at the given dtype (default bf16, where grouping applies), one with q/k/v and gate/up
grouped (the default) and one with them apart; both run the requests the pipeline makes for ``--briefs`` sample
briefs (each on its routed style's shipped adapter, two candidates per brief, 3 adapters mixed), alternately,
``--repeats`` times. Prints tokens per second per engine (median and every run), the ratio, and how many rows
wrote the same text on both (bf16 rounds the grouped and separate products differently, so a sampled near-tie
can flip a token; the count says how often that happened, it is not a quality measure).

    python bench/grouped_projections.py --briefs 64 --new-tokens 128 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from workload import pipeline_requests

from worker.config import load_settings
from worker.engine.allocator import retain_freed_memory
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine
from worker.engine.placement import exact_rows_for, pick_dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="rows per batch (0: twice the briefs)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    batch_size = args.batch_size or 2 * args.briefs
    settings = load_settings(dtype=args.dtype, batch_size=batch_size, threads=args.threads)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.retain_freed_memory:
        retain_freed_memory()  # as Engine.from_settings does
    dtype = pick_dtype(settings.dtype, "cpu")
    exact = exact_rows_for(settings)  # exact rows never group: --dtype float32 compares two separate engines
    source = resolve_base_model(settings)
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    engines = {
        "separate": Engine(source, dtype=dtype, batch_size=batch_size, group_projections=False, exact_rows=exact),
        "grouped": Engine(source, dtype=dtype, batch_size=batch_size, exact_rows=exact),
    }
    for engine in engines.values():
        engine.generate(requests[: min(4, len(requests))])  # adapters loaded, first-call costs paid
    runs: dict[str, list[float]] = {name: [] for name in engines}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            started = time.perf_counter()
            outputs = engine.generate(requests)
            runs[name].append(sum(o.new_tokens for o in outputs) / (time.perf_counter() - started))
            texts[name] = [o.text for o in outputs]
    same = sum(a == b for a, b in zip(texts["separate"], texts["grouped"], strict=True))
    result = {
        "rows": len(requests),
        "batch_size": batch_size,
        "new_tokens": args.new_tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "tok_s_median": {name: round(statistics.median(values), 1) for name, values in runs.items()},
        "tok_s_runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
        "ratio_grouped_over_separate": round(
            statistics.median(runs["grouped"]) / statistics.median(runs["separate"]), 3
        ),
        "rows_with_the_same_text": f"{same}/{len(requests)}",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
