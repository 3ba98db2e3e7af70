"""Article routes: list, read, decide (approve, reject, send back) and export one article.

Decisions carry the revision the editor saw; the store refuses a stale one with a conflict (409), as the
CLI's ``--rev``. The reviewer recorded is the API key's name. Each decision then does what the CLI does
after it: rewrite the article's Markdown file, and for a send-back publish the brief again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from worker.api.auth import requires
from worker.api.errors import ApiError
from worker.config import Settings
from worker.queue.events import article_approved
from worker.review.actions import publish_regeneration, refresh_article_file
from worker.store import ArticleRecord, Role, Store

logger = logging.getLogger(__name__)

readers = APIRouter(prefix="/v1/articles", tags=["articles"], dependencies=[Depends(requires(Role.SUBMITTER))])
editors = APIRouter(prefix="/v1/articles", tags=["review"], dependencies=[Depends(requires(Role.EDITOR))])

ArticleId = Annotated[str, PathParam(min_length=1, max_length=200, description="Article id or brief id.")]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]


class Decision(BaseModel):
    """What every decision carries: the revision the editor saw."""

    model_config = ConfigDict(extra="forbid")
    revision: int = Field(ge=1, le=1_000_000, description="The revision the editor reviewed.")


class Approval(Decision):
    note: Text | None = None


class Rejection(Decision):
    reason: Text


class SendBack(Decision):
    feedback: Text


def article_dict(article: ArticleRecord, *, full: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": article.id,
        "brief_id": article.brief_id,
        "status": article.status,
        "title": article.title,
        "style": article.style,
        "adapter_version": article.adapter_version,
        "revision": article.revision,
        "failing_gates": article.failing_gates,
        "created_at": article.created_at.isoformat(),
        "updated_at": article.updated_at.isoformat(),
    }
    if full:
        data |= {"body_markdown": article.body_markdown, "scores": article.scores, "provenance": article.provenance}
    return data


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


@readers.get("", summary="Articles, newest first, a page at a time")
def list_articles(
    request: Request,
    status: Annotated[str | None, Query(max_length=32)] = None,
    style: Annotated[str | None, Query(max_length=128)] = None,
    job: Annotated[str | None, Query(max_length=200, description="Only the articles of this job.")] = None,
    since: Annotated[datetime | None, Query(description="Only articles created at or after (ISO 8601).")] = None,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    try:
        page = _store(request).page_articles(
            status=status, style=style, job_id=job, since=since, cursor=cursor, limit=limit
        )
    except ValueError as exc:  # a cursor this API did not make
        raise ApiError(422, "ValidationError", str(exc)) from exc
    return {"articles": [article_dict(a, full=False) for a in page.articles], "next_cursor": page.next_cursor}


@readers.get("/{article_id}", summary="An article: Markdown, scorecard, provenance and history")
def get_article(request: Request, article_id: ArticleId) -> dict[str, Any]:
    store = _store(request)
    article = store.get_article(article_id)
    events = [
        {
            "kind": e.kind,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "revision": e.revision,
            "actor": e.actor,
            "note": e.note,
            "details": e.details,
            "at": e.created_at.isoformat(),
        }
        for e in store.list_events(article.id)
    ]
    return article_dict(article) | {"history": events}


def _decided(request: Request, article: ArticleRecord) -> dict[str, Any]:
    return article_dict(refresh_article_file(_store(request), _settings(request), article))


@editors.post("/{article_id}/approve", summary="Approve the draft the editor saw")
def approve(request: Request, article_id: ArticleId, decision: Approval) -> dict[str, Any]:
    done = _store(request).approve(
        article_id, actor=request.state.key.name, note=decision.note, expected_revision=decision.revision
    )
    article_approved(_store(request), request.app.state.celery, done, request.state.key.name)
    return _decided(request, done)


@editors.post("/{article_id}/reject", summary="Reject the draft with a reason")
def reject(request: Request, article_id: ArticleId, decision: Rejection) -> dict[str, Any]:
    done = _store(request).reject(
        article_id, actor=request.state.key.name, reason=decision.reason, expected_revision=decision.revision
    )
    return _decided(request, done)


@editors.post("/{article_id}/send-back", summary="Send the draft back for a new one with feedback")
def send_back(request: Request, article_id: ArticleId, decision: SendBack) -> dict[str, Any]:
    store = _store(request)
    done = store.send_back(
        article_id, actor=request.state.key.name, feedback=decision.feedback, expected_revision=decision.revision
    )
    body = _decided(request, done)
    queue_error = publish_regeneration(_settings(request), done.brief_id)
    body["published"] = queue_error is None
    if queue_error is not None:
        body["warning"] = f"{queue_error}; the brief is queued in the store and a worker's reconciler will publish it"
    return body


@readers.get("/{article_id}/export", summary="An approved article as Markdown (Hugo/Jekyll), HTML or JSONL")
def export_article(
    request: Request,
    article_id: ArticleId,
    output_format: Annotated[Literal["md", "html", "jsonl"], Query(alias="format")] = "md",
    layout: Annotated[Literal["hugo", "jekyll"], Query()] = "hugo",
) -> Response:
    """Renders what ``copydesk export`` writes for this article; it does not mark it published."""
    from worker.review.export import EXPORTABLE, Exporter

    store = _store(request)
    article = store.get_article(article_id)
    if article.status not in EXPORTABLE:
        raise ApiError(409, "TransitionError", f"article {article.id} is {article.status}: approve it before export")
    exporter = Exporter(
        store,
        _settings(request).templates_dir,
        output_format=output_format,
        layout=layout,
        actor=request.state.key.name,
    )
    brief = store.get_brief(article.brief_id).brief.model_dump(mode="json")
    publication = exporter._publication(article, store.list_events(article.id), set())
    if output_format == "jsonl":
        line = json.dumps(exporter.jsonl_record(article, brief, publication), ensure_ascii=False, default=str)
        return PlainTextResponse(line + "\n", media_type="application/x-ndjson")
    if output_format == "html":
        return PlainTextResponse(exporter.render_html(article, brief, publication), media_type="text/html")
    return PlainTextResponse(exporter.render_markdown(article, brief, publication), media_type="text/markdown")
