"""``COPYDESK_LOG_FORMAT=json``: every line a ``copydesk serve`` process logs is one JSON object."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from api_helpers import create_key, start_server
from queue_helpers import Deployment, write_plugin, write_styles

from worker.logs import JsonFormatter, json_handler
from worker.store import Role


def test_the_formatter_writes_one_object_a_line_with_context_ids() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("copydesk.test.json")
    logger.propagate = False
    logger.addHandler(json_handler(stream))
    logger.setLevel(logging.INFO)
    try:
        logger.info("wrote %s\nsecond line", "b-1", extra={"brief": "b-1", "job": "job-1"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "wrote b-1\nsecond line" and first["level"] == "INFO"
    assert (first["brief"], first["job"], first["logger"]) == ("b-1", "job-1", "copydesk.test.json")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_serve_logs_parse_line_by_line(tmp_path: Path) -> None:
    files = tmp_path / "files"
    d = Deployment(
        tmp_path / "d",
        tmp_path / "no-model",
        write_styles(files),
        write_plugin(files / "plugin"),
        f"sqlite:///{tmp_path / 'd' / 'home' / 'copydesk.db'}",
    )
    key = create_key(d, "ops", Role.SUBMITTER)
    server = start_server(d, COPYDESK_LOG_FORMAT="json")
    try:
        with server.client(key) as client:
            assert client.get("/v1/styles").status_code == 200
            assert client.get("/v1/jobs/nope").status_code == 404
        with server.client() as anonymous:
            assert anonymous.get("/v1/jobs").status_code == 401
    finally:
        server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    requests = [r["message"] for r in records if r["logger"] == "worker.api.app"]
    assert "GET /v1/styles -> 200" in requests[-3] and "(key ops)" in requests[-3], requests
    assert "GET /v1/jobs/nope -> 404" in requests[-2] and "(key ops)" in requests[-2]
    assert requests[-1].startswith("GET /v1/jobs -> 401") and requests[-1].endswith("(key none)")
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
