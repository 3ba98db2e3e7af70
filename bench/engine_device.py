"""The engine on one device: batched, mixed-style generation against a naive ``generate`` loop, side by side.

Runs in one invocation on the device that ``COPYDESK_DEVICE`` picks (``auto``: CUDA where torch sees one) and the
base model ``COPYDESK_MODEL`` names, with the styles of ``COPYDESK_STYLES_DIR``:

  (a) naive   one brief at a time, plain ``model.generate`` (sampling, temperature 0.7, top-p 0.9) in
              ``--naive-dtype`` (float32 as in bench/throughput.py's (a));
  (b) engine  ``Engine.generate`` on the requests the pipeline makes (each brief on its routed style's adapter,
              two candidates per brief, each style's sampling settings), mixed in batches of ``--batch-size``
              rows, in the engine's dtype (auto: bf16 on a GPU that has it).

No scoring and no store: this measures the engine on the device, where bench/throughput.py measures the whole
pipeline on the CPU. Reports generated tokens per second of each, the ratio b/a, the device's name and the
machine's record (the CPU's model and features, torch, threads).

    python bench/engine_device.py --briefs 64 --new-tokens 256 --naive-briefs 2
    COPYDESK_DEVICE=cuda python bench/engine_device.py --briefs 256 --batch-size 512
    COPYDESK_DEVICE=cuda python bench/engine_device.py --briefs 64 --profile 15   # where a call's time goes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from workload import naive_generate, pipeline_requests, synchronize

from worker.config import load_settings
from worker.engine.engine import Engine, GenerationRequest
from worker.lab.evaluation import machine_record


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def engine_runs(engine: Engine, requests: list[GenerationRequest], repeats: int) -> dict[str, Any]:
    """(b) The whole request list through ``Engine.generate``, ``repeats`` times; the median run is reported."""
    engine.generate(requests[: min(len(requests), 8)])  # warm-up: adapters loaded, kernels chosen
    runs = []
    for _ in range(repeats):
        synchronize(engine.device)
        started = time.perf_counter()
        outputs = engine.generate(requests)
        synchronize(engine.device)
        seconds = time.perf_counter() - started
        tokens = sum(o.new_tokens for o in outputs)
        runs.append((tokens / seconds, seconds, tokens))
    tok_s, seconds, tokens = sorted(runs)[len(runs) // 2]
    return {
        "seconds": round(seconds, 2),
        "generated_tokens": tokens,
        "tokens_per_second": round(tok_s, 1),
        "runs_tokens_per_second": [round(r[0], 1) for r in runs],
        "rows": len(requests),
        "batch_size": engine.batch_size,
        "dtype": engine.dtype_name,
    }


def profile_once(engine: Engine, requests: list[GenerationRequest], top: int) -> dict[str, Any]:
    """One ``Engine.generate`` under torch's profiler: the wall time, the device's kernel time (CUDA) or the operators'
    own CPU time, and the top operators; the gap between wall and kernel time is launch and Python overhead."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.device == "cuda" else [])
    synchronize(engine.device)
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        outputs = engine.generate(requests)
        synchronize(engine.device)
    seconds = time.perf_counter() - started
    events = prof.key_averages()
    on_device = engine.device == "cuda"
    if on_device:  # the kernels themselves (an operator's own device time repeats its kernels')
        busy = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 1e6
    else:
        busy = sum(e.self_cpu_time_total for e in events) / 1e6
    key = "self_device_time_total" if on_device else "self_cpu_time_total"
    print(events.table(sort_by=key, row_limit=top))
    tokens = sum(o.new_tokens for o in outputs)
    return {
        "seconds": round(seconds, 2),
        "busy_seconds": round(busy, 2),
        "busy_share": round(busy / seconds, 3),
        "generated_tokens": tokens,
        "tokens_per_second_under_profiler": round(tokens / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--naive-briefs", type=int, default=2, help="the naive loop runs on the first N briefs")
    parser.add_argument("--naive-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=None, help="engine rows per batch (default: the engine's)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--profile", type=int, default=0, help="also profile one call, printing the top N operators")
    args = parser.parse_args()

    settings = load_settings()
    if args.batch_size is not None:
        settings = settings.model_copy(update={"batch_size": args.batch_size})
    engine = Engine.from_settings(settings)
    device = engine.device
    requests = pipeline_requests(settings, args.briefs, args.new_tokens)
    report: dict[str, Any] = {
        "device": device,
        "device_name": device_name(device),
        "machine": machine_record(engine),  # dtype, torch, threads, the CPU's model and features
        "model": engine.source.model_id,
        "briefs": args.briefs,
        "new_tokens": args.new_tokens,
        "b_engine": engine_runs(engine, requests, args.repeats),
    }
    if args.profile:
        report["b_engine_profiled"] = profile_once(engine, requests, args.profile)
    prompts = [engine.chat_prompt(r.messages) for r in requests[::2][: args.naive_briefs]]
    del engine
    report["a_naive"] = naive_generate(settings, prompts, args.new_tokens, device, getattr(torch, args.naive_dtype))
    report["a_naive"]["dtype"] = args.naive_dtype
    report["b_over_a"] = round(report["b_engine"]["tokens_per_second"] / report["a_naive"]["tokens_per_second"], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
