"""The HTTP API and webhooks under faults: hostile and oversized bodies against a real ``copydesk serve``, a worker
SIGKILLed while a webhook delivery waits for its answer, and a job submitted over the API while its worker is
killed once.

The server and workers are real processes on one deployment (:func:`api_helpers.api_deployment`: SQLite store,
embedded broker, the tiny random model); the helpers and the hostile-body strategies are those of
``tests/api``. Figures come from the HTTP answers, the store, the webhook receiver and the process table.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_helpers import (
    ApiServer,
    Receiver,
    api_deployment,
    create_key,
    hostile_bodies,
    hostile_endpoints,
    post_oversized,
    read_jsonl,
    receiving,
    start_server,
    write_article,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import Deployment, make_briefs, wait_until

from worker.store import Role, Store

__all__ = ["tiny_model_dir"]  # fixture used by name

API = "API"
WEBHOOKS = "webhooks"
BODY_LIMIT = 64 * 1024
HOSTILE_EXAMPLES = 300
OVERSIZED = 40 * 1024 * 1024
NDJSON = {"Content-Type": "application/x-ndjson"}


@dataclass
class Api:
    deployment: Deployment
    server: ApiServer
    submitter: str
    editor: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server with a small body limit and no worker (nothing here is generated)."""
    limits = {"COPYDESK_API_MAX_BODY_BYTES": str(BODY_LIMIT), "COPYDESK_API_MAX_BRIEFS": "5"}
    d = api_deployment(tmp_path_factory.mktemp("api-faults"), **limits)
    submitter, editor = create_key(d, "rel-sub", Role.SUBMITTER), create_key(d, "rel-ed", Role.EDITOR)
    with Store(d.store_url) as store:
        write_article(store, "rel-1")
    server = start_server(d)
    try:
        yield Api(d, server, submitter, editor)
    finally:
        server.stop()


