"""Profile one batched, mixed-style generation call of the engine (where does the time go?).

Builds ``--rows`` requests from the sample briefs, routed to their styles (so 3 LoRA adapters mixed in one
batch), each style's own sampling settings, and runs ``Engine.generate`` once as warm-up and once under
cProfile. Prints the wall time, generated tokens per second and the top functions by own time. With ``--ops``,
torch's profiler instead: the top operators by their own CPU time, and how much of the wall time no operator
accounts for (Python and dispatch between them). ``--threads`` sets torch's threads; ``--no-groups`` turns the
grouped projections off (worker.engine.grouped_projections) to see what they change.

    python bench/profile_engine.py --rows 32 --new-tokens 64
    python bench/profile_engine.py --rows 128 --new-tokens 128 --ops --threads 2
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import engine_requests

from worker.config import load_settings
from worker.engine.allocator import retain_freed_memory
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine, GenerationRequest
from worker.engine.placement import exact_rows_for, pick_device, pick_dtype


def profile_ops(engine: Engine, requests: list[GenerationRequest], top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        outputs = engine.generate(requests)
    seconds = time.perf_counter() - started
    tokens = sum(o.new_tokens for o in outputs)
    print(f"{len(requests)} rows, {tokens} tokens, {seconds:.1f} s (under the profiler), {tokens / seconds:.1f} tok/s")
    events = prof.key_averages()
    own = sum(event.self_cpu_time_total for event in events) / 1e6
    print(f"operators' own time {own:.1f} s of {seconds:.1f} s wall; the rest is Python and dispatch between them")
    print(events.table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--styles", type=int, default=3, help="distinct adapters mixed in the batch")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--ops", action="store_true", help="torch's profiler by operator instead of cProfile")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-groups", action="store_true", help="q/k/v and gate/up as separate products")
    args = parser.parse_args()
    settings = load_settings(dtype=args.dtype, batch_size=args.rows, threads=args.threads)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.retain_freed_memory:
        retain_freed_memory()  # as Engine.from_settings does
    device = pick_device(settings.device)
    engine = Engine(
        resolve_base_model(settings),
        device=device,
        dtype=pick_dtype(settings.dtype, device),
        batch_size=args.rows,
        group_projections=not args.no_groups,
        exact_rows=exact_rows_for(settings),  # as serving runs: auto on a CPU without bf16 units takes the fast paths
    )
    requests = engine_requests(settings, args.rows, args.new_tokens, styles=args.styles)
    engine.generate(requests[: min(4, len(requests))])  # warm-up: adapters loaded, first-call costs paid
    if args.ops:
        profile_ops(engine, requests, args.top)
        return
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    outputs = engine.generate(requests)
    profiler.disable()
    seconds = time.perf_counter() - started
    tokens = sum(o.new_tokens for o in outputs)
    print(f"{len(requests)} rows, {tokens} tokens, {seconds:.1f} s (under cProfile), {tokens / seconds:.1f} tok/s")
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(args.top)
    print(buffer.getvalue())


if __name__ == "__main__":
    main()
