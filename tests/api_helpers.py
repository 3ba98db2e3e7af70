"""Helpers for the HTTP API tests: a real ``copydesk serve`` process on a random port, keys, an httpx client.

An :class:`ApiServer` runs ``copydesk serve`` in its own session with a :class:`~queue_helpers.Deployment`'s
environment (its home, store and broker), so that the API, the CLI and the workers share one installation.
Shared by ``tests/api`` and ``tests/reliability/test_api_faults.py``: the server, keys, a webhook receiver, the
hostile-body strategies and the oversized-body requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from hypothesis import strategies as st
from queue_helpers import (
    Deployment,
    DeploymentFiles,
    copydesk_command,
    free_port,
    wait_until,
    write_plugin,
    write_styles,
)

from worker.intake.briefs import Brief
from worker.results import ArticleResult, ArticleStatus
from worker.store import Role, Store

SAMPLES = Path(__file__).resolve().parents[1] / "briefs" / "samples.yaml"


@dataclass
class ApiServer:
    """One ``copydesk serve`` process."""

    deployment: Deployment
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(deployment: Deployment, *, name: str = "api", **extra_env: str) -> ApiServer:
    """Start ``copydesk -v serve`` on a free port and wait until it answers."""
    port = free_port()
    log_path = deployment.root / f"{name}.log"
    env = deployment.process_env(name, extra_env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*copydesk_command(), "-v", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=deployment.root,
            start_new_session=True,
        )
    server = ApiServer(deployment, process, port, log_path)

    def answers() -> bool:
        assert server.alive(), f"copydesk serve exited with {process.returncode}:\n{server.log()}"
        try:
            return httpx.get(f"{server.base_url}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, timeout=60, message=lambda: f"copydesk serve did not start:\n{server.log()}")
    return server


def api_deployment(root: Path, model_dir: Path | None = None, **settings: str) -> Deployment:
    """A deployment under ``root`` (SQLite store, embedded broker, the queue tests' styles) for a server and,
    with ``model_dir``, workers; ``settings`` are ``COPYDESK_*`` variables."""
    files = DeploymentFiles(write_styles(root / "files"), write_plugin(root / "files" / "plugin"))
    home = root / "deployment" / "home"
    return Deployment(
        root / "deployment",
        model_dir or root / "no-model",
        files.styles,
        files.plugin,
        f"sqlite:///{home / 'copydesk.db'}",
        settings=dict(settings),
    )


def create_key(deployment: Deployment, name: str, role: Role) -> str:
    """A new key through ``copydesk keys create --json`` (the way an operator makes one)."""
    result = deployment.cli("keys", "create", name, "--role", role.value, "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["key"])


def write_article(store: Store, brief_id: str) -> str:
    brief = Brief(id=brief_id, title=f"How to test {brief_id}", target_words=50)
    store.add_brief(brief)
    result = ArticleResult(
        brief_id=brief.brief_id,
        status=ArticleStatus.NEEDS_REVIEW,
        title=brief.title,
        body_markdown=f"# {brief.title}\n\nA short text.\n",
        style="quick",
        adapter_version=None,
        scores={},
        failing_gates=[],
        provenance={},
        candidates=[],
    )
    return store.save_article(result).id


def sample_briefs_jsonl() -> bytes:
    """``briefs/samples.yaml`` as JSON lines (one brief a line)."""
    records = yaml.safe_load(SAMPLES.read_text())["briefs"]
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def sample_brief_ids() -> list[str]:
    return [record["id"] for record in yaml.safe_load(SAMPLES.read_text())["briefs"]]


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Receiver:
    """A local HTTP receiver: records every request; answers 500 to the first ``fail_first`` of an event type,
    and holds the first request of an event type in ``hold_first`` that many seconds before answering."""

    fail_first: dict[str, int] = field(default_factory=dict)
    hold_first: dict[str, float] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        event = json.loads(body).get("type", "")
        with self.lock:
            seen = sum(1 for r in self.received if r["type"] == event)
            status = 500 if seen < self.fail_first.get(event, 0) else 204
            self.received.append({"type": event, "headers": headers, "body": body, "status": status})
        if seen == 0 and event in self.hold_first:
            time.sleep(self.hold_first[event])
        return status

    def of(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["type"] == event]


@contextlib.contextmanager
def receiving(receiver: Receiver) -> Iterator[str]:
    """Serve ``receiver`` on 127.0.0.1 (a random port) in a thread; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            with contextlib.suppress(OSError):  # the sender may be gone (killed mid-send)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------- hostile and oversized bodies

json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
brief_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.text(max_size=140),
        "title": json_values | st.text(max_size=200),
        "target_words": json_values,
        "tags": json_values,
        "style": json_values | st.sampled_from(["quick", "../../etc", "strict"]),
        "revision": json_values,
        "note": json_values,
        "reason": json_values,
        "feedback": json_values,
    },
)
hostile_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(brief_like, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.lists(brief_like | json_values, max_size=4).map(lambda v: "\n".join(json.dumps(x) for x in v).encode()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def hostile_endpoints(article_id: str) -> list[tuple[str, str, str]]:
    """(method, path, content type) that take a body: job submission and the review decisions on ``article_id``."""
    return [
        ("POST", "/v1/jobs", "application/json"),
        ("POST", "/v1/jobs", "application/x-ndjson"),
        ("POST", f"/v1/articles/{article_id}/approve", "application/json"),
        ("POST", f"/v1/articles/{article_id}/reject", "application/json"),
        ("POST", f"/v1/articles/{article_id}/send-back", "application/json"),
    ]


def chunks_of(size: int, byte: bytes = b"[") -> Iterator[bytes]:
    chunk = byte * 65536
    for _ in range(size // len(chunk)):
        yield chunk


@dataclass
class Oversized:
    """What :func:`post_oversized` sent and got: a status per request (``None``: the server closed the
    connection while the client was still sending, after its 413) and the bytes the chunked body produced."""

    statuses: dict[str, int | None]
    sent: int
    size: int
    declared_error: str
    """The error type of the answer to the declared body (``PayloadTooLarge``)."""


def post_oversized(client: httpx.Client, *, size: int, limit: int, article_id: str) -> Oversized:
    """Bodies over ``limit``: one declared by Content-Length (``2 * limit``), then ``size`` bytes chunked (no
    Content-Length) to ``POST /v1/jobs``, and ``size`` bytes to an approval and to ``POST /v1/jobs``."""
    statuses: dict[str, int | None] = {}
    declared = client.post(
        "/v1/jobs", content=b"[" + b" " * (limit * 2) + b"]", headers={"Content-Type": "application/json"}
    )
    statuses["declared"] = declared.status_code
    declared_error = str(declared.json().get("error", {}).get("type"))
    sent = 0

    def chunks() -> Iterator[bytes]:  # counted while it streams
        nonlocal sent
        for chunk in chunks_of(size, b" "):
            sent += len(chunk)
            yield chunk

    try:
        streamed = client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/x-ndjson"})
        statuses["chunked"] = streamed.status_code
    except httpx.TransportError:
        statuses["chunked"] = None  # the server answered 413 and closed the connection mid-send
    for path in (f"/v1/articles/{article_id}/approve", "/v1/jobs"):
        big = client.post(path, content=chunks_of(size), headers={"Content-Type": "application/json"})
        statuses[path] = big.status_code
    return Oversized(statuses, sent, size, declared_error)
