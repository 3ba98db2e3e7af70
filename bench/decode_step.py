"""The lean decode step against the model's own forward, side by side: time per step, and the same logits.

Under bf16 on the CPU the engine runs each decode step over the shared-prompt cache through
``worker.engine.decode_step`` (the model's own modules called in the decoder's order, without transformers' layer
forwards) instead of ``model(...)``. Two measurements, in one process, alternating the two:

* ``step``: the default base model with the pipeline's shipped adapters mixed (each prompt on one of them, through the
  grouped LoRA products), ``--prompts`` random prompts of ``--prompt-length`` tokens prefilled once, two rows each
  (a brief's candidates), then ``--steps`` decode steps through two copies of the shared-prompt cache, one per route,
  the same tokens into both; milliseconds per step (median, the first two steps left out), the median of the
  per-step ratio, and in how many of the steps the two logits differ (the lean step promises none);
* ``engine`` (with ``--briefs``): ``Engine.generate`` on the pipeline's requests with the lean step on and off,
  alternating which goes first, generated tokens per second (median of ``--repeats``), and whether every run of
  both gave the same texts.

    python bench/decode_step.py --threads 2
    python bench/decode_step.py --threads 2 --briefs 64 --new-tokens 256 --repeats 2
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
from worker.engine.decode_step import decode_step_for
from worker.engine.engine import Engine
from worker.engine.kv_cache import preallocated_cache
from worker.engine.lora_batch import grouped_lora
from worker.engine.prompt_attention import attending_prompts_once, shared_prompt_cache
from worker.lab.evaluation import machine_record


def loaded_engine(args: argparse.Namespace) -> tuple[Engine, list[Any]]:
    """The default engine (bf16 on the CPU, or this bench has nothing to compare), the pipeline's requests, and every
    adapter they use loaded."""
    settings = load_settings(batch_size=max(2 * args.prompts, 2 * args.briefs))
    engine = Engine.from_settings(settings)
    if not engine.attend_prompts_once or decode_step_for(engine.model) is None:
        raise SystemExit("no lean decode step here: it serves bf16 on the CPU for Llama, Qwen2 and Qwen3 models")
    requests = pipeline_requests(settings, max(args.briefs, args.prompts), args.new_tokens)
    for adapter in dict.fromkeys(r.adapter for r in requests if r.adapter is not None):
        engine.load_adapter(adapter)
    return engine, requests


def step_figures(engine: Engine, requests: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Milliseconds per decode step of each route, alternating which goes first, and the steps whose logits differ."""
    model, generator = engine.model, torch.Generator().manual_seed(0)
    names = [requests[2 * p].adapter.name for p in range(args.prompts)]  # each brief's style, two rows per brief
    ids = torch.randint(100, 40_000, (args.prompts, args.prompt_length), generator=generator)
    mask = torch.ones_like(ids)
    rows = torch.arange(2 * args.prompts) // 2
    times: dict[str, list[float]] = {"forward": [], "lean": []}
    differing = 0
    grouped = grouped_lora(model, names)
    if grouped is None:
        raise SystemExit("the pipeline's adapters are not plain LoRA: nothing to mix through the grouped products")
    with torch.inference_mode(), grouped:
        cache = preallocated_cache(model, args.prompt_length)
        positions = torch.arange(args.prompt_length).expand_as(ids)
        model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
        grouped.keep(rows)
        caches = {route: shared_prompt_cache(cache, mask, rows, args.steps) for route in times}
        lean, step_mask = decode_step_for(model), mask[rows]
        positions = torch.full((rows.shape[0], 1), args.prompt_length - 1)
        for step in range(args.steps):
            tokens = torch.randint(100, 40_000, (rows.shape[0], 1), generator=generator)
            positions, step_mask = positions + 1, torch.cat([step_mask, step_mask.new_ones(rows.shape[0], 1)], 1)
            logits = {}
            for route in sorted(times, reverse=step % 2 == 1):
                started = time.perf_counter()
                if route == "lean":
                    logits[route] = lean.logits(tokens, positions, caches[route])
                else:
                    with attending_prompts_once(model, caches[route]):
                        logits[route] = model(
                            input_ids=tokens, attention_mask=step_mask, position_ids=positions,
                            cache=caches[route], use_cache=True, logits_to_keep=1,
                        ).logits[:, -1, :]  # fmt: skip
                times[route].append((time.perf_counter() - started) * 1e3)
            differing += not torch.equal(logits["forward"], logits["lean"])
    measured = {route: values[2:] for route, values in times.items()}  # the first steps warm the buffers up
    ratios = [f / lean for f, lean in zip(measured["forward"], measured["lean"], strict=True)]
    return {
        "rows": int(rows.shape[0]),
        "forward_ms": statistics.median(measured["forward"]),
        "lean_ms": statistics.median(measured["lean"]),
        "speedup": statistics.median(ratios),
        "steps_with_different_logits": differing,
    }


def engine_figures(engine: Engine, requests: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Generated tokens per second of ``Engine.generate`` with the lean step on and off, alternating."""
    batch = requests[: 2 * args.briefs]
    engine.generate(batch[:8])  # warm-up
    runs: dict[str, list[float]] = {"forward": [], "lean": []}
    texts: dict[str, list[list[str]]] = {route: [] for route in runs}
    for repeat in range(args.repeats):
        for route in sorted(runs, reverse=repeat % 2 == 1):  # which goes first alternates
            engine.lean_decode = route == "lean"
            started = time.perf_counter()
            outputs = engine.generate(batch)
            runs[route].append(sum(o.new_tokens for o in outputs) / (time.perf_counter() - started))
            texts[route].append([o.text for o in outputs])
    engine.lean_decode = True
    medians = {route: statistics.median(values) for route, values in runs.items()}
    speedup = medians["lean"] / medians["forward"]
    same = all(text == texts["forward"][0] for route in texts for text in texts[route])  # every run, both routes
    return {"rows": len(batch), "tok_s": medians, "runs": runs, "speedup": speedup, "same_texts": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="distinct prompts, two rows each")
    parser.add_argument("--prompt-length", type=int, default=212)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--briefs", type=int, default=0, help="also time Engine.generate on this many briefs")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine, requests = loaded_engine(args)
    report: dict[str, Any] = {"machine": machine_record(engine), "step": step_figures(engine, requests, args)}
    print(json.dumps(report["machine"]))
    step = report["step"]
    print(
        f"decode step, {step['rows']} rows over {args.prompts} prompts of {args.prompt_length} tokens, median of "
        f"{args.steps - 2} steps: model forward {step['forward_ms']:.1f} ms, lean {step['lean_ms']:.1f} ms "
        f"(median of the per-step ratios {step['speedup']:.3f}x); of all {args.steps} steps, logits differ in "
        f"{step['steps_with_different_logits']}"
    )
    if args.briefs:
        report["engine"] = figures = engine_figures(engine, requests, args)
        print(
            f"Engine.generate, {figures['rows']} rows x {args.new_tokens} new tokens, median of {args.repeats}: "
            f"forward {figures['tok_s']['forward']:.1f} tok/s, lean {figures['tok_s']['lean']:.1f} tok/s "
            f"({figures['speedup']:.3f}x); same texts: {figures['same_texts']}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
