"""HTTP API commands of the CLI: ``serve`` and ``keys`` (create, list, revoke)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.table import Table

from worker.cli.common import JsonOpt, console, err_console, handle_errors, open_store, print_json
from worker.config import load_settings
from worker.store import Role

keys_app = typer.Typer(help="API keys of the HTTP API: create (shown once), list, revoke.", no_args_is_help=True)

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


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.add_typer(keys_app, name="keys")
