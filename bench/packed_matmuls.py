"""Packed oneDNN matmuls on and off (worker.engine.packed_linear), side by side on the same fp32 batch (engine only).

Two fp32 engines in one process, one with ``packed_matmuls`` (the default on a CPU in fp32) and one without;
both run the requests the pipeline makes for ``--briefs`` sample briefs (each on its routed style's shipped
adapter, two candidates per brief), alternately, ``--repeats`` times. Then each engine generates the first
``--alone`` requests one at a time, and the script counts how many texts equal the same row's text from the
batch: the fp32 promise that a row does not depend on its batch.

    python bench/packed_matmuls.py --briefs 16 --new-tokens 256 --repeats 3 --alone 8 --threads 2
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
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine, GenerationOutput, GenerationRequest


def timed(engine: Engine, requests: list[GenerationRequest]) -> tuple[float, list[GenerationOutput]]:
    started = time.perf_counter()
    outputs = engine.generate(requests)
    return time.perf_counter() - started, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alone", type=int, default=8, help="rows generated alone to compare with the batch")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    settings = load_settings(dtype="float32", batch_size=2 * args.briefs, threads=args.threads)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    source = resolve_base_model(settings)
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    engines = {
        "plain": Engine(source, dtype=torch.float32, batch_size=settings.batch_size, packed_matmuls=False),
        "packed": Engine(source, dtype=torch.float32, batch_size=settings.batch_size),
    }
    for engine in engines.values():
        engine.generate(requests[: min(4, len(requests))])  # adapters loaded, first-call costs paid
    runs: dict[str, list[float]] = {name: [] for name in engines}
    batch_texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            seconds, outputs = timed(engine, requests)
            runs[name].append(sum(o.new_tokens for o in outputs) / seconds)
            batch_texts[name] = [o.text for o in outputs]
    alone = {
        name: sum(
            engine.generate([request])[0].text == batch_texts[name][index]
            for index, request in enumerate(requests[: args.alone])
        )
        for name, engine in engines.items()
    }
    result = {
        "rows": len(requests),
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "tok_s_median": {name: round(statistics.median(values), 1) for name, values in runs.items()},
        "tok_s_runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
        "ratio_packed_over_plain": round(statistics.median(runs["packed"]) / statistics.median(runs["plain"]), 3),
        "rows_alone_equal_to_batch": {
            name: f"{count}/{min(args.alone, len(requests))}" for name, count in alone.items()
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
