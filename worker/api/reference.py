"""The route table of docs/api.md, generated from the OpenAPI schema (``tests/api/test_api_docs.py`` keeps the
two the same and shows the table to paste when they differ)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from worker.store import Role

TAG_ROLES = {"review": Role.EDITOR, "keys": Role.ADMIN}  # every other route needs a submitter key (or above)


def _parameters(schema: dict[str, Any], operation: dict[str, Any]) -> str:
    names = [f"`{p['name']}`" + ("" if p.get("required") else "?") for p in operation.get("parameters", [])]
    text = ", ".join(names)
    ref = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in ref:
        model = schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
        required = set(model.get("required", []))
        fields = ", ".join(f"`{name}`" + ("" if name in required else "?") for name in model["properties"])
        text += ("; " if text else "") + f"body: {fields}"
    return text


def route_table(schema: dict[str, Any]) -> str:
    """A Markdown table: method, path, least role, summary, parameters (``?`` = optional)."""
    lines = ["| method | path | role | what | parameters |", "| --- | --- | --- | --- | --- |"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            role = next((TAG_ROLES[t] for t in operation.get("tags", []) if t in TAG_ROLES), Role.SUBMITTER)
            summary = operation.get("summary", "")
            lines.append(f"| {method.upper()} | `{path}` | {role} | {summary} | {_parameters(schema, operation)} |")
    return "\n".join(lines) + "\n"


def current_schema() -> dict[str, Any]:
    """The OpenAPI schema of the app (built over a throw-away SQLite store)."""
    from worker.api.app import create_app
    from worker.config import Settings

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        app = create_app(Settings(home=home, store_url=f"sqlite:///{home / 'copydesk.db'}"))
        return app.openapi()
