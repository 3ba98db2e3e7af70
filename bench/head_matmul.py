"""The output head's matmul, plain ``linear`` against the oneDNN-packed head (worker.packed_head), side by side.

Uses the base model's real head (576 x 49,152 for SmolLM2-135M) in fp32 and times one product per call for
a batch of 1, 8, 32 and 64 rows (one decode step's logits), interleaving the two so that noise hits both.

    python bench/head_matmul.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from worker.base_model import resolve_base_model
from worker.config import load_settings
from worker.packed_head import PackedLinear


def time_call(function: object, hidden: torch.Tensor, calls: int) -> float:
    """Median seconds of one call over ``calls`` calls."""
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        function(hidden)  # type: ignore[operator]
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_base_model(load_settings()).directory, dtype=torch.float32)
    plain = model.get_output_embeddings()
    results = []
    with torch.inference_mode():
        for rows in args.rows:
            packed = PackedLinear(plain, batch_hint=max(args.rows))
            hidden = torch.randn(rows, 1, plain.in_features)
            for function in (plain, packed):  # warm-up
                function(hidden)
            plain_s = packed_s = 0.0
            for _ in range(3):  # interleaved rounds, so that noise hits both
                plain_s += time_call(plain, hidden, args.calls)
                packed_s += time_call(packed, hidden, args.calls)
            results.append(
                {
                    "rows": rows,
                    "plain_ms": round(plain_s / 3 * 1000, 2),
                    "packed_ms": round(packed_s / 3 * 1000, 2),
                    "speed_up": round(plain_s / packed_s, 2),
                }
            )
    shape = f"{plain.out_features} x {plain.in_features}"
    print(json.dumps({"head": shape, "threads": torch.get_num_threads(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
