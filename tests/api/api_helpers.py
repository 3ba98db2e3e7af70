"""Helpers for the HTTP API tests: a real ``copydesk serve`` process on a random port, keys, an httpx client.

An :class:`ApiServer` runs ``copydesk serve`` in its own session with a :class:`~queue_helpers.Deployment`'s
environment (its home, store and broker), so that the API, the CLI and the workers share one installation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from queue_helpers import Deployment, copydesk_command, free_port, wait_until

from worker.store import Role

SAMPLES = Path(__file__).resolve().parents[2] / "briefs" / "samples.yaml"


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


@contextlib.contextmanager
def running_server(deployment: Deployment, **extra_env: str) -> Iterator[ApiServer]:
    server = start_server(deployment, **extra_env)
    try:
        yield server
    finally:
        server.stop()


def create_key(deployment: Deployment, name: str, role: Role) -> str:
    """A new key through ``copydesk keys create --json`` (the way an operator makes one)."""
    result = deployment.cli("keys", "create", name, "--role", role.value, "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["key"])


def sample_briefs_jsonl() -> bytes:
    """``briefs/samples.yaml`` as JSON lines (one brief a line)."""
    records = yaml.safe_load(SAMPLES.read_text())["briefs"]
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def sample_brief_ids() -> list[str]:
    return [record["id"] for record in yaml.safe_load(SAMPLES.read_text())["briefs"]]


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
