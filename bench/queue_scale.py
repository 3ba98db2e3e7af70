"""Cost that stays flat: per-brief queue and store overhead of a job of 100, 1,000 and 10,000 briefs.

Each size is one job through Redis and PostgreSQL (a fresh schema) with two real ``copydesk worker`` processes
(prefork, one pool process each) and the tiny random test model (tests/tiny_model.py), so that generation is
not what is measured. Briefs go to a style without gates that writes ``--new-tokens`` tokens, one candidate.

Per size it measures

* ``submit``: ``copydesk submit`` (record the job and its briefs, publish one message each), per brief;
* ``work``: seconds the workers' tasks spent outside ``Pipeline.run`` (claims and leases, companions, the
  article rows and files, tasks for briefs already taken), per brief: the sum of Celery's task run times
  ("succeeded in N s" in the worker logs) minus the time inside the pipeline (generation and scoring), from
  the workers' phase log (tests/queue_helpers.py's test hooks). ``flush_interval`` is 0, so no task waits for
  companions, and the job's wall time (two workers; read to within the bench's poll interval, up to 3 s) is
  printed for reference;
* ``results``: ``copydesk results --format jsonl`` (streamed), per brief;

and prints the table with each size's total overhead per brief against the smallest (target: within 1.2x).
The workers first write an 8-brief warm-up job (model loading is not a per-brief cost), not counted.

    python bench/queue_scale.py                       # 100, 1000, 10000 (the lead's run)
    python bench/queue_scale.py --sizes 20 100        # a quick check that it runs
    python bench/queue_scale.py --store sqlite --broker embedded
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    write_briefs,
    write_plugin,
    write_style,
)
from store_helpers import fresh_postgres_schema  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

REDIS_DB = 14  # this bench's own Redis database, flushed before each size


@contextmanager
def store_url_for(kind: str, root: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{root / 'home' / 'copydesk.db'}"
        return
    with fresh_postgres_schema("bench") as url:
        yield url


def deployment(root: Path, model_dir: Path, args: argparse.Namespace, store_url: str) -> Deployment:
    styles = root / "styles"
    write_style(styles, "quick", gates=[], max_new_tokens=args.new_tokens)
    broker_url = None
    if args.broker == "redis":
        broker_url = redis_url(REDIS_DB)
        flush_redis(broker_url)
    settings = {
        "COPYDESK_FLUSH_SIZE": str(args.flush_size),
        "COPYDESK_FLUSH_INTERVAL": "0",
        "COPYDESK_STALE_AFTER": "300",
    }
    return Deployment(root, model_dir, styles, write_plugin(root / "plugin"), store_url, broker_url, settings)


def pipeline_seconds(d: Deployment, start: int) -> tuple[int, float]:
    """Batches and seconds spent inside Pipeline.run, summed over every batch from phase-log event ``start`` on
    (generate .. generated)."""
    started: dict[int, float] = {}
    total, batches = 0.0, 0
    for event in d.phases(start):
        if event["phase"] == "generate":
            started[event["pid"]] = event["t"]
            batches += 1
        elif event["phase"] == "generated" and event["pid"] in started:
            total += event["t"] - started.pop(event["pid"])
    return batches, total


TASK_TIME = re.compile(r"Task copydesk\.write_brief\[[^\]]+\] succeeded in ([0-9.eE+-]+)s")


def task_seconds(d: Deployment, skip: dict[str, int]) -> tuple[int, float]:
    """How many write_brief tasks the workers ran, and their summed run times (Celery's own figure), after the
    first ``skip[worker]`` characters of each worker's log."""
    times = [float(m) for w in d.workers for m in TASK_TIME.findall(w.log(0)[skip.get(w.name, 0) :])]
    return len(times), sum(times)


def poll_interval(size: int) -> float:
    """Seconds between the bench's own job-status polls (each counts the job's briefs): about 20 polls per
    minute of a 10,000-brief job instead of 200, so that the bench's queries stay a small share of the store's."""
    return min(3.0, max(0.3, size / 3000))


def warm_up(d: Deployment, root: Path) -> tuple[dict[str, int], int]:
    """Run a small job first, so that each worker has loaded its model: return where the logs end."""
    job_id = d.submit(write_briefs(root / "warm-up.yaml", make_briefs("warm", 8)))["job_id"]
    d.wait_for_job(job_id, timeout=600)
    return {w.name: len(w.log(0)) for w in d.workers}, len(d.phases())


def measure(size: int, root: Path, model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with store_url_for(args.store, root) as store_url:
        d = deployment(root, model_dir, args, store_url)
        try:
            for name in ("w1", "w2"):
                d.start_worker(name, **d.phase_env())
            logs_at, phases_at = warm_up(d, root)
            path = write_briefs(root / "briefs.yaml", make_briefs("b", size))
            started = time.perf_counter()
            job_id = d.submit(path)["job_id"]
            submitted = time.perf_counter()
            job = d.wait_for_job(job_id, timeout=args.timeout, interval=poll_interval(size))
            finished = time.perf_counter()
            lines = d.results(job_id)
            read = time.perf_counter()
        finally:
            d.kill_all()
        assert job.counts.done == size and len(lines) == size, (job, len(lines), lines[0].get("error"))
        wall = finished - submitted
        batches, inside = pipeline_seconds(d, phases_at)
        tasks, in_tasks = task_seconds(d, logs_at)
        return {
            "briefs": size,
            "batches": batches,
            "tasks": tasks,
            "submit_ms": 1000 * (submitted - started) / size,
            "job_wall_s": wall,
            "pipeline_s": inside,
            "work_ms": 1000 * (in_tasks - inside) / size,
            "results_ms": 1000 * (read - finished) / size,
        }


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["submit_ms"] + rows[0]["work_ms"] + rows[0]["results_ms"]
    lines = [
        "| briefs | batches | tasks | submit ms/brief | job wall s | in pipeline s | worker overhead ms/brief "
        "| results ms/brief | overhead ms/brief | vs smallest |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = r["submit_ms"] + r["work_ms"] + r["results_ms"]
        lines.append(
            f"| {r['briefs']:,} | {r['batches']} | {r['tasks']} | {r['submit_ms']:.2f} | {r['job_wall_s']:.1f} "
            f"| {r['pipeline_s']:.1f} | {r['work_ms']:.1f} | {r['results_ms']:.2f} | {total:.1f} "
            f"| {total / base:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--broker", choices=["redis", "embedded"], default="redis")
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--flush-size", type=int, default=32, help="briefs per task batch (default 32)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per draft (default 16, the least)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds to wait for one job")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="queue-scale-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny-model")
        rows = []
        for size in args.sizes:
            row = measure(size, Path(tmp) / f"size-{size}", model_dir, args)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            rows.append(row)
    print(f"\nqueue scale: {args.broker} broker, {args.store} store, 2 workers, tiny model, flush {args.flush_size}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
