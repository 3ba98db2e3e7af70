"""Webhooks: refused URLs, one delivery per event, Standard Webhooks signatures, retries by a real worker.

The signatures are checked with the reference implementation (the ``standardwebhooks`` package), not with
copydesk's own code. The end-to-end test runs a real worker and a real ``copydesk serve`` against a local
receiver that fails the first three tries of ``job.completed``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_helpers import Receiver, create_key, receiving, start_server, write_article
from model_fixtures import tiny_model_dir
from queue_helpers import Deployment, DeploymentFiles, make_briefs, wait_until, write_plugin, write_styles
from sqlalchemy.pool import NullPool
from standardwebhooks import Webhook
from store_helpers import FakeClock
from typer.testing import CliRunner

from worker.cli.main import app as cli_app
from worker.config import Settings
from worker.errors import StoreError
from worker.intake.briefs import Brief
from worker.store import Role, Store
from worker.store.webhooks import DeliveryStatus, check_webhook_url
from worker.tasks.webhooks import next_attempt, retry_delay, send, sign

__all__ = ["tiny_model_dir"]  # fixture used by name

REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "https://[fe80::1]/hook",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://0.0.0.0:80/",
    "ftp://example.org/hook",
    "file:///etc/passwd",
    "http:///no-host",
    "http://user:pass@127.0.0.1/hook",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_webhook_urls(url: str) -> None:
    with pytest.raises(StoreError):
        check_webhook_url(url)


def test_link_local_is_allowed_only_by_the_config() -> None:
    assert check_webhook_url("http://169.254.169.254/x", allow_link_local=True)
    assert check_webhook_url("http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"
    assert check_webhook_url("https://localhost/hook")


def test_the_cli_refuses_a_metadata_url(tmp_path: Path) -> None:
    env = {"COPYDESK_HOME": str(tmp_path), "COPYDESK_STORE_URL": None, "COPYDESK_CONFIG": None}
    refused = CliRunner().invoke(
        cli_app, ["webhooks", "add", "http://169.254.169.254/latest", "--events", "job.completed"], env=env
    )
    assert refused.exit_code == 7, refused.output
    assert "link-local or metadata address" in refused.output
    unknown = CliRunner().invoke(cli_app, ["webhooks", "add", "http://127.0.0.1/", "-e", "job.exploded"], env=env)
    assert unknown.exit_code == 7 and "job.exploded" in unknown.output
    listed = CliRunner().invoke(cli_app, ["webhooks", "list", "--json"], env=env)
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_an_event_is_delivered_once_per_subscribed_endpoint(store: Store) -> None:
    done = store.add_webhook("http://127.0.0.1:9/a", ["job.completed", "job.failed"])
    other = store.add_webhook("http://127.0.0.1:9/b", ["article.approved"])
    gone = store.add_webhook("http://127.0.0.1:9/c", ["job.completed"])
    store.remove_webhook(gone.id)
    first = store.record_event("job.completed", {"job_id": "j1"}, event_key="job.completed:j1")
    again = store.record_event("job.completed", {"job_id": "j1"}, event_key="job.completed:j1")
    assert len(first) == 1 and again == []
    delivery = store.get_delivery(first[0])
    assert delivery.endpoint_id == done.id and delivery.status == DeliveryStatus.PENDING
    assert delivery.payload["type"] == "job.completed" and delivery.payload["data"] == {"job_id": "j1"}
    assert store.list_deliveries(endpoint_id=other.id) == []
    assert store.due_deliveries() == first
    with pytest.raises(StoreError):
        store.record_event("job.exploded", {}, event_key="x")


def test_signatures_verify_with_the_standard_webhooks_reference() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"job.completed","data":{"job_id":"j1"}}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp)}
    headers["webhook-signature"] = sign(secret, "msg_1", timestamp, body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    reference = Webhook(secret).sign("msg_1", datetime.fromtimestamp(timestamp, UTC), body.decode())
    assert headers["webhook-signature"] == reference
    tampered = {**headers, "webhook-id": "msg_2"}
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(body, tampered)


def test_retries_back_off_for_at_least_the_window(store: Store) -> None:
    settings = Settings(home=Path("/tmp"), webhook_retry_base_seconds=5, webhook_retry_hours=24)
    assert [retry_delay(n, 5) for n in (1, 2, 3, 4)] == [5, 20, 80, 320]
    assert retry_delay(20, 5) == 3 * 3600
    store.add_webhook("http://127.0.0.1:9/a", ["job.failed"])
    [message_id] = store.record_event("job.failed", {}, event_key="job.failed:j")
    delivery = store.get_delivery(message_id)
    waited, attempt, at = 0.0, 1, delivery.created_at
    while (following := next_attempt(delivery, attempt, settings, at)) is not None:
        waited += (following - at).total_seconds()
        at, attempt = following, attempt + 1
    assert waited >= 21 * 3600 and attempt >= 10, (waited, attempt)


# ------------------------------------------------------------------------------------------- receiver


def test_send_records_each_attempt_and_stops_after_success(store_url: str) -> None:
    settings = Settings(home=Path("/tmp"), webhook_retry_base_seconds=0.01)
    receiver = Receiver(fail_first={"job.completed": 2})
    store = Store(store_url)  # the real clock: send() times retries with it
    store.migrate()
    with receiving(receiver) as url:
        endpoint = store.add_webhook(url, ["job.completed"])
        [message_id] = store.record_event("job.completed", {"job_id": "j"}, event_key="job.completed:j")
        outcomes = [send(store, settings, store.get_delivery(message_id)).status for _ in range(3)]
    assert outcomes == [DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.DELIVERED]
    attempts = store.list_attempts(message_id)
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 204, None),
    ]
    for request in receiver.received:
        assert Webhook(endpoint.secret).verify(request["body"], request["headers"])
        assert request["headers"]["webhook-id"] == message_id


# ---------------------------------------------------------------------------------- with a real worker


def deliveries(d: Deployment) -> dict[str, dict[str, Any]]:
    result = d.cli("webhooks", "deliveries", "--json", "--limit", "1000")
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in json.loads(result.stdout)}


def test_a_real_worker_delivers_signed_events_with_retries(tmp_path: Path, tiny_model_dir: Path) -> None:
    files = DeploymentFiles(write_styles(tmp_path / "files"), write_plugin(tmp_path / "files" / "plugin"))
    d = Deployment(
        tmp_path / "deployment",
        tiny_model_dir,
        files.styles,
        files.plugin,
        f"sqlite:///{tmp_path / 'deployment' / 'home' / 'copydesk.db'}",
        settings={"COPYDESK_WEBHOOK_RETRY_BASE_SECONDS": "0.3"},
    )
    receiver = Receiver(fail_first={"job.completed": 3})
    with receiving(receiver) as url:
        added = d.cli("webhooks", "add", url, "-e", "job.completed,article.needs_review", "-e", "article.approved")
        assert added.exit_code == 0, added.output
        secret = added.stdout.split("signing secret: ", 1)[1].split()[0]
        submitter = create_key(d, "cms", Role.SUBMITTER)
        editor = create_key(d, "night-desk", Role.EDITOR)
        server = start_server(d)
        try:
            d.start_worker()
            body = "".join(json.dumps(b) + "\n" for b in make_briefs("hook", 2))
            with server.client(submitter) as client:
                submitted = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/x-ndjson"})
                assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["job_id"]
            d.wait_for_job(job_id, timeout=180)
            wait_until(
                lambda: any(r["status"] == 204 for r in receiver.of("job.completed")),
                timeout=90,
                message=lambda: f"job.completed never delivered: {deliveries(d)}\n{d.logs()}",
            )
            with server.client(editor) as client:
                approved = client.post("/v1/articles/hook-0/approve", json={"revision": 1})
                assert approved.status_code == 200, approved.text
            wait_until(lambda: receiver.of("article.approved"), timeout=60, message=lambda: d.logs())
            wait_until(lambda: len(receiver.of("article.needs_review")) >= 2, timeout=60, message=lambda: d.logs())
        finally:
            server.stop()
            d.kill_all()

    for request in receiver.received:
        assert Webhook(secret).verify(request["body"], request["headers"]), request
    completed = receiver.of("job.completed")
    assert [r["status"] for r in completed] == [500, 500, 500, 204]
    assert len({r["headers"]["webhook-id"] for r in completed}) == 1
    assert json.loads(completed[0]["body"])["data"]["job_id"] == job_id
    rows = deliveries(d)
    row = rows[completed[0]["headers"]["webhook-id"]]
    assert row["status"] == "delivered" and row["event_type"] == "job.completed"
    assert [a["status_code"] for a in row["attempts"]] == [500, 500, 500, 204]
    review = receiver.of("article.needs_review")
    assert sorted(json.loads(r["body"])["data"]["brief_id"] for r in review) == ["hook-0", "hook-1"]
    assert all(r["status"] == 204 for r in review)
    [approval] = receiver.of("article.approved")
    assert json.loads(approval["body"])["data"] == {
        "article_id": "a-hook-0",
        "brief_id": "hook-0",
        "revision": 1,
        "by": "night-desk",
    }
    assert len(rows) == 4 and all(r["status"] == "delivered" for r in rows.values()), rows


def test_a_delivery_is_sent_by_one_sender_at_a_time(store: Store, clock: FakeClock) -> None:
    store.add_webhook("http://127.0.0.1:9/a", ["job.failed"])
    [message_id] = store.record_event("job.failed", {}, event_key="job.failed:j")
    assert store.due_deliveries() == [message_id]
    assert store.due_deliveries(overdue_seconds=10) == []
    clock.advance(10)
    assert store.due_deliveries(overdue_seconds=10) == [message_id]
    assert store.claim_delivery(message_id, lease_seconds=15) is not None
    assert store.claim_delivery(message_id, lease_seconds=15) is None  # a second copy of the message
    assert store.due_deliveries() == []  # held: the sweep leaves it alone
    clock.advance(16)  # the sender died: its lease ran out
    assert store.due_deliveries() == [message_id]
    assert store.claim_delivery(message_id, lease_seconds=15) is not None
    store.record_attempt(message_id, started_at=clock.now, status_code=204, error=None, seconds=0.1,
                         delivered=True, next_attempt_at=None)  # fmt: skip
    clock.advance(3600)
    assert store.claim_delivery(message_id, lease_seconds=15) is None and store.due_deliveries() == []


def test_a_worker_killed_mid_delivery_leads_to_one_resend_with_the_same_id(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    files = DeploymentFiles(write_styles(tmp_path / "files"), write_plugin(tmp_path / "files" / "plugin"))
    d = Deployment(
        tmp_path / "deployment",
        tiny_model_dir,
        files.styles,
        files.plugin,
        f"sqlite:///{tmp_path / 'deployment' / 'home' / 'copydesk.db'}",
        settings={"COPYDESK_STALE_AFTER": "2"},
    )
    receiver = Receiver(hold_first={"article.approved": 60})
    with receiving(receiver) as url:
        assert d.cli("webhooks", "add", url, "-e", "article.approved").exit_code == 0
        editor = create_key(d, "desk", Role.EDITOR)
        with Store(d.store_url) as store:
            write_article(store, "kill-1")
        server = start_server(d)
        try:
            first = d.start_worker("w1")
            with server.client(editor) as client:
                approved = client.post("/v1/articles/kill-1/approve", json={"revision": 1})
                assert approved.status_code == 200, approved.text
            wait_until(lambda: receiver.of("article.approved"), timeout=60, message=lambda: d.logs())
            first.kill()  # SIGKILL the whole worker while its request waits for an answer
            d.start_worker("w2")
            wait_until(
                lambda: len(receiver.of("article.approved")) >= 2,
                timeout=90,
                message=lambda: f"never sent again: {deliveries(d)}\n{d.logs()}",
            )
            wait_until(
                lambda: next(iter(deliveries(d).values()))["status"] == "delivered",
                timeout=30,
                message=lambda: str(deliveries(d)),
            )
        finally:
            server.stop()
            d.kill_all()
    sent = receiver.of("article.approved")
    assert len(sent) == 2, sent
    assert sent[0]["headers"]["webhook-id"] == sent[1]["headers"]["webhook-id"]
    assert sent[0]["body"] == sent[1]["body"]
    [row] = deliveries(d).values()
    assert row["id"] == sent[0]["headers"]["webhook-id"] and row["status"] == "delivered"
    assert [a["status_code"] for a in row["attempts"]] == [204]  # the killed send left no attempt behind


def test_the_cli_raises_the_same_events_as_the_api(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"COPYDESK_HOME": str(home), "COPYDESK_STORE_URL": None, "COPYDESK_CONFIG": None, "COPYDESK_BROKER_URL": None}
    runner = CliRunner()
    added = runner.invoke(cli_app, ["webhooks", "add", "http://127.0.0.1:9/h", "-e", "article.approved,job.cancelled"],
                          env=env)  # fmt: skip
    assert added.exit_code == 0, added.output
    url = f"sqlite:///{home / 'copydesk.db'}"
    with Store(url) as store:
        write_article(store, "cli-1")
        job = store.create_job([(Brief(id="cli-2", title="How to cancel a job", target_words=50), None)])
    approved = runner.invoke(cli_app, ["approve", "cli-1", "--as", "rita"], env=env)
    assert approved.exit_code == 0, approved.output
    cancelled = runner.invoke(cli_app, ["cancel", job.job_id], env=env)
    assert cancelled.exit_code == 0, cancelled.output
    with Store(url) as store:
        rows = {d.event_type: d for d in store.list_deliveries()}
    assert set(rows) == {"article.approved", "job.cancelled"}
    assert rows["article.approved"].payload["data"] == {
        "article_id": "a-cli-1",
        "brief_id": "cli-1",
        "revision": 1,
        "by": "rita",
    }
    assert rows["job.cancelled"].payload["data"]["job_id"] == job.job_id
    engine = sa.create_engine(f"sqlite:///{home / 'broker.db'}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            bodies = [row[0] for row in conn.execute(sa.text("SELECT payload FROM kombu_message"))]
    finally:
        engine.dispose()
    published = "\n".join(str(b) for b in bodies)
    assert rows["article.approved"].id in published and rows["job.cancelled"].id in published
