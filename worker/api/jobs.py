"""Job routes: submit briefs, list and read jobs, cancel, stream results.

``POST /v1/jobs`` streams the body into a temporary brief file (``.json`` for a JSON list, ``.jsonl`` for
JSON lines, by Content-Type) and hands it to :func:`worker.queue.submit.record`, exactly as
``copydesk submit`` does with a file: the same validation, the same per-record problems and pinned-style
warnings, the same store rows. The briefs' ``source`` names the request (``api:<key name>:<job id>:line N``),
not the temporary file.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from worker.api.auth import requires
from worker.api.errors import ApiError
from worker.api.limits import BodyTooLargeError, too_large_message
from worker.config import Settings
from worker.errors import ConfigError
from worker.intake.loading import BriefProblem, iter_brief_file
from worker.queue.events import job_settled
from worker.store import ApiKeyRecord, Role, Store
from worker.store.expiry import parse_completion_window
from worker.store.jobs import new_job_id
from worker.store.views import job_dict, result_line

if TYPE_CHECKING:
    from worker.queue.submit import Recorded

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(requires(Role.SUBMITTER))])

JobId = Annotated[str, PathParam(min_length=1, max_length=200, description="A job id from POST /v1/jobs.")]
REQUEST_FILE = "request"
_SUFFIXES = {
    "application/json": ".json",
    "application/x-ndjson": ".jsonl",
    "application/jsonl": ".jsonl",
    "application/json-lines": ".jsonl",
    "application/x-jsonlines": ".jsonl",
}


def problem_dict(problem: BriefProblem) -> dict[str, str]:
    return {"record": problem.record, "field": problem.field, "message": problem.message}


def _suffix(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    suffix = _SUFFIXES.get(media)
    if suffix is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "send briefs as application/json (a list of briefs) or application/x-ndjson (one brief a line)",
        )
    return suffix


async def _save_body(request: Request, path: Path, limit: int) -> None:
    """Stream the body to ``path``; 413 as soon as it passes ``limit`` (nothing more is read)."""
    written = 0
    try:
        async with await anyio.open_file(path, "wb") as handle:
            async for chunk in request.stream():
                written += len(chunk)
                if written > limit:
                    raise BodyTooLargeError(too_large_message(limit))
                await handle.write(chunk)
    except BodyTooLargeError as exc:
        raise ApiError(413, "PayloadTooLarge", str(exc)) from exc


def _count_records(path: Path) -> int:
    return sum(1 for _ in iter_brief_file(path))


def _window(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_completion_window(text)
    except ConfigError as exc:
        raise ApiError(422, "ValidationError", str(exc)) from exc


def _submit(
    request: Request, path: Path, key: ApiKeyRecord, description: str | None, window: timedelta | None
) -> dict[str, Any]:
    from worker.errors import QueueError
    from worker.queue.submit import publish_job, record

    settings: Settings = request.app.state.settings
    records = _count_records(path)
    if records > settings.api_max_briefs:
        raise ApiError(
            422,
            "TooManyBriefs",
            f"the job has {records} brief records, more than {settings.api_max_briefs} (api_max_briefs): split it",
        )
    store: Store = request.app.state.store
    job_id = new_job_id()
    recorded = record(
        [path],
        store=store,
        description=description or f"api: {key.name}",
        completion_window=window,
        styles_dir=settings.styles_dir,
        names={path: request_name(key, job_id)},
        job_id=job_id,
    )
    submission, problems = recorded.submission, recorded.problems
    queue_error: QueueError | None = None
    try:
        publish_job(request.app.state.celery, submission)
    except QueueError as exc:
        queue_error = exc
    body = {
        "job_id": submission.job_id,
        "enqueued": len(submission.to_publish),
        "already_done": submission.already_done,
        "already_queued": submission.already_queued,
        "invalid": len(problems),
        "published": queue_error is None,
        "problems": [problem_dict(p) for p in problems],
        "warnings": _warnings(recorded),
        "job": job_dict(store.get_job(submission.job_id)),
    }
    if queue_error is not None:
        body["warning"] = str(queue_error)
    return body


def _warnings(recorded: Recorded) -> list[str]:
    """The pinned-style warnings ``copydesk submit`` prints: briefs enqueued all the same."""
    warnings = [f"pinned styles not checked: {recorded.pins_unchecked}"] if recorded.pins_unchecked else []
    return warnings + [f"enqueued; the workers' styles decide: {problem}" for problem in recorded.unknown_pins]


def request_name(key: ApiKeyRecord, job_id: str) -> str:
    """What a brief submitted over the API records as its file: ``api:<key name>:<job id>`` (then ``:line N``)."""
    return f"api:{key.name}:{job_id}"


@router.post("", status_code=201, summary="Submit briefs as one job")
async def submit_job(
    request: Request,
    description: Annotated[str | None, Query(max_length=500)] = None,
    completion_window: Annotated[
        str | None, Query(max_length=20, description="Briefs not started within it expire: 24h, 90m, 2d.")
    ] = None,
) -> dict[str, Any]:
    """Body: a JSON list of briefs (``application/json``) or one brief a line (``application/x-ndjson``); each
    brief's ``id`` is its custom_id. Invalid records are reported in ``problems`` and never enqueued."""
    suffix = _suffix(request.headers.get("content-type"))
    window = _window(completion_window)
    settings: Settings = request.app.state.settings
    with tempfile.TemporaryDirectory(prefix="copydesk-api-") as folder:
        path = Path(folder) / f"{REQUEST_FILE}{suffix}"
        await _save_body(request, path, settings.api_max_body_bytes)
        return await run_in_threadpool(_submit, request, path, request.state.key, description, window)


@router.get("", summary="List jobs, newest first")
def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    store: Store = request.app.state.store
    return [job_dict(job) for job in store.list_jobs(limit=limit)]


@router.get("/{job_id}", summary="A job's status and counts")
def get_job(request: Request, job_id: JobId) -> dict[str, Any]:
    store: Store = request.app.state.store
    return job_dict(store.get_job(job_id))


@router.post("/{job_id}/cancel", summary="Cancel the briefs not started yet")
def cancel_job(request: Request, job_id: JobId) -> dict[str, Any]:
    store: Store = request.app.state.store
    cancelled = store.cancel_job(job_id)
    job = store.get_job(job_id)
    job_settled(store, request.app.state.celery, job)
    return {"cancelled": cancelled, "job": job_dict(job)}


@router.get(
    "/{job_id}/results",
    summary="One JSON line per brief (custom_id) with its article or its error",
    response_class=StreamingResponse,
)
def job_results(request: Request, job_id: JobId) -> StreamingResponse:
    store: Store = request.app.state.store
    store.get_job(job_id)  # 404 before the stream starts

    def lines() -> Iterator[str]:
        for result in store.job_results(job_id):
            yield json.dumps(result_line(result), ensure_ascii=False, default=str) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
