"""Freed memory kept in the process (``COPYDESK_RETAIN_FREED_MEMORY``) against glibc's defaults, side by side.

The allocator's thresholds are set once per process, so each measurement is a child process: the children
alternate default / retained, ``--repeats`` times each, within this one invocation. Each child builds the
engine with ``Engine.from_settings`` (which applies the setting), warms it up, then runs one
``Engine.generate`` over the pipeline's requests for ``--briefs`` sample briefs (2 candidates each, their
routed styles' adapters) and reports tokens/s, the minor page faults of that call and a hash of all texts.
Prints a Markdown table, the ratio of the medians and whether the texts were the same.

    python bench/allocator.py --briefs 64 --new-tokens 96 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = {"default": "false", "retained": "true"}


def child(briefs: int, new_tokens: int, threads: int) -> dict[str, float | str]:
    import resource

    from workload import pipeline_requests

    from worker.config import load_settings
    from worker.engine.engine import Engine

    settings = load_settings(batch_size=2 * briefs, threads=threads)
    engine = Engine.from_settings(settings)
    requests = pipeline_requests(settings, briefs, new_tokens)
    engine.generate(requests[:4])  # warm-up: adapters loaded, first-call costs paid
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    outputs = engine.generate(requests)
    seconds = time.perf_counter() - started
    tokens = sum(o.new_tokens for o in outputs)
    return {
        "tok_s": tokens / seconds,
        "seconds": seconds,
        "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
        "texts": hashlib.sha256("\x00".join(o.text for o in outputs).encode()).hexdigest()[:16],
    }


def run_child(mode: str, args: argparse.Namespace) -> dict[str, float | str]:
    env = {**os.environ, "COPYDESK_RETAIN_FREED_MEMORY": MODES[mode]}
    command = [sys.executable, __file__, "--child", "--briefs", str(args.briefs), "--new-tokens", str(args.new_tokens)]
    command += ["--threads", str(args.threads)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each child")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.briefs, args.new_tokens, args.threads)))
        return
    runs: dict[str, list[dict[str, float | str]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            runs[mode].append(run_child(mode, args))
    medians = {mode: statistics.median(float(r["tok_s"]) for r in values) for mode, values in runs.items()}
    same = len({r["texts"] for values in runs.values() for r in values}) == 1
    print(
        f"{2 * args.briefs} rows ({args.briefs} briefs x 2 candidates), {args.new_tokens} new tokens, "
        f"{args.threads} threads, one child process per run, alternating; median of {args.repeats}"
    )
    print("| allocator | tok/s (median) | runs | minor page faults (median) |")
    print("| --- | ---: | --- | ---: |")
    for mode, values in runs.items():
        listed = ", ".join(f"{float(r['tok_s']):.1f}" for r in values)
        faults = statistics.median(int(r["page_faults"]) for r in values)
        print(f"| {mode} | {medians[mode]:.1f} | {listed} | {faults:,.0f} |")
    print(f"retained / default: {medians['retained'] / medians['default']:.3f}x; texts identical: {same}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians, "texts_identical": same}, indent=2))


if __name__ == "__main__":
    main()
