"""The output head's matmul: plain fp32 ``linear``, the oneDNN-packed fp32 head (worker.engine.packed_linear) and plain
bf16, side by side.

Uses the base model's real head (576 x 49,152 for SmolLM2-135M) and times one product per call for a batch of
1, 8, 32 and 64 rows (one decode step's logits), interleaving the three so that noise hits all of them. On a
CPU without bf16 units the bf16 column shows what ``COPYDESK_DTYPE=bfloat16`` would cost there.

``view`` times the plain head (fp32 and bf16) on what a prefill hands it without the engine's hook: the last
position sliced out of a 96-token hidden state, a view with the whole sequence's strides, against a fresh copy
of it (``worker.engine.packed_linear.contiguous_head_input``); 3 calls each, since the view costs seconds.

    python bench/head_matmul.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from worker.config import load_settings
from worker.engine.base_model import resolve_base_model
from worker.engine.packed_linear import pack_linears


def median_seconds(function: Callable[[], object], calls: int) -> float:
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_base_model(load_settings()).directory, dtype=torch.float32)
    plain = model.get_output_embeddings()
    packed = copy.deepcopy(plain)
    pack_linears(packed, batch_hint=32)
    bf16 = copy.deepcopy(plain).to(torch.bfloat16)
    results = []
    with torch.inference_mode():
        for rows in args.rows:
            hidden = torch.randn(rows, 1, plain.in_features)
            layers = {"fp32_plain": (plain, hidden), "fp32_packed": (packed, hidden), "bf16": (bf16, hidden.bfloat16())}
            totals = dict.fromkeys(layers, 0.0)
            for _ in range(3):  # interleaved rounds, so that noise hits all three
                for name, (layer, x) in layers.items():
                    layer(x)  # warm-up
                    totals[name] += median_seconds(lambda layer=layer, x=x: layer(x), args.calls)
            row = {name: round(total / 3 * 1000, 2) for name, total in totals.items()}
            results.append(
                {
                    "rows": rows,
                    **{f"{name}_ms": value for name, value in row.items()},
                    "packed_speed_up": round(row["fp32_plain"] / row["fp32_packed"], 2),
                    "bf16_over_fp32_plain": round(row["bf16"] / row["fp32_plain"], 2),
                }
            )
    shape = f"{plain.out_features} x {plain.in_features}"
    report = {"head": shape, "threads": torch.get_num_threads(), "results": results}
    report["view"] = [last_position_view(plain, rows) for rows in args.rows]
    print(json.dumps(report, indent=2))


def last_position_view(plain: torch.nn.Linear, rows: int) -> dict[str, float]:
    """The plain head on the prefill's last-position view against a fresh copy of it, fp32 and bf16 (ms)."""
    result: dict[str, float] = {"rows": rows}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            weight = plain.weight.to(dtype)
            view = torch.randn(rows, 96, plain.in_features).to(dtype)[:, -1:, :]
            fresh = view.clone(memory_format=torch.contiguous_format)
            name = str(dtype).removeprefix("torch.")
            for label, x in (("view", view), ("fresh", fresh)):
                result[f"{name}_{label}_ms"] = round(
                    median_seconds(lambda x=x, w=weight: torch.nn.functional.linear(x, w), 3) * 1000, 2
                )
    return result


if __name__ == "__main__":
    main()
