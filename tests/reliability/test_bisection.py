"""Recovery that keeps batching: a poison brief in a batch of 64, with a real ``copydesk worker`` (prefork pool,
tiny model, embedded broker) and the test hook that kills the pool process whenever its batch holds the brief.

The crashed batch is queued again in halves (the reconciler's pass), each half is claimed whole, and the half
that holds the poison brief crashes again: after log2(64) = 6 crashes it is alone and its counted attempts end
it (``max_brief_attempts``), while the 63 good briefs are each written exactly once, all but one in batches.
The in-process version with exact rounds on SQLite and PostgreSQL is tests/queue/test_recovery.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import Deployment, make_briefs, write_briefs
from store_fault_helpers import deploy, reliability_files, settle

from worker.store import JobCounts

__all__ = ["deploy", "reliability_files", "tiny_model_dir"]  # fixtures used by name

BATCH = 64
ATTEMPTS = 3


def test_bisection_isolates_a_poison_brief_in_a_batch_of_64(
    deploy: Callable[..., Deployment], ledger: Ledger, tmp_path: Path
) -> None:
    row = ledger.row(
        "poison and hang",
        "poison brief in a batch of 64 (bisection)",
        injection="test hook: os._exit(1) in the pool process whenever the batch holds the poison brief; "
        f"flush_size {BATCH}, max_brief_attempts {ATTEMPTS}; 63 good briefs",
        checked="the crashed batch is retried in halves (64, 32, ..., 2: not counted), then the poison brief alone "
        f"until {ATTEMPTS} counted attempts fail it; the 63 others written once each, in batches (one alone at most)",
    )
    d = deploy(max_brief_attempts=ATTEMPTS, flush_size=BATCH)
    good = make_briefs("good", BATCH - 1)
    poison = {"id": "good-3x", "title": "CRASH-ME bring a worker down", "category": "quick-cat", "target_words": 50}
    ids = [r["id"] for r in good]
    worker = d.start_worker(COPYDESK_TEST_CRASH_ON_TITLE="CRASH-ME")
    job_id = d.submit(write_briefs(tmp_path / "bisect.yaml", [*good[:30], poison, *good[30:]]))["job_id"]

    job = settle(d, job_id, timeout=600)
    lost, duplicates = lost_and_duplicated(d.article_counts(), ids)
    runs = d.runs()
    with_poison = [len(run["briefs"]) for run in runs if "good-3x" in run["briefs"]]
    row.add(runs=1, faults=len(with_poison), briefs=BATCH, lost=lost, duplicates=duplicates, crashes=0)

    assert job.counts == JobCounts(total=BATCH, done=BATCH - 1, failed=1), (job, d.brief_rows(), d.logs())
    assert (lost, duplicates) == (0, 0), (d.article_counts(), d.logs())
    halvings = int(math.log2(BATCH))
    assert with_poison == [BATCH >> k for k in range(halvings)] + [1] * (ATTEMPTS - 1), runs
    rows = d.brief_rows()
    assert rows["good-3x"]["status"] == "failed" and rows["good-3x"]["attempts"] == ATTEMPTS, rows["good-3x"]
    assert rows["good-3x"]["last_error"].startswith(f"gave up after {ATTEMPTS} attempts"), rows["good-3x"]
    good_runs = sorted(len(run["briefs"]) for run in runs if "good-3x" not in run["briefs"])
    assert good_runs == [1 << k for k in range(halvings)], runs  # the other halves ran as batches
    assert sorted(rows[i]["attempts"] for i in ids) == [1] * (BATCH - 2) + [2], rows  # only its last partner: 2
    assert worker.alive(), worker.log()
