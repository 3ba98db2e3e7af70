"""JSON views of jobs and their results: one shape for ``copydesk status/results --json`` and the HTTP API."""

from __future__ import annotations

from typing import Any

from worker.store.jobs import BriefResult, JobRecord


def job_dict(job: JobRecord) -> dict[str, Any]:
    """A job as ``copydesk status --json`` and ``GET /v1/jobs/{id}`` show it (times in ISO 8601)."""
    return {
        "id": job.id,
        "status": job.status,
        "kind": job.kind,
        "description": job.description,
        "invalid_records": job.invalid_records,
        "counts": vars(job.counts),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
    }


def result_line(result: BriefResult) -> dict[str, Any]:
    """One line of ``copydesk results --format jsonl`` (and of the API's results): the article or the error."""
    line: dict[str, Any] = {"custom_id": result.brief_id, "brief_status": result.status}
    if result.article is None:
        line["error"] = result.error or f"no article yet (brief {result.status})"
        return line
    a = result.article
    line["article"] = {
        "id": a.id,
        "status": a.status,
        "style": a.style,
        "title": a.title,
        "failing_gates": a.failing_gates,
        "scores": {name: s["value"] for name, s in a.scores.items()},
        "file": a.file_path,
        "body_markdown": a.body_markdown,
    }
    line["error"] = None
    return line
