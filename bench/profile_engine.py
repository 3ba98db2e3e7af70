"""Profile one batched, mixed-style generation call of the engine (where does the time go?).

Builds ``--rows`` requests from the sample briefs, routed to their styles (so 3 LoRA adapters mixed in one
batch), each style's own sampling settings, and runs ``Engine.generate`` once as warm-up and once under
cProfile. Prints the wall time, generated tokens per second and the top functions by own time.

    python bench/profile_engine.py --rows 32 --new-tokens 64
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import engine_requests

from worker.config import load_settings
from worker.engine.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--styles", type=int, default=3, help="distinct adapters mixed in the batch")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    settings = load_settings(dtype=args.dtype, batch_size=args.rows)
    engine = Engine.from_settings(settings)
    requests = engine_requests(settings, args.rows, args.new_tokens, styles=args.styles)
    engine.generate(requests[: min(4, len(requests))])  # warm-up: adapters loaded, first-call costs paid
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
