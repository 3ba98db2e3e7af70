"""What the engine shares of a batch's prompts, setting by setting, side by side on the same batch (engine only, bf16).

Builds the requests the pipeline makes for ``--briefs`` sample briefs (each on its routed style's shipped
adapter, two candidates per brief) and runs ``Engine.generate`` on them alternately in each of ``--settings``,
``--repeats`` times each, in one process:

* ``off``: nothing shared;
* ``prefixes``: shared prompt prefixes only (the engine before whole prompts were shared);
* ``copied``: prefixes, and a brief's candidates prefilled once, their cache copied to each candidate;
* ``once``: as ``copied``, but the decode steps keep each prompt's cache once and its rows attend to it together
  (``worker.engine.prompt_attention``; the engine's default under bf16 on the CPU).

Two measurements per setting: prefill only (one new token per row: the prompt's cost) and a whole generation
(``--new-tokens``). Prints the medians and the ratios to the first setting as a Markdown table; ``--json`` writes
them too.

    python bench/prefix_sharing.py --briefs 64 --new-tokens 128 --repeats 3 --threads 2
    python bench/prefix_sharing.py --briefs 64 --new-tokens 256 --repeats 3 --threads 2 --settings copied once
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from workload import pipeline_requests

from worker.config import load_settings
from worker.engine.engine import Engine, GenerationRequest

# Setting name: (share_prefixes, share_prompts, attend_prompts_once).
SETTINGS = {
    "off": (False, False, False),
    "prefixes": (True, False, False),
    "copied": (True, True, False),
    "once": (True, True, True),
}


def timed(engine: Engine, requests: list[GenerationRequest], setting: str) -> tuple[float, int]:
    engine.share_prefixes, engine.share_prompts, engine.attend_prompts_once = SETTINGS[setting]
    started = time.perf_counter()
    outputs = engine.generate(requests)
    return time.perf_counter() - started, sum(o.new_tokens for o in outputs)


def with_budget(requests: list[GenerationRequest], new_tokens: int) -> list[GenerationRequest]:
    return [replace(r, settings=replace(r.settings, max_new_tokens=new_tokens)) for r in requests]


def measure(
    engine: Engine, requests: list[GenerationRequest], repeats: int, settings: list[str]
) -> dict[str, dict[str, float]]:
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name in settings:
            runs[name].append(timed(engine, requests, name))
    return {
        name: {
            "seconds": statistics.median(s for s, _ in values),
            "tok_s": statistics.median(t / s for s, t in values),
        }
        for name, values in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(batch_size=2 * args.briefs)
    engine = Engine.from_settings(settings)
    if engine.exact_rows:
        parser.error("the engine runs exact rows here (dtype float32): no shared prefixes; this bench measures without")
    if not engine.attend_prompts_once and "once" in args.settings:
        parser.error("this model does not attend to prompts once (worker.engine.prompt_attention.supports)")
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    prompt_tokens = [len(engine.tokenizer(engine.chat_prompt(r.messages)).input_ids) for r in requests]
    engine.generate(with_budget(requests[:4], 2))  # warm-up: adapters loaded, first-call costs paid
    names = args.settings
    prefill = measure(engine, with_budget(requests, 1), args.repeats, names)
    whole = measure(engine, requests, args.repeats, names)
    first = names[0]
    report = {
        "rows": len(requests),
        "prompt_tokens_mean": statistics.mean(prompt_tokens),
        "new_tokens": args.new_tokens,
        "dtype": engine.dtype_name,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "prefill": prefill,
        "generation": whole,
        "prefill_speedup_over_first": {name: prefill[first]["seconds"] / prefill[name]["seconds"] for name in names},
        "generation_speedup_over_first": {name: whole[name]["tok_s"] / whole[first]["tok_s"] for name in names},
    }
    print(
        f"{report['rows']} rows ({args.briefs} briefs x 2 candidates, 3 styles), "
        f"{report['prompt_tokens_mean']:.0f} prompt tokens/row, {engine.dtype_name}, {report['threads']} threads, "
        f"median of {args.repeats}, {report['cpu_capability']}"
    )
    print(
        f"| setting | prefill only, s | generation ({args.new_tokens} new tokens), tok/s | prefill / {first} | "
        f"generation / {first} |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        print(
            f"| {name} | {prefill[name]['seconds']:.2f} | {whole[name]['tok_s']:.1f} | "
            f"{report['prefill_speedup_over_first'][name]:.2f}x faster | "
            f"{report['generation_speedup_over_first'][name]:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
