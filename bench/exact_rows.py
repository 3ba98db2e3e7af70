"""float32 with exact rows against float32 on the batch's fast paths, side by side on the same requests.

``dtype: float32`` promises that a row's text does not depend on its batch (batch-invariant kernels, per-adapter
LoRA sub-batches, 32 rows); ``dtype: auto`` on a CPU without bf16 units runs float32 without that promise, on the paths
bf16 takes (prompts attended once, shared prefixes, grouped projections, concatenated LoRA, the lean decode step; 128
rows). This loads one engine of each ``--modes`` entry (``exact:32``, ``fast:128``, ``fast:32``: the mode and its batch
size) in one process, runs ``Engine.generate`` on the pipeline's requests (``--briefs`` briefs x 2 candidates, each on
its routed style's shipped adapter) with each, the order rotating per repeat, and prints generated tokens per second
(median of ``--repeats``), each mode's ratio to the first, and how many of the texts equal the first mode's.

To measure a CPU without bf16 units on one with them, force the AVX2 profile (the engine is float32 here whatever the
CPU has):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python bench/exact_rows.py --threads 2 --briefs 64 --new-tokens 128 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from workload import pipeline_requests

from worker.config import load_settings
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine, GenerationRequest
from worker.lab.evaluation import machine_record


def parse_mode(text: str) -> tuple[str, int]:
    """``exact:32`` -> ("exact", 32): the engine's mode and its batch size."""
    mode, _, batch = text.partition(":")
    if mode not in ("exact", "fast") or not batch.isdigit() or int(batch) < 1:
        raise argparse.ArgumentTypeError(f"a mode is exact:<rows> or fast:<rows>, not {text!r}")
    return mode, int(batch)


def loaded_engines(modes: list[tuple[str, int]], requests: list[GenerationRequest]) -> dict[str, Engine]:
    """One float32 engine per mode, every adapter of ``requests`` loaded and one short generation run (warm-up)."""
    source = resolve_base_model(load_settings())
    engines = {}
    for mode, batch in modes:
        engine = Engine(source, dtype=torch.float32, batch_size=batch, exact_rows=mode == "exact")
        for adapter in dict.fromkeys(r.adapter for r in requests if r.adapter is not None):
            engine.load_adapter(adapter)
        engine.generate(requests[:4])
        engines[f"{mode}:{batch}"] = engine
    return engines


def same_texts(texts: dict[str, list[str]], first: str) -> dict[str, int]:
    """How many of each mode's texts equal the ``first`` mode's, request by request."""
    return {name: sum(a == b for a, b in zip(texts[first], rows, strict=True)) for name, rows in texts.items()}


def compare(engines: dict[str, Engine], requests: list[GenerationRequest], repeats: int) -> dict[str, Any]:
    """Tokens per second of each engine (the order rotating per repeat), ratios to the first, texts equal to its."""
    names = list(engines)
    runs: dict[str, list[float]] = {name: [] for name in names}
    texts: dict[str, list[str]] = {}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            started = time.perf_counter()
            outputs = engines[name].generate(requests)
            runs[name].append(sum(o.new_tokens for o in outputs) / (time.perf_counter() - started))
            texts[name] = [o.text for o in outputs]  # the last repeat's
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "rows": len(requests),
        "tok_s": {name: round(value, 1) for name, value in medians.items()},
        "runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
        "ratio_to_first": {name: round(medians[name] / medians[names[0]], 3) for name in names},
        "texts_equal_to_first": same_texts(texts, names[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", type=parse_mode, default=[("exact", 32), ("fast", 128), ("fast", 32)])
    parser.add_argument("--briefs", type=int, default=64, help="briefs, two candidates each")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    requests = pipeline_requests(load_settings(), args.briefs, args.new_tokens)
    engines = loaded_engines(args.modes, requests)
    report = {"machine": machine_record(None), **compare(engines, requests, args.repeats)}  # modes: float32 each
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
