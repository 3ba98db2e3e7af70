"""Recovery that keeps batching: a 64-brief batch killed once mid-generation, with and without a poison brief.

Three runs of one 64-brief job, each on a fresh deployment (one ``copydesk worker``, one pool process,
``flush_size`` 64, Redis broker, SQLite store by default), timed from ``copydesk submit`` to the job's end:

* ``unkilled``: the batch runs once;
* ``killed``: the whole worker (main process and pool) is SIGKILLed ``--kill-after`` seconds into the batch's
  generation and started again; its reconciler queues the batch again in two halves (bisection);
* ``poison``: one of the 64 briefs kills its pool process whenever its batch is generated (the test hook of
  tests/queue_helpers.py), and the whole worker is also SIGKILLed once mid-generation of a batch without it:
  the batches holding the poison brief halve until it is alone and fails after ``max_brief_attempts``.

It prints each run's time, the batches generated, and the ratio to the unkilled run (targets: <= 2x
killed, <= 3x with the poison brief). Generation must dominate for the ratios to mean what they say: run it with
the real model (``--model`` a model id or folder, ``--new-tokens`` 256); the default tiny random model
(tests/tiny_model.py) only checks that it works, and its ratios are mostly process start-up.

    python bench/recovery.py                                   # tiny model: a quick check
    python bench/recovery.py --model ~/.cache/copydesk/models/smollm2-135m-instruct-* --new-tokens 256 \
        --dtype auto --kill-after 20   # the converted default model (a local folder: nothing downloads)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from queue_helpers import (  # noqa: E402 (tests/ on the path first)
    Deployment,
    flush_redis,
    make_briefs,
    redis_url,
    wait_until,
    write_briefs,
    write_plugin,
    write_style,
)
from tiny_model import build_tiny_model  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from workload import sample_briefs  # noqa: E402

REDIS_DB = 15  # this bench's own Redis database, flushed before each run
BATCH = 64
POISON_ID = "b-3x"  # sorts among the others (b-3 < b-3x < b-30), not at an end
MARKER = "CRASH-ME"
SHIPPED_WORDS = 300  # target words of the shipped-style briefs


def deployment(root: Path, model: str, args: argparse.Namespace) -> Deployment:
    if args.styles == "shipped":
        styles = ROOT / "styles"  # the shipped styles, their served adapters and generation settings
    else:
        styles = root / "styles"
        write_style(styles, "quick", gates=[], max_new_tokens=args.new_tokens)
    broker_url = None
    if args.broker == "redis":
        broker_url = redis_url(REDIS_DB)
        flush_redis(broker_url)
    settings = {
        "COPYDESK_FLUSH_SIZE": str(BATCH),
        "COPYDESK_MAX_BRIEF_ATTEMPTS": str(args.max_brief_attempts),
        "COPYDESK_RECONCILE_INTERVAL": str(args.reconcile_interval),
        "COPYDESK_DTYPE": args.dtype,
        "COPYDESK_THREADS": str(args.threads),
        **({"COPYDESK_DEFAULT_STYLE": "plain-howto"} if args.styles == "shipped" else {}),
    }
    store_url = f"sqlite:///{root / 'home' / 'copydesk.db'}"
    return Deployment(root, Path(model), styles, write_plugin(root / "plugin"), store_url, broker_url, settings)


def briefs(poison: bool, styles: str) -> list[dict[str, Any]]:
    count = BATCH - 1 if poison else BATCH
    if styles == "shipped":  # 64 distinct briefs of the three shipped styles (bench/workload.py)
        records = [b.model_dump(mode="json", exclude_none=True) for b in sample_briefs(count, SHIPPED_WORDS)]
        category = "home"
    else:
        records = make_briefs("b", count)
        category = "quick-cat"
    if poison:
        records.insert(BATCH // 2, {"id": POISON_ID, "title": f"{MARKER} a poison brief", "category": category})
    return records


def timeline(d: Deployment, started_at: float) -> list[str]:
    """Each generated batch as ``size@start-end`` in seconds since submit (from the workers' phase log)."""
    starts: dict[tuple[int, tuple[str, ...]], float] = {}
    spans = []
    for event in d.phases():
        key = (event["pid"], tuple(event["briefs"]))
        if event["phase"] == "generate":
            starts[key] = event["t"]
        elif event["phase"] == "generated" and key in starts:
            spans.append((starts.pop(key), event["t"], len(key[1])))
    spans += [(t, None, len(key[1])) for key, t in starts.items()]  # killed mid-generation
    return [
        f"{size}@{start - started_at:.0f}-{'killed' if end is None else f'{end - started_at:.0f}'}"
        for start, end, size in sorted(spans)
    ]


def generating(d: Deployment, *, without: str | None = None) -> dict[str, Any]:
    """Wait for a batch to start generating (one without brief ``without`` when given)."""

    def found() -> dict[str, Any] | None:
        events = [e for e in d.phases() if e["phase"] == "generate" and without not in e["briefs"]]
        return events[0] if events else None

    return wait_until(found, timeout=1800, message=lambda: f"no batch started\n{d.logs()}", interval=0.1)


def run(name: str, root: Path, model: str, args: argparse.Namespace) -> dict[str, Any]:
    d = deployment(root, model, args)
    poison = name == "poison"
    env = {**d.phase_env(), **({"COPYDESK_TEST_CRASH_ON_TITLE": MARKER} if poison else {})}
    try:
        worker = d.start_worker("w1", **env)
        started, started_at = time.perf_counter(), time.time()
        job_id = d.submit(write_briefs(root / "briefs.yaml", briefs(poison, args.styles)))["job_id"]
        killed_at: float | None = None
        target: dict[str, Any] | None = None
        if name != "unkilled":
            target = generating(d, without=POISON_ID if poison else None)
            time.sleep(args.kill_after)
            killed_at = time.time() - started_at
            worker.kill()  # the whole worker: main process and pool
            d.start_worker("w1", **env)
        job = d.wait_for_job(job_id, timeout=args.timeout)
        seconds = time.perf_counter() - started
    finally:
        d.kill_all()
    runs = d.runs()
    counts = d.article_counts()
    good = [r["id"] for r in briefs(poison, args.styles) if r["id"] != POISON_ID]
    assert all(counts[b] == 1 for b in good), counts  # none lost, none duplicated
    return {
        "run": name,
        "seconds": seconds,
        "done": job.counts.done,
        "needs_attention": job.counts.needs_attention,  # written, but failing a gate: an editor's call
        "failed": job.counts.failed,
        "batches": [len(r["briefs"]) for r in runs],
        "timeline": timeline(d, started_at),
        # when the whole worker was killed, and the poison-free batch whose start it waited for (s since submit)
        "killed_at": None if killed_at is None else round(killed_at, 1),
        "kill_waited_for": None if target is None else f"{len(target['briefs'])}@{target['t'] - started_at:.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="model id or folder; 'tiny' builds the tiny test model")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the worker (0: torch's default)")
    parser.add_argument("--new-tokens", type=int, default=16, help="max_new_tokens of the style (at least 16)")
    parser.add_argument(
        "--styles",
        choices=["quick", "shipped"],
        default="quick",
        help="quick: one style without adapter or gates, one candidate, --new-tokens; shipped: the repo's styles "
        "with their adapters, candidates and token caps, on 64 distinct bench briefs (a real batch)",
    )
    parser.add_argument("--broker", choices=["redis", "embedded"], default="redis")
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds into generation before the kill")
    parser.add_argument("--reconcile-interval", type=float, default=5.0)
    parser.add_argument("--max-brief-attempts", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--runs", nargs="+", default=["unkilled", "killed", "poison"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recovery-") as tmp:
        model = str(build_tiny_model(Path(tmp) / "tiny-model")) if args.model == "tiny" else args.model
        rows = []
        for name in args.runs:
            row = run(name, Path(tmp) / name, model, args)
            print(json.dumps({**row, "seconds": round(row["seconds"], 1)}), flush=True)
            rows.append(row)
    base = next((r["seconds"] for r in rows if r["run"] == "unkilled"), None)
    print(
        f"\nrecovery: {BATCH} briefs, flush_size {BATCH}, {args.broker} broker, model {args.model}, "
        f"styles {args.styles}, {args.new_tokens} new tokens (quick style), "
        f"killed {args.kill_after:g} s into generation, "
        f"reconcile_interval {args.reconcile_interval:g} s"
    )
    print(
        "| run | seconds | vs unkilled | done | needs attention | failed |"
        " batches generated (size@start-end, s since submit) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = f"{r['seconds'] / base:.2f}x" if base else "-"
        spans = ", ".join(r["timeline"])
        written = f"{r['done']} | {r['needs_attention']} | {r['failed']}"
        print(f"| {r['run']} | {r['seconds']:.1f} | {ratio} | {written} | {spans} |")


if __name__ == "__main__":
    main()
