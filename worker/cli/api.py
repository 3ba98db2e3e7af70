"""HTTP API commands of the CLI: ``serve``, ``keys`` (create, list, revoke) and ``webhooks`` (add, list, remove,
deliveries)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.table import Table

from worker.cli.common import CommandGroup, JsonOpt, console, err_console, handle_errors, open_store, print_json
from worker.config import load_settings
from worker.logs import json_logs_enabled
from worker.store import Role

keys_app = CommandGroup(help="API keys of the HTTP API: create (shown once), list, revoke.")

webhooks_app = CommandGroup(help="Webhook endpoints and their deliveries.")

APP_FACTORY = "worker.api.app:create_app"


@handle_errors
def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the API on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn) over the configured store and broker."""
    import uvicorn

    settings = load_settings()  # a bad configuration fails here, with the CLI's message
    open_store(settings)
    logging.getLogger("worker.api").setLevel(logging.INFO)  # the request log (with key names) replaces uvicorn's
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] the API listens on {host}: put TLS in front of it", highlight=False)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=256,
        log_config=None if json_logs_enabled() else uvicorn.config.LOGGING_CONFIG,
    )


@keys_app.command("create")
@handle_errors
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key (recorded as the reviewer).")],
    role: Annotated[Role, typer.Option(help="submitter, editor or admin.")] = Role.SUBMITTER,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    record, key = open_store(load_settings()).create_api_key(name, role)
    if as_json:
        print_json({"id": record.id, "name": record.name, "role": record.role, "key": key})
        return
    console.print(f"API key {record.name} ({record.role}), shown once, keep it safe:", highlight=False)
    console.print(key, markup=False, highlight=False, soft_wrap=True)


@keys_app.command("list")
@handle_errors
def keys_list(as_json: JsonOpt = False) -> None:
    """List API keys (never the keys themselves)."""
    records = open_store(load_settings()).list_api_keys()
    rows = [
        {"id": r.id, "name": r.name, "role": r.role, "created_at": r.created_at, "revoked_at": r.revoked_at}
        for r in records
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "role", "created", "revoked")
    for r in records:
        revoked = f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else ""
        table.add_row(r.id, r.name, r.role, f"{r.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(name: Annotated[str, typer.Argument(help="Key name or id.")]) -> None:
    """Revoke an API key; requests with it get 401 from now on."""
    record = open_store(load_settings()).revoke_api_key(name)
    console.print(f"API key {record.name} ({record.id}) revoked", highlight=False)


@webhooks_app.command("add")
@handle_errors
def webhooks_add(
    url: Annotated[str, typer.Argument(help="http:// or https:// URL that receives the events.")],
    events: Annotated[list[str], typer.Option("--events", "-e", help="Event types, repeatable or comma-separated.")],
    as_json: JsonOpt = False,
) -> None:
    """Register an endpoint; prints its signing secret (Standard Webhooks, whsec_...)."""
    settings = load_settings()
    chosen = [e.strip() for value in events for e in value.split(",") if e.strip()]
    endpoint = open_store(settings).add_webhook(url, chosen, allow_link_local=settings.webhook_allow_link_local)
    if as_json:
        print_json({"id": endpoint.id, "url": endpoint.url, "events": endpoint.events, "secret": endpoint.secret})
        return
    console.print(f"webhook {endpoint.id} -> {endpoint.url} for {', '.join(endpoint.events)}", highlight=False)
    console.print(f"signing secret: {endpoint.secret}", markup=False, highlight=False)


@webhooks_app.command("list")
@handle_errors
def webhooks_list(as_json: JsonOpt = False) -> None:
    """List active endpoints (not their secrets)."""
    endpoints = open_store(load_settings()).list_webhooks()
    rows = [{"id": e.id, "url": e.url, "events": e.events, "created_at": e.created_at} for e in endpoints]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "url", "events", "created")
    for e in endpoints:
        table.add_row(e.id, e.url, ", ".join(e.events), f"{e.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@webhooks_app.command("remove")
@handle_errors
def webhooks_remove(endpoint_id: Annotated[str, typer.Argument(help="Endpoint id (ep_...).")]) -> None:
    """Stop sending to an endpoint (its deliveries stay recorded)."""
    endpoint = open_store(load_settings()).remove_webhook(endpoint_id)
    console.print(f"webhook {endpoint.id} removed", highlight=False)


@webhooks_app.command("deliveries")
@handle_errors
def webhooks_deliveries(
    endpoint_id: Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint's deliveries.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Deliveries (one per event and endpoint) with every attempt: when, HTTP status, error."""
    store = open_store(load_settings())
    deliveries = store.list_deliveries(endpoint_id=endpoint_id, limit=limit)
    rows = [
        {
            "id": d.id,
            "endpoint_id": d.endpoint_id,
            "event_type": d.event_type,
            "status": d.status,
            "created_at": d.created_at,
            "delivered_at": d.delivered_at,
            "next_attempt_at": d.next_attempt_at,
            "attempts": [
                {"attempt": a.attempt, "at": a.started_at, "status_code": a.status_code, "error": a.error}
                for a in store.list_attempts(d.id)
            ],
        }
        for d in deliveries
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("event id", "event", "status", "attempts", "last result", "created")
    for row in rows:
        last = row["attempts"][-1] if row["attempts"] else None
        result = "" if last is None else (last["error"] or f"HTTP {last['status_code']}")
        table.add_row(
            row["id"],
            row["event_type"],
            row["status"],
            str(len(row["attempts"])),
            result,
            f"{row['created_at']:%H:%M:%S}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.add_typer(keys_app, name="keys")
    app.add_typer(webhooks_app, name="webhooks")