def test_hostile_http_bodies(api: Api, ledger: Ledger) -> None:
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    with api.server.client(api.editor) as client:

        @settings(
            max_examples=HOSTILE_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(body=hostile_bodies, endpoint=st.sampled_from(hostile_endpoints("rel-1")))
        def send(body: bytes, endpoint: tuple[str, str, str]) -> None:
            method, path, content_type = endpoint
            response = client.request(method, path, content=body, headers={"Content-Type": content_type})
            statuses[response.status_code] += 1
            try:
                shaped = isinstance(response.json(), dict | list)
            except ValueError:
                shaped = False
            if response.status_code >= 500 or not shaped:
                errors.append(f"{path} {body[:120]!r}: {response.status_code} {response.text[:300]}")

        send()
        health = client.get("/v1/health").status_code
    crashes = len(errors) + (0 if api.server.alive() else 1)
    ledger.row(
        API,
        "hostile HTTP bodies",
        injection=f"hypothesis: {HOSTILE_EXAMPLES} bodies (random JSON, brief-like lists and JSON lines with "
        "ill-typed fields and traversal styles, random bytes, 3,000-deep nesting) POSTed to a real copydesk serve: "
        "job submission (JSON and JSON lines) and the three review decisions",
        checked="every answer below 500 with one JSON error shape; the server process alive and healthy after",
    ).add(faults=sum(statuses.values()), crashes=crashes)
    assert not errors, errors[:5]
    assert api.server.alive() and health == 200
    assert sum(statuses.values()) >= HOSTILE_EXAMPLES // 2, statuses


def test_oversized_bodies(api: Api, ledger: Ledger) -> None:
    before = api.server.rss()
    with api.server.client(api.editor) as client:
        sent = post_oversized(client, size=OVERSIZED, limit=BODY_LIMIT, article_id="rel-1")
        after_health = client.get("/v1/health").status_code
    grown = api.server.rss() - before
    refused = [name for name, status in sent.statuses.items() if status in (413, None)]
    crashes = 0 if api.server.alive() else 1
    ledger.row(
        API,
        "oversized bodies",
        injection=f"a body of twice the limit ({BODY_LIMIT // 1024} KiB) with Content-Length, and "
        f"{OVERSIZED // 2**20} MiB chunked (no Content-Length) to job submission and to an approval",
        checked="413 PayloadTooLarge before the body is read (the chunked sender stopped short of its size); the "
        "server's resident memory grew by under a quarter of one body; server alive",
    ).add(faults=len(sent.statuses), crashes=crashes)
    assert refused == list(sent.statuses), sent
    assert sent.declared_error == "PayloadTooLarge" and sent.sent < OVERSIZED, sent
    assert grown < OVERSIZED // 4, f"the server grew by {grown} bytes for {OVERSIZED}-byte bodies"
    assert api.server.alive() and after_health == 200


def test_a_worker_killed_mid_webhook_delivery(tmp_path: Path, tiny_model_dir: Path, ledger: Ledger) -> None:
    d = api_deployment(tmp_path, tiny_model_dir, COPYDESK_STALE_AFTER="2")
    receiver = Receiver(hold_first={"article.approved": 60})
    with receiving(receiver) as url:
        assert d.cli("webhooks", "add", url, "-e", "article.approved").exit_code == 0
        editor = create_key(d, "desk", Role.EDITOR)
        with Store(d.store_url) as store:
            write_article(store, "hook-1")
        server = start_server(d)
        try:
            first = d.start_worker("w1")
            with server.client(editor) as client:
                assert client.post("/v1/articles/hook-1/approve", json={"revision": 1}).status_code == 200
            wait_until(lambda: receiver.of("article.approved"), timeout=60, message=lambda: d.logs())
            first.kill()  # the whole worker, while its request waits for the receiver's answer
            second = d.start_worker("w2")
            wait_until(
                lambda: any(r["status"] == 204 for r in receiver.of("article.approved")),
                timeout=90,
                message=lambda: f"never sent again\n{d.logs()}",
            )
            crashes = (0 if second.alive() else 1) + (0 if server.alive() else 1)
        finally:
            server.stop()
            d.kill_all()
    sent = receiver.of("article.approved")
    ids = {r["headers"]["webhook-id"] for r in sent}
    delivered = sum(1 for r in sent if r["status"] == 204)
    ledger.row(
        WEBHOOKS,
        "worker SIGKILLed mid-delivery",
        injection="os.killpg(SIGKILL) of the worker whose webhook request (article.approved, from an approval over "
        "the API) the receiver holds unanswered; a second worker started",
        checked="the event reaches the receiver once with a 2xx, every send under one webhook-id with the same "
        "body (the receiver can deduplicate); the new worker and the server alive",
    ).add(faults=1, briefs=1, lost=0 if delivered else 1, duplicates=max(0, delivered - 1) + len(ids) - 1,
          crashes=crashes)  # fmt: skip
    assert delivered == 1 and len(ids) == 1 and len({r["body"] for r in sent}) == 1, sent
    assert crashes == 0


def test_an_api_job_while_its_worker_is_killed(tmp_path: Path, tiny_model_dir: Path, ledger: Ledger) -> None:
    d = api_deployment(tmp_path, tiny_model_dir, COPYDESK_STALE_AFTER="2", COPYDESK_MAX_BRIEF_ATTEMPTS="5")
    records = make_briefs("apikill", 6)
    ids = [record["id"] for record in records]
    key = create_key(d, "cms", Role.SUBMITTER)
    server = start_server(d)
    try:
        first = d.start_worker("w1")
        with server.client(key) as client:
            body = "".join(json.dumps(record) + "\n" for record in records)
            submitted = client.post("/v1/jobs", content=body, headers=NDJSON)
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["job_id"]
            wait_until(d.running, timeout=90, message=lambda: f"no brief started\n{d.logs()}", interval=0.05)
            first.kill()  # mid-generation of the first batch
            second = d.start_worker("w2")
            d.wait_for_job(job_id, timeout=180)
            results = read_jsonl(client.get(f"/v1/jobs/{job_id}/results").text)
        crashes = (0 if second.alive() else 1) + (0 if server.alive() else 1)
    finally:
        server.stop()
        d.kill_all()
    lost, duplicates = lost_and_duplicated(d.article_counts(), ids)
    ledger.row(
        API,
        "worker killed while an API job runs",
        injection="6 briefs submitted with POST /v1/jobs (JSON lines); os.killpg(SIGKILL) of the worker as soon "
        "as a brief is running; a second worker started",
        checked="the job completes; every brief exactly one article (store) and one result line with it (GET "
        "/v1/jobs/{id}/results); the new worker and the server alive",
    ).add(faults=1, briefs=len(ids), lost=lost, duplicates=duplicates, crashes=crashes)
    assert (lost, duplicates, crashes) == (0, 0, 0)
    assert [r["custom_id"] for r in results] == ids, results
    assert all(r["brief_status"] == "done" and "article" in r for r in results), results
