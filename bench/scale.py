"""Scale curve of the engine: throughput and cost per sequence by number of briefs and of styles mixed.

All configurations run in one process on one engine (dtype auto), on the sample briefs with each routed
style's sampling settings, one sequence per brief:

  * briefs:  ``--briefs`` (default 1 8 32 128) sequences in one batch each (batch size = briefs, capped at
             ``--max-batch``), ``--styles-for-briefs`` adapters mixed;
  * styles:  ``--rows`` sequences (one batch) with 0 (base model only; the cost of a merged single-style batch, which
             has the base model's shapes), 1, 3, 10 distinct LoRA adapters mixed in the batch (beyond the
             shipped ones, perturbed copies: see bench/workload.py);
  * memory:  peak RSS after each batch size, ascending (the KV cache grows with rows x positions).

The styles curve runs twice: as the engine runs (shared prompt prefixes on under bf16: with fewer rows per
adapter, fewer rows share a prefix) and with prefix sharing off (what mixing adapters itself costs).

Generation dominates an article's cost (scoring and store are measured by bench/throughput.py), so this
curve is affordable with a short budget (``--new-tokens``, default 64); say so when quoting it.

    python bench/scale.py --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from workload import engine_requests

from worker.config import load_settings
from worker.engine.engine import Engine


def peak_rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(engine: Engine, requests: list[Any]) -> dict[str, Any]:
    started = time.perf_counter()
    outputs = engine.generate(requests)
    seconds = time.perf_counter() - started
    tokens = sum(o.new_tokens for o in outputs)
    return {
        "sequences": len(requests),
        "seconds": round(seconds, 2),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "seconds_per_sequence": round(seconds / len(requests), 3),
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument("--briefs", type=int, nargs="*", default=[1, 8, 32, 128])
    parser.add_argument("--styles-for-briefs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=32, help="sequences of the styles curve")
    parser.add_argument("--styles", type=int, nargs="*", default=[0, 1, 3, 10])
    args = parser.parse_args()
    settings = load_settings(batch_size=args.max_batch, threads=args.threads)
    engine = Engine.from_settings(settings)
    engine.adapters.capacity = max(engine.adapters.capacity, max(args.styles, default=0))
    report: dict[str, Any] = {
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "dtype": engine.dtype_name,
        "load_average_at_start": os.getloadavg()[0],
        "rss_after_load_mib": peak_rss_mib(),
    }
    # Warm-up at the styles curve's full size: every adapter loaded and a full batch's buffers allocated once,
    # so the first measured configuration is not the only one to pay for them.
    engine.generate(engine_requests(settings, args.rows, 8, styles=max(args.styles, default=0), prefix="warm"))
    report["by_styles"] = {
        str(n): measure(engine, engine_requests(settings, args.rows, args.new_tokens, styles=n)) for n in args.styles
    }
    # The same without shared prompt prefixes: with fewer rows per adapter fewer rows share a prefix, so the
    # curve above mixes two effects; this one isolates what mixing adapters itself costs.
    sharing = engine.share_prefixes
    engine.share_prefixes = False
    report["by_styles_no_prefix_sharing"] = {
        str(n): measure(engine, engine_requests(settings, args.rows, args.new_tokens, styles=n)) for n in args.styles
    }
    engine.share_prefixes = sharing
    report["by_briefs"] = {
        str(n): measure(engine, engine_requests(settings, n, args.new_tokens, styles=args.styles_for_briefs))
        for n in sorted(args.briefs)
    }
    for key, suffix in (("by_styles", ""), ("by_styles_no_prefix_sharing", "_no_prefix_sharing")):
        styles = report[key]
        if "1" in styles and "10" in styles:
            report[f"cost_of_10_styles_vs_1{suffix}"] = round(
                1 - styles["10"]["tokens_per_second"] / styles["1"]["tokens_per_second"], 3
            )
        if "0" in styles and "3" in styles:
            report[f"cost_of_3_styles_vs_base{suffix}"] = round(
                1 - styles["3"]["tokens_per_second"] / styles["0"]["tokens_per_second"], 3
            )
    report["load_average_at_end"] = os.getloadavg()[0]
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
