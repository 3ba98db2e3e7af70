"""A real ``copydesk serve`` with a real worker: a job from submission to an exported article, through HTTP.

The worker runs the tiny random model with the queue tests' styles (``quick`` takes every brief that no rule
routes), so the sample briefs are written in seconds. The API's answers are compared with the CLI's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import (
    ApiServer,
    create_key,
    read_jsonl,
    sample_brief_ids,
    sample_briefs_jsonl,
    start_server,
)
from model_fixtures import tiny_model_dir
from prometheus_client.parser import text_string_to_metric_families
from queue_helpers import (
    Deployment,
    DeploymentFiles,
    free_port,
    make_briefs,
    wait_until,
    write_plugin,
    write_styles,
)

from worker.store import Role

__all__ = ["tiny_model_dir"]  # fixture used by name

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DeploymentFiles:
    root = tmp_path_factory.mktemp("api-files")
    return DeploymentFiles(write_styles(root), write_plugin(root / "plugin"))


def deployment(root: Path, model_dir: Path, files: DeploymentFiles) -> Deployment:
    return Deployment(root, model_dir, files.styles, files.plugin, f"sqlite:///{root / 'home' / 'copydesk.db'}")


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics`` parsed: {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain"), response.text
    return parse_metrics(response.text)


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass
class Run:
    deployment: Deployment
    server: ApiServer
    editor: str
    submitted: dict[str, Any]
    job: dict[str, Any]
    metrics_before: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    metrics_after: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    worker_metrics_port: int


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, files: DeploymentFiles) -> Iterator[Run]:
    """Submit the sample briefs as JSONL through the API with a worker running; poll the job to completion."""
    d = deployment(tmp_path_factory.mktemp("api-e2e"), tiny_model_dir, files)
    submitter = create_key(d, "planning-sheet", Role.SUBMITTER)
    editor = create_key(d, "desk-editor", Role.EDITOR)
    server = start_server(d)
    worker_metrics_port = free_port()
    try:
        d.start_worker(COPYDESK_METRICS_PORT=str(worker_metrics_port))
        with server.client(submitter) as client:
            before = scrape(client)
            response = client.post("/v1/jobs", content=sample_briefs_jsonl(), headers=NDJSON)
            assert response.status_code == 201, response.text
            submitted = response.json()

            def settled() -> dict[str, Any] | None:
                job = client.get(f"/v1/jobs/{submitted['job_id']}").json()
                return job if job["status"] in ("completed", "failed", "cancelled") else None

            job = wait_until(settled, timeout=300, message=lambda: f"job did not settle\n{d.logs()}", interval=1)
            after = scrape(client)
        yield Run(d, server, editor, submitted, job, before, after, worker_metrics_port)
    finally:
        server.stop()
        d.kill_all()


def test_a_jsonl_job_runs_to_completion_through_the_api(run: Run) -> None:
    ids = sample_brief_ids()
    assert run.submitted["enqueued"] == len(ids) and run.submitted["invalid"] == 0, run.submitted
    assert run.submitted["published"] is True and run.submitted["problems"] == []
    assert run.job["status"] == "completed", run.job
    assert run.job["counts"]["total"] == len(ids) and run.job["counts"]["failed"] == 0, run.job
    assert run.job["description"] == "api: planning-sheet"


def test_results_stream_the_same_lines_as_the_cli(run: Run) -> None:
    with run.server.client(run.editor) as client:
        response = client.get(f"/v1/jobs/{run.submitted['job_id']}/results")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    lines = read_jsonl(response.text)
    assert [line["custom_id"] for line in lines] == sample_brief_ids()
    assert all(line["article"]["body_markdown"].strip() for line in lines), lines
    assert lines == run.deployment.results(run.submitted["job_id"])


def test_an_editor_reads_approves_and_exports_an_article(run: Run) -> None:
    brief_id = sample_brief_ids()[0]
    with run.server.client(run.editor) as client:
        listed = client.get("/v1/articles", params={"status": "needs_review", "style": "quick", "limit": 50})
        assert listed.status_code == 200
        assert f"a-{brief_id}" in {a["id"] for a in listed.json()["articles"]}
        article = client.get(f"/v1/articles/{brief_id}").json()
        assert article["id"] == f"a-{brief_id}" and article["body_markdown"].startswith("#"), article
        assert article["provenance"] and article["scores"] and article["revision"] == 1, article
        assert [e["kind"] for e in article["history"]] == ["generated"]
        not_yet = client.get(f"/v1/articles/{brief_id}/export")
        assert not_yet.status_code == 409, not_yet.text
        approved = client.post(f"/v1/articles/{brief_id}/approve", json={"revision": 1, "note": "fine"})
        assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text
        markdown = client.get(f"/v1/articles/{brief_id}/export", params={"format": "md"})
        html = client.get(f"/v1/articles/{brief_id}/export", params={"format": "html"})
        jsonl = client.get(f"/v1/articles/{brief_id}/export", params={"format": "jsonl"})
    assert markdown.status_code == 200 and markdown.text.startswith("---\n"), markdown.text[:300]
    assert article["title"] in markdown.text
    assert html.status_code == 200 and "<html" in html.text.lower()
    record = json.loads(jsonl.text)
    assert brief_id in json.dumps(record) and record["title"] == article["title"], record
    history = run.deployment.cli("articles", "history", brief_id, "--json")
    assert history.exit_code == 0, history.output
    events = json.loads(history.stdout)
    assert any(e["kind"] == "approved" and e["actor"] == "desk-editor" for e in events["events"]), events


SUBMISSION_SQL = {
    "briefs": "SELECT id, payload, content_hash, status, attempts, feedback, last_error FROM briefs ORDER BY id",
    "jobs": "SELECT kind, status, invalid_records, cancel_requested FROM jobs",
    "job_items": "SELECT brief_id, position, note FROM job_items ORDER BY position",
}


def submission_rows(d: Deployment) -> dict[str, list[dict[str, Any]]]:
    return {table: d.sql(sql) for table, sql in SUBMISSION_SQL.items()}


def test_the_cli_and_the_api_leave_identical_store_rows(
    tmp_path: Path, tiny_model_dir: Path, files: DeploymentFiles
) -> None:
    body = sample_briefs_jsonl() + b'{"id": "no-title"}\n'
    by_cli = deployment(tmp_path / "cli", tiny_model_dir, files)
    path = tmp_path / "briefs.jsonl"
    path.write_bytes(body)
    cli_summary = by_cli.submit(path)
    by_api = deployment(tmp_path / "api", tiny_model_dir, files)
    key = create_key(by_api, "cms", Role.SUBMITTER)
    server = start_server(by_api)
    try:
        with server.client(key) as client:
            response = client.post("/v1/jobs", content=body, headers=NDJSON)
            assert response.status_code == 201, response.text
            api_summary = response.json()
            cancelled = client.post(f"/v1/jobs/{api_summary['job_id']}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["cancelled"] == len(sample_brief_ids())
            assert cancelled.json()["job"]["status"] == "cancelled"
    finally:
        server.stop()
    assert by_cli.cli("cancel", cli_summary["job_id"]).exit_code == 0
    for field in ("enqueued", "already_done", "already_queued", "invalid", "published"):
        assert api_summary[field] == cli_summary[field], field
    assert api_summary["problems"] == [{"record": "line 10", "field": "title", "message": "is required"}]
    assert submission_rows(by_api) == submission_rows(by_cli)


def test_metrics_move_by_the_size_of_the_job(run: Run) -> None:
    before, after = run.metrics_before, run.metrics_after
    n = len(sample_brief_ids())

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("copydesk_briefs", status="done", style="quick") == n
    assert after.get(("copydesk_briefs", (("status", "queued"), ("style", "none"))), 0) == 0  # absent when none
    assert delta("copydesk_articles_written_total", style="quick") == n
    assert delta("copydesk_articles", status="needs_review", style="quick") == n
    assert delta("copydesk_brief_attempts_total") == n
    assert delta("copydesk_generation_tokens_total", style="quick") > 0
    assert delta("copydesk_generation_seconds_total", style="quick") > 0
    assert delta("copydesk_scoring_seconds_total", style="quick") > 0
    assert delta("copydesk_api_requests_total", route="/v1/jobs", method="POST", status="201") == 1
    assert after[("copydesk_queue_depth", (("queue", "train"),))] == 0
    assert after[("copydesk_queue_depth", (("queue", "generate"),))] <= n  # companions' messages, skipped when read
    assert after[("copydesk_store_up", ())] == 1
    assert after[("copydesk_oldest_queued_brief_age_seconds", ())] == 0


def test_a_worker_alone_serves_the_same_store_figures(run: Run) -> None:
    response = httpx.get(f"http://127.0.0.1:{run.worker_metrics_port}/metrics", timeout=10)
    assert response.status_code == 200
    alone = parse_metrics(response.text)
    for name, labels in (
        ("copydesk_briefs", (("status", "done"), ("style", "quick"))),
        ("copydesk_articles_written_total", (("style", "quick"),)),
        ("copydesk_generation_tokens_total", (("style", "quick"),)),
    ):
        assert alone[(name, labels)] == run.metrics_after[(name, labels)], name
    assert ("copydesk_queue_depth", (("queue", "generate"),)) in alone


def test_articles_page_by_page_with_filters(run: Run) -> None:
    job_id = run.submitted["job_id"]
    with run.server.client(run.editor) as client:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            params = {"job": job_id, "limit": 4, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/articles", params=params).json()
            seen += [a["id"] for a in page["articles"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(f"a-{b}" for b in sample_brief_ids()) and len(seen) == len(set(seen))
        assert client.get("/v1/articles", params={"job": "job-none"}).json() == {"articles": [], "next_cursor": None}
        future = client.get("/v1/articles", params={"since": "2999-01-01T00:00:00Z"}).json()
        assert future["articles"] == []
        past = client.get("/v1/articles", params={"since": "2000-01-01T00:00:00", "limit": 500}).json()
        assert len(past["articles"]) == len(sample_brief_ids())
        bad = client.get("/v1/articles", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and "invalid cursor" in bad.json()["error"]["message"], bad.text


WRITTEN_SQL = {
    "briefs": "SELECT id, payload, content_hash, status, attempts, last_error FROM briefs ORDER BY id",
    "articles": "SELECT id, brief_id, status, title, body_markdown, style, scores, failing_gates, revision "
    "FROM articles ORDER BY id",
    "candidates": 'SELECT brief_id, attempt, "index", text, seed, new_tokens, passed, selected '
    'FROM candidates ORDER BY brief_id, attempt, "index"',
    "job_items": "SELECT brief_id, position, note FROM job_items ORDER BY position",
}


def test_a_job_written_through_the_cli_and_through_the_api_leaves_identical_rows(
    tmp_path: Path, tiny_model_dir: Path, files: DeploymentFiles
) -> None:
    body = sample_briefs_jsonl()
    path = tmp_path / "briefs.jsonl"
    path.write_bytes(body)
    by_cli = deployment(tmp_path / "cli", tiny_model_dir, files)
    by_api = deployment(tmp_path / "api", tiny_model_dir, files)
    key = create_key(by_api, "cms", Role.SUBMITTER)
    server = start_server(by_api)
    try:
        by_cli.start_worker("cli")
        cli_job = by_cli.submit(path)["job_id"]
        by_cli.wait_for_job(cli_job, timeout=300)
        by_cli.kill_all()
        by_api.start_worker("api")
        with server.client(key) as client:
            response = client.post("/v1/jobs", content=body, headers=NDJSON)
            assert response.status_code == 201, response.text
        by_api.wait_for_job(response.json()["job_id"], timeout=300)
    finally:
        server.stop()
        by_cli.kill_all()
        by_api.kill_all()
    rows = {name: (by_cli.sql(sql), by_api.sql(sql)) for name, sql in WRITTEN_SQL.items()}
    for name, (cli_rows, api_rows) in rows.items():
        assert cli_rows, name
        assert api_rows == cli_rows, name


def test_the_api_checks_pinned_styles_and_names_the_request_as_the_source(
    tmp_path: Path, tiny_model_dir: Path, files: DeploymentFiles
) -> None:
    records = [*make_briefs("pin", 2), {**make_briefs("pin-x", 1)[0], "style": "no-such-style"}]
    body = "".join(json.dumps(record) + "\n" for record in records)
    by_cli = deployment(tmp_path / "cli", tiny_model_dir, files)
    path = tmp_path / "briefs.jsonl"
    path.write_text(body)
    cli = by_cli.cli("submit", str(path), "--json")
    assert cli.exit_code == 0, cli.output
    by_api = deployment(tmp_path / "api", tiny_model_dir, files)
    key = create_key(by_api, "cms", Role.SUBMITTER)
    server = start_server(by_api)
    try:
        with server.client(key) as client:
            response = client.post("/v1/jobs", content=body, headers=NDJSON)
    finally:
        server.stop()
    assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]
    request = f"api:cms:{job_id}"
    [warning] = response.json()["warnings"]
    assert warning.startswith(f"enqueued; the workers' styles decide: {request}, line 3, field 'style': "), warning
    assert "no-such-style" in warning and warning.split(": ", 2)[2] in cli.stderr.replace("\n", "")
    assert response.json()["enqueued"] == 3  # enqueued all the same, as by the CLI
    sources = {row["id"]: row["source"] for row in by_api.sql("SELECT id, source FROM briefs")}
    assert sources == {"pin-0": f"{request}:line 1", "pin-1": f"{request}:line 2", "pin-x-0": f"{request}:line 3"}
    assert "/tmp" not in str(by_api.sql("SELECT * FROM jobs"))


def test_without_a_styles_folder_the_api_enqueues_unchecked_with_a_warning(
    tmp_path: Path, tiny_model_dir: Path, files: DeploymentFiles
) -> None:
    d = deployment(tmp_path / "api", tiny_model_dir, files)
    key = create_key(d, "cms", Role.SUBMITTER)
    server = start_server(d, COPYDESK_STYLES_DIR=str(tmp_path / "no-styles"))
    try:
        with server.client(key) as client:
            body = json.dumps({**make_briefs("unchecked", 1)[0], "style": "anything"}) + "\n"
            response = client.post("/v1/jobs", content=body, headers=NDJSON)
    finally:
        server.stop()
    assert response.status_code == 201, response.text
    [warning] = response.json()["warnings"]
    assert warning.startswith("pinned styles not checked: styles directory"), warning
    assert response.json()["enqueued"] == 1
