"""Job expiry (``completion_window``): with a controlled clock in the store, then end to end through the API,
a worker's reconciler and a ``job.expired`` webhook."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from api_helpers import Receiver, create_key, read_jsonl, receiving, start_server
from model_fixtures import tiny_model_dir
from queue_helpers import (
    Deployment,
    WorkerProcess,
    copydesk_command,
    make_briefs,
    wait_until,
    write_briefs,
    write_plugin,
    write_styles,
)
from store_helpers import FakeClock

from worker.errors import ConfigError
from worker.intake.briefs import Brief
from worker.results import ArticleResult, ArticleStatus, BriefStatus
from worker.store import JobStatus, Role, Store
from worker.store.expiry import EXPIRED_ERROR, parse_completion_window

__all__ = ["tiny_model_dir"]  # fixture used by name


def briefs(prefix: str, count: int) -> list[tuple[Brief, str | None]]:
    return [
        (Brief(id=f"{prefix}-{i}", title=f"How to expire {prefix} {i}", target_words=50), None) for i in range(count)
    ]


def article(brief_id: str) -> ArticleResult:
    return ArticleResult(
        brief_id=brief_id,
        status=ArticleStatus.NEEDS_REVIEW,
        title="A title",
        body_markdown="# A title\n\nText.\n",
        style="quick",
        adapter_version=None,
        scores={},
        failing_gates=[],
        provenance={},
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("90m", 5400), ("2d", 172800), ("30s", 30), (" 1h ", 3600)]
)
def test_parse_completion_window(text: str, seconds: int) -> None:
    assert parse_completion_window(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "0s", "31d", "1.5h", "1w", "1h30m", "1e3s"])
def test_bad_completion_windows(text: str) -> None:
    with pytest.raises(ConfigError, match="completion window"):
        parse_completion_window(text)


def test_briefs_not_started_expire_running_ones_finish(store: Store, clock: FakeClock) -> None:
    submission = store.create_job(briefs("ex", 3))
    expires_at = store.set_completion_window(submission.job_id, timedelta(hours=1))
    assert store.get_job(submission.job_id).expires_at == expires_at == clock.now + timedelta(hours=1)
    clock.advance(1800)
    assert store.expire_jobs() == {}
    assert store.claim_brief("ex-0", owner="w", lease_seconds=7200, max_attempts=3) is not None
    clock.advance(1801)
    assert store.expire_jobs() == {submission.job_id: 2}
    assert store.claim_brief("ex-1", owner="w", lease_seconds=60, max_attempts=3) is None  # expired: not claimable
    job = store.get_job(submission.job_id)
    assert job.status == JobStatus.IN_PROGRESS and (job.counts.running, job.counts.expired) == (1, 2), job
    store.save_article(article("ex-0"), owner="w")
    job = store.get_job(submission.job_id)
    assert job.status == JobStatus.EXPIRED and (job.counts.done, job.counts.expired) == (1, 2), job
    assert job.finished_at == clock.now
    results = {r.brief_id: r for r in store.job_results(submission.job_id)}
    assert results["ex-0"].status == BriefStatus.DONE and results["ex-0"].article is not None
    assert results["ex-1"].status == BriefStatus.EXPIRED and results["ex-1"].error == EXPIRED_ERROR
    assert store.expire_jobs() == {}


def test_a_job_without_a_window_never_expires_and_an_expired_brief_can_be_resubmitted(
    store: Store, clock: FakeClock
) -> None:
    plain = store.create_job(briefs("keep", 2))
    windowed = store.create_job(briefs("gone", 1))
    store.set_completion_window(windowed.job_id, timedelta(seconds=10))
    clock.advance(365 * 86400)
    assert store.expire_jobs() == {windowed.job_id: 1}
    assert store.get_job(plain.job_id).status == JobStatus.IN_PROGRESS
    assert store.get_job(windowed.job_id).status == JobStatus.EXPIRED
    again = store.create_job(briefs("gone", 1))
    assert again.requeued == ["gone-0"] and store.get_brief("gone-0").status == BriefStatus.QUEUED


def test_a_shared_brief_stays_queued_while_another_live_job_wants_it(store: Store, clock: FakeClock) -> None:
    first = store.create_job(briefs("sh", 3))
    store.set_completion_window(first.job_id, timedelta(hours=1))
    open_ended = store.create_job(briefs("sh", 1))  # sh-0 again, no window
    later = store.create_job(briefs("sh", 2)[1:])  # sh-1 again, a later window
    store.set_completion_window(later.job_id, timedelta(hours=3))
    assert (open_ended.already_queued, later.already_queued) == (["sh-0"], ["sh-1"])
    clock.advance(3601)
    assert store.expire_jobs() == {first.job_id: 1}
    status = {i: store.get_brief(f"sh-{i}").status for i in range(3)}
    assert status == {0: BriefStatus.QUEUED, 1: BriefStatus.QUEUED, 2: BriefStatus.EXPIRED}
    assert store.get_job(first.job_id).status == JobStatus.IN_PROGRESS  # waits for the briefs others want
    assert store.expire_jobs() == {}  # the next reconciler pass leaves them alone too
    clock.advance(3 * 3600)  # the later window passes as well: nothing wants sh-1 now
    assert sum(store.expire_jobs().values()) == 1
    assert store.get_brief("sh-1").status == BriefStatus.EXPIRED
    assert store.get_brief("sh-0").status == BriefStatus.QUEUED  # the job without a window still wants it
    assert store.get_job(later.job_id).status == JobStatus.EXPIRED
    assert store.claim_brief("sh-0", owner="w", lease_seconds=60, max_attempts=3) is not None
    store.save_article(article("sh-0"), owner="w")
    assert store.get_job(open_ended.job_id).status == JobStatus.COMPLETED
    job = store.get_job(first.job_id)
    assert job.status == JobStatus.EXPIRED and (job.counts.done, job.counts.expired) == (1, 2), job


def test_a_brief_shared_with_a_cancelled_job_still_expires(store: Store, clock: FakeClock) -> None:
    windowed = store.create_job(briefs("cx", 1))
    store.set_completion_window(windowed.job_id, timedelta(minutes=5))
    cancelled = store.create_job(briefs("cx", 1))
    store.cancel_job(cancelled.job_id)  # windowed still holds cx-0: it stays queued for it
    assert store.get_brief("cx-0").status == BriefStatus.QUEUED
    clock.advance(301)
    assert store.expire_jobs() == {windowed.job_id: 1}
    assert store.get_brief("cx-0").status == BriefStatus.EXPIRED


def test_the_cli_sets_the_window(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from worker.cli.main import app as cli_app

    env = {"COPYDESK_HOME": str(tmp_path / "home"), "COPYDESK_STORE_URL": None, "COPYDESK_CONFIG": None}
    path = write_briefs(tmp_path / "b.yaml", make_briefs("cw", 1))
    bad = CliRunner().invoke(cli_app, ["submit", str(path), "--completion-window", "soon"], env=env)
    assert bad.exit_code == ConfigError.exit_code and "invalid completion window" in bad.output
    ok = CliRunner().invoke(cli_app, ["submit", str(path), "--json", "--completion-window", "2h"], env=env)
    assert ok.exit_code == 0, ok.output
    job_id = json.loads(ok.stdout)["job_id"]
    with Store(f"sqlite:///{tmp_path / 'home' / 'copydesk.db'}") as store:
        job = store.get_job(job_id)
    assert job.expires_at is not None and job.expires_at - job.created_at == timedelta(hours=2)


def start_reconciling_worker(d: Deployment) -> WorkerProcess:
    """A worker consuming only the train queue: its reconciler runs, but it writes no brief."""
    log_path = d.root / "worker-reconciler.log"
    command = [*copydesk_command(), "-v", "worker", "--queues=train", "--name=rec@%h", "--loglevel=INFO"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=d.process_env("rec", {}),
            cwd=d.root,
            start_new_session=True,
        )
    worker = WorkerProcess("rec", process, log_path)
    d.workers.append(worker)
    worker.wait_ready()
    return worker


def test_an_api_job_expires_through_the_reconciler_and_fires_its_webhook(tmp_path: Path, tiny_model_dir: Path) -> None:
    files = tmp_path / "files"
    d = Deployment(
        tmp_path / "d",
        tiny_model_dir,
        write_styles(files),
        write_plugin(files / "plugin"),
        f"sqlite:///{tmp_path / 'd' / 'home' / 'copydesk.db'}",
    )
    receiver = Receiver()
    with receiving(receiver) as url:
        assert d.cli("webhooks", "add", url, "-e", "job.expired,job.completed").exit_code == 0
        key = create_key(d, "cms", Role.SUBMITTER)
        server = start_server(d)
        try:
            body = "".join(json.dumps(b) + "\n" for b in make_briefs("late", 3))
            with server.client(key) as client:
                bad = client.post("/v1/jobs", params={"completion_window": "forever"}, content=body,
                                  headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
                assert bad.status_code == 422 and "completion window" in bad.text, bad.text
                response = client.post("/v1/jobs", params={"completion_window": "1s"}, content=body,
                                       headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
                assert response.status_code == 201, response.text
                job_id = response.json()["job_id"]
                assert response.json()["job"]["expires_at"] is not None
                start_reconciling_worker(d)

                def expired() -> bool:
                    return client.get(f"/v1/jobs/{job_id}").json()["status"] == "expired"

                wait_until(expired, timeout=60, message=lambda: d.logs())
                lines = read_jsonl(client.get(f"/v1/jobs/{job_id}/results").text)
                d.start_worker()  # deliveries go to the generate queue; the expired briefs' messages do nothing
                wait_until(lambda: receiver.of("job.expired"), timeout=60, message=lambda: d.logs())
        finally:
            server.stop()
            d.kill_all()
    assert [(line["custom_id"], line["brief_status"]) for line in lines] == [
        ("late-0", "expired"),
        ("late-1", "expired"),
        ("late-2", "expired"),
    ]
    assert all(line["error"] == EXPIRED_ERROR for line in lines)
    [event] = receiver.of("job.expired")
    data = json.loads(event["body"])["data"]
    assert data["job_id"] == job_id and data["counts"]["expired"] == 3, data
    assert receiver.of("job.completed") == []
    assert sum(d.generations().values()) == 0, "an expired brief was generated"
