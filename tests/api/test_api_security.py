"""Security of a real ``copydesk serve`` process: keys and roles on every route, body limits, hostile input.

One server per module (no worker: nothing here needs an article generated); articles to decide on are
written straight into the store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from api_helpers import (
    ApiServer,
    create_key,
    hostile_bodies,
    hostile_endpoints,
    post_oversized,
    start_server,
    write_article,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from queue_helpers import Deployment, DeploymentFiles, make_briefs, write_plugin, write_styles

from worker.api.app import PUBLIC_PATHS
from worker.store import Role, Store

BODY_LIMIT = 64 * 1024


@dataclass
class Keys:
    submitter: str
    editor: str
    admin: str
    revoked: str


@dataclass
class Api:
    server: ApiServer
    keys: Keys
    store_url: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-security")
    files = DeploymentFiles(write_styles(root), write_plugin(root / "plugin"))
    store_url = f"sqlite:///{root / 'home' / 'copydesk.db'}"
    d = Deployment(
        root,
        root / "no-model",
        files.styles,
        files.plugin,
        store_url,
        settings={"COPYDESK_API_MAX_BODY_BYTES": str(BODY_LIMIT), "COPYDESK_API_MAX_BRIEFS": "5"},
    )
    keys = Keys(
        create_key(d, "sub", Role.SUBMITTER),
        create_key(d, "ed", Role.EDITOR),
        create_key(d, "boss", Role.ADMIN),
        create_key(d, "gone", Role.ADMIN),
    )
    assert d.cli("keys", "revoke", "gone").exit_code == 0
    with Store(store_url) as store:
        write_article(store, "sec-1")
    server = start_server(d, COPYDESK_API_MAX_BODY_BYTES=str(BODY_LIMIT))
    try:
        yield Api(server, keys, store_url)
    finally:
        server.stop()


# Every operation of the API and the least role it needs; a route added without a row here fails the test.
ROUTE_ROLES = {
    ("POST", "/v1/jobs"): Role.SUBMITTER,
    ("GET", "/v1/jobs"): Role.SUBMITTER,
    ("GET", "/v1/jobs/{job_id}"): Role.SUBMITTER,
    ("POST", "/v1/jobs/{job_id}/cancel"): Role.SUBMITTER,
    ("GET", "/v1/jobs/{job_id}/results"): Role.SUBMITTER,
    ("GET", "/v1/articles"): Role.SUBMITTER,
    ("GET", "/v1/articles/{article_id}"): Role.SUBMITTER,
    ("GET", "/v1/articles/{article_id}/export"): Role.SUBMITTER,
    ("POST", "/v1/articles/{article_id}/approve"): Role.EDITOR,
    ("POST", "/v1/articles/{article_id}/reject"): Role.EDITOR,
    ("POST", "/v1/articles/{article_id}/send-back"): Role.EDITOR,
    ("GET", "/v1/styles"): Role.SUBMITTER,
    ("GET", "/v1/health"): Role.SUBMITTER,
    ("GET", "/metrics"): Role.SUBMITTER,
    ("GET", "/v1/keys"): Role.ADMIN,
    ("POST", "/v1/keys"): Role.ADMIN,
    ("POST", "/v1/keys/{name}/revoke"): Role.ADMIN,
}


def test_every_route_checks_a_key_and_a_role(api: Api) -> None:
    schema = httpx.get(api.server.base_url + "/openapi.json", timeout=10).json()
    operations = {(m.upper(), path): op for path, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) == set(ROUTE_ROLES)
    lower = {Role.EDITOR: api.keys.submitter, Role.ADMIN: api.keys.editor}
    for (method, path), role in ROUTE_ROLES.items():
        assert operations[(method, path)].get("security"), f"{method} {path} declares no key"
        url = api.server.base_url + path.replace("{job_id}", "job-none").replace("{article_id}", "a-none")
        url = url.replace("{name}", "nobody")
        anonymous = httpx.request(method, url, timeout=10)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        if role in lower:
            weak = httpx.request(method, url, headers={"X-API-Key": lower[role]}, json={"revision": 1}, timeout=10)
            assert weak.status_code == 403, (method, path, weak.text)
    assert set(PUBLIC_PATHS) == {"/docs", "/docs/oauth2-redirect", "/openapi.json"}


READ_ROUTES = [
    "/metrics",
    "/v1/jobs",
    "/v1/articles",
    "/v1/articles/sec-1",
    "/v1/styles",
    "/v1/health",
    "/v1/jobs/x/results",
]


@pytest.mark.parametrize("path", READ_ROUTES)
def test_missing_wrong_and_revoked_keys_get_401(api: Api, path: str) -> None:
    wrong = api.keys.admin[:-4] + "AAAA"
    for headers in (
        {},
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": f"Bearer {api.keys.revoked}"},
        {"Authorization": f"Basic {api.keys.admin}"},
        {"X-API-Key": "nonsense"},
    ):
        response = httpx.get(api.server.base_url + path, headers=headers, timeout=10)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.json()["error"]["type"] == "Unauthorized"
    ok = httpx.get(api.server.base_url + path, headers={"X-API-Key": api.keys.submitter}, timeout=10)
    assert ok.status_code in (200, 404), ok.text  # the key works (404: job "x" does not exist)


def test_roles_decide_what_a_key_may_do(api: Api) -> None:
    decision = {"revision": 1, "reason": "not ours"}
    with api.server.client(api.keys.submitter) as sub:
        refused = sub.post("/v1/articles/sec-1/reject", json=decision)
        assert refused.status_code == 403, refused.text
        assert "needs editor" in refused.json()["error"]["message"]
        assert sub.get("/v1/articles/sec-1").json()["status"] == "needs_review"  # nothing changed
    with api.server.client(api.keys.editor) as ed:
        stale = ed.post("/v1/articles/sec-1/reject", json={**decision, "revision": 2})
        assert stale.status_code == 409 and stale.json()["error"]["type"] == "ConflictError", stale.text
        done = ed.post("/v1/articles/sec-1/reject", json=decision)
        assert done.status_code == 200 and done.json()["status"] == "rejected", done.text
        history = ed.get("/v1/articles/sec-1").json()["history"]
        assert history[-1]["kind"] == "rejected" and history[-1]["actor"] == "ed", history
        again = ed.post("/v1/articles/sec-1/approve", json={"revision": 1})
        assert again.status_code == 409 and again.json()["error"]["type"] == "TransitionError", again.text


def test_an_admin_manages_keys_over_http(api: Api) -> None:
    with api.server.client(api.keys.admin) as admin:
        created = admin.post("/v1/keys", json={"name": "chat-bot", "role": "editor"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert key.startswith("cdk_") and created.json()["role"] == "editor"
        listed = admin.get("/v1/keys")
        assert key not in listed.text and "chat-bot" in {k["name"] for k in listed.json()}
        assert admin.post("/v1/keys", json={"name": "chat-bot"}).status_code == 409
        assert admin.post("/v1/keys", json={"name": "x", "role": "root"}).status_code == 422
        assert admin.post("/v1/keys", json={"name": "../x y"}).status_code == 422
        with api.server.client(key) as bot:
            assert bot.get("/v1/styles").status_code == 200
            assert bot.get("/v1/keys").status_code == 403
            assert admin.post("/v1/keys/chat-bot/revoke").json()["revoked_at"] is not None
            assert bot.get("/v1/styles").status_code == 401
        assert admin.post("/v1/keys/nobody/revoke").status_code == 404


def test_the_styles_route_lists_what_each_style_serves_on_each_base_model(api: Api) -> None:
    with api.server.client(api.keys.submitter) as sub:
        listed = {style["name"]: style for style in sub.get("/v1/styles").json()}
    assert set(listed) == {"quick", "strict"}, listed
    for style in listed.values():  # `adapter: null`: the base model alone, on every base model
        assert (style["adapter_version"], style["adapter_versions"]) == (None, {"*": None}), style
    assert "on_topic" in listed["strict"]["gates"] and "on_topic" not in listed["quick"]["gates"], listed


def test_requests_are_logged_with_the_key_name_never_the_key(api: Api) -> None:
    with api.server.client(api.keys.editor) as ed:
        assert ed.get("/v1/styles").status_code == 200
    log = api.server.log()
    assert "GET /v1/styles -> 200" in log and "(key ed)" in log, log[-2000:]
    for key in (api.keys.submitter, api.keys.editor, api.keys.admin, api.keys.revoked):
        assert key not in log and key.split("_", 2)[2] not in log


def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    size = 40 * 1024 * 1024
    before = api.server.rss()
    with api.server.client(api.keys.submitter) as sub:
        sent = post_oversized(sub, size=size, limit=BODY_LIMIT, article_id="sec-1")
    assert sent.statuses["declared"] == 413 and sent.declared_error == "PayloadTooLarge", sent
    assert sent.statuses["chunked"] in (413, None), sent.statuses
    assert sent.statuses["/v1/articles/sec-1/approve"] in (403, 413) and sent.statuses["/v1/jobs"] == 413, sent
    grown = api.server.rss() - before
    assert grown < size // 4, f"the server grew by {grown} bytes for {size}-byte bodies"
    assert sent.sent < size, "the server read the whole chunked body"
    assert api.server.alive()


def test_too_many_briefs_is_422_and_nothing_is_stored(api: Api) -> None:
    body = "".join(json.dumps(b) + "\n" for b in make_briefs("many", 6))
    with api.server.client(api.keys.submitter) as sub:
        jobs_before = len(sub.get("/v1/jobs").json())
        response = sub.post("/v1/jobs", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["type"] == "TooManyBriefs"
        assert len(sub.get("/v1/jobs").json()) == jobs_before
        wrong_type = sub.post("/v1/jobs", content=body, headers={"Content-Type": "text/yaml"})
        assert wrong_type.status_code == 415, wrong_type.text


HOSTILE_IDS = [
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fsecret",
    "' OR '1'='1",
    "1; DROP TABLE briefs; --",
    "a-sec-1' --",
    "%00",
    "x" * 300,
    "%E2%80%AE",
    "..",
]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_path_traversal_and_sql_ish_ids_are_404_or_422(api: Api, bad_id: str) -> None:
    with api.server.client(api.keys.admin) as admin:
        for method, path in (
            ("GET", f"/v1/jobs/{bad_id}"),
            ("GET", f"/v1/jobs/{bad_id}/results"),
            ("POST", f"/v1/jobs/{bad_id}/cancel"),
            ("GET", f"/v1/articles/{bad_id}"),
            ("GET", f"/v1/articles/{bad_id}/export"),
            ("POST", f"/v1/articles/{bad_id}/approve"),
        ):
            body = {"revision": 1} if method == "POST" else None
            response = admin.request(method, path, json=body)
            assert response.status_code in (404, 405, 422), (method, path, response.status_code, response.text)
            assert "error" in response.json()
        assert admin.get("/v1/articles/sec-1").status_code == 200  # the store is intact
        assert len(admin.get("/v1/articles").json()["articles"]) >= 1
        bad_cursor = admin.get("/v1/articles", params={"cursor": bad_id[:400]})
        assert bad_cursor.status_code in (404, 422), bad_cursor.text


ENDPOINTS = hostile_endpoints("sec-2")


@pytest.fixture(scope="module")
def editor_client(api: Api) -> Iterator[httpx.Client]:
    with Store(api.store_url) as store:
        write_article(store, "sec-2")
    with api.server.client(api.keys.editor) as client:
        yield client


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=hostile_bodies, endpoint=st.sampled_from(ENDPOINTS))
def test_hostile_bodies_never_cause_a_500(
    editor_client: httpx.Client, api: Api, body: bytes, endpoint: tuple[str, str, str]
) -> None:
    method, path, content_type = endpoint
    response = editor_client.request(method, path, content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, (path, body[:200], response.status_code, response.text[:500])
    assert isinstance(response.json(), dict | list)
    assert api.server.alive()


def test_the_server_survives_concurrent_hostile_clients(api: Api) -> None:
    errors: list[str] = []

    def hammer(seed: int) -> None:
        with api.server.client(api.keys.submitter) as client:
            for i in range(20):
                body = b"[" * (seed * 100 + i) + b"]"
                response = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
                if response.status_code >= 500:
                    errors.append(response.text)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and time.monotonic() - started < 120
    assert httpx.get(api.server.base_url + "/v1/health", headers={"X-API-Key": api.keys.submitter}).status_code == 200


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/v1/jobs", "application/json", b"[" * 30_000 + b"]" * 30_000),
        ("/v1/jobs", "application/x-ndjson", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
        ("/v1/articles/sec-1/approve", "application/json", b'{"revision":' * 4_000 + b"1" + b"}" * 4_000),
    ],
)
def test_deeply_nested_bodies_are_refused_cleanly(api: Api, path: str, content_type: str, body: bytes) -> None:
    with api.server.client(api.keys.editor) as ed:
        response = ed.post(path, content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, response.text
    if path == "/v1/jobs":
        assert response.json()["enqueued"] == 0
        assert "nested too deeply" in response.json()["problems"][0]["message"]
