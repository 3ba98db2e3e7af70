"""How mixed-adapter LoRA is computed, side by side on the same batch (engine only, one engine, one process).

Runs the requests the pipeline makes for ``--briefs`` sample briefs (each on its routed style's shipped adapter,
two candidates per brief) through one bf16 engine, with the LoRA path switched per run:

  * ``concatenated`` — worker.engine.lora_batch as it is: every adapter's A and B side by side, a per-row mask;
  * ``stacked`` — the previous version, kept here for the comparison: every row's own A and B stacked along the
    batch and two ``bmm`` per layer (each row reads its adapter's weights);
  * ``peft`` — PEFT's own ``adapter_names`` path (a loop over the adapters in every layer);
  * ``base`` — the same prompts on the base model alone: the shapes of a merged single-style batch, the floor.

Interleaved, ``--repeats`` times; reports tok/s (median and every run) and each path's ratio to ``base``.

    python bench/lora_mixing.py --briefs 16 --new-tokens 128 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from workload import pipeline_requests

import worker.engine.engine as engine_module
import worker.engine.lora_batch as lora_batch
from worker.config import load_settings
from worker.engine.engine import Engine, GenerationRequest


class StackedLora:
    """The previous mixed-adapter path: each row's A and B stacked along the batch (zeros for base rows)."""

    def __init__(self, layer: Any, adapters: list[str], names: Sequence[str], dtype: torch.dtype) -> None:
        base = layer.get_base_layer()
        rank = layer.lora_A[adapters[0]].weight.shape[0]
        if any(layer.lora_A[name].weight.shape[0] != rank for name in adapters):
            raise ValueError("the stacked comparison path needs adapters of one rank")
        self.stack_a = torch.zeros(len(adapters) + 1, base.in_features, rank, dtype=dtype)
        self.stack_b = torch.zeros(len(adapters) + 1, rank, base.out_features, dtype=dtype)
        self.scales = torch.zeros(len(adapters) + 1, 1, 1, dtype=dtype)
        for slot, name in enumerate(adapters, start=1):
            self.stack_a[slot] = layer.lora_A[name].weight.T.to(dtype)
            self.stack_b[slot] = layer.lora_B[name].weight.T.to(dtype)
            self.scales[slot] = layer.scaling[name]
        slots = {name: slot for slot, name in enumerate(adapters, start=1)}
        self.index = torch.tensor([slots.get(n, 0) for n in names])
        self.keep(None)

    def keep(self, rows: torch.Tensor | None) -> None:
        if rows is not None:
            self.index = self.index[rows]
        self.rows_a, self.rows_b, self.rows_scale = (
            self.stack_a[self.index],
            self.stack_b[self.index],
            self.scales[self.index],
        )

    def add_to(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1]).to(self.rows_a.dtype)
        delta = torch.bmm(torch.bmm(flat, self.rows_a), self.rows_b) * self.rows_scale
        return result + delta.reshape(result.shape).to(result.dtype)


@contextlib.contextmanager
def lora_path(name: str) -> Iterator[None]:
    """Switch the engine's mixed-adapter path to ``name`` for the duration."""
    with contextlib.ExitStack() as stack:
        if name == "stacked":
            original = lora_batch._Concatenated
            lora_batch._Concatenated = StackedLora  # type: ignore[assignment,misc]
            stack.callback(setattr, lora_batch, "_Concatenated", original)
        elif name == "peft":
            original_grouped = engine_module.grouped_lora
            engine_module.grouped_lora = lambda *args, **kwargs: None  # type: ignore[assignment]
            stack.callback(setattr, engine_module, "grouped_lora", original_grouped)
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--paths", nargs="+", default=["base", "concatenated", "stacked", "peft"])
    args = parser.parse_args()
    # bf16: in fp32 the engine mixes adapters through exact sub-batches, and the paths compared here are not used.
    settings = load_settings(dtype="bfloat16", batch_size=2 * args.briefs, threads=args.threads)
    engine = Engine.from_settings(settings)
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    base_requests = [dataclasses.replace(r, adapter=None, key=f"base-{r.key}") for r in requests]
    engine.generate(requests[: min(4, len(requests))])  # adapters loaded, first-call costs paid
    runs: dict[str, list[float]] = {name: [] for name in args.paths}
    for _ in range(args.repeats):
        for name in args.paths:
            batch: list[GenerationRequest] = base_requests if name == "base" else requests
            with lora_path(name):
                started = time.perf_counter()
                outputs = engine.generate(batch)
                seconds = time.perf_counter() - started
            runs[name].append(sum(o.new_tokens for o in outputs) / seconds)
    median = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "rows": len(requests),
        "adapters": sorted({r.adapter.name for r in requests if r.adapter is not None}),
        "new_tokens": args.new_tokens,
        "dtype": engine.dtype_name,
        "threads": torch.get_num_threads(),
        "tok_s_median": {name: round(value, 1) for name, value in median.items()},
        "tok_s_runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
        "ratio_to_base": {name: round(value / median["base"], 3) for name, value in median.items() if "base" in median},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
