"""What the review and publish commands share: their options, their setup, and how one article is shown to a
reviewer (text, scorecard, style rules, brief, provenance, history), and the colours of a diff."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from worker.cli.common import console, open_store
from worker.config import Settings, load_settings

AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Reviewer name recorded on the decision (default: COPYDESK_REVIEWER, else the OS user)."),
]
IdArg = Annotated[str, typer.Argument(help="Article id or brief id.")]


def review_setup(as_name: str | None = None) -> tuple[Settings, Any, str]:
    """The settings, the store and the reviewer's name, for every review command."""
    from worker.review.actions import reviewer_name

    settings = load_settings()
    store = open_store(settings)
    return settings, store, reviewer_name(as_name, settings)


def scorecard_table(scores: dict[str, Any], failing_gates: Sequence[str]) -> Table:
    """The scorecard; a failing gate is a bold red row, a failing informational score is yellow."""
    table = Table("score", "value", "range", "result", "detail", title="scorecard")
    for name, score in scores.items():
        if not isinstance(score, dict):
            table.add_row(name, str(score), "", "", "")
            continue
        gate = name in failing_gates
        passed = bool(score.get("passed"))
        result = "FAIL (gate)" if gate else "pass" if passed else "fail"
        style = "bold red" if gate else "yellow" if not passed else None
        low, high = score.get("low"), score.get("high")
        bounds = "" if low is None and high is None else f"{'' if low is None else low}..{'' if high is None else high}"
        value = score.get("value")
        shown = f"{value:.3f}" if isinstance(value, int | float) else str(value)
        table.add_row(name, shown, bounds, result, str(score.get("detail", "")), style=style)
    return table


def _brief_table(brief: Any) -> Table:
    data = brief.model_dump(mode="json")
    table = Table("field", "value", title="brief", show_header=False)
    for key in ("id", "title", "content_type", "audience", "tone", "category", "target_words", "style", "notes"):
        if data.get(key) not in (None, "", []):
            table.add_row(key, str(data[key]))
    for key in ("tags", "keywords"):
        if data.get(key):
            table.add_row(key, ", ".join(data[key]))
    return table


def _provenance_table(provenance: dict[str, Any]) -> Table:
    table = Table("field", "value", title="provenance", show_header=False)
    model = provenance.get("model") or {}
    adapter = provenance.get("adapter") or {}
    template = provenance.get("template") or {}
    routing = provenance.get("routing") or {}
    rows = {
        "model": f"{model.get('id', '?')} ({model.get('dtype', '?')}, {model.get('device', '?')})" if model else "",
        "adapter": (
            f"{adapter.get('style')} {adapter.get('version')}" if adapter.get("version") else adapter.get("note", "")
        ),
        "template": f"{template.get('name', '')} {template.get('sha256_16', '')}".strip(),
        "routing": routing.get("reason", ""),
        "seed": f"{provenance.get('seed', '')} (attempt {provenance.get('attempt', '?')}, "
        f"candidate {provenance.get('candidate_index', '?')})"
        if "seed" in provenance
        else "",
        "feedback used": provenance.get("feedback", ""),
        "generated": provenance.get("created_at", ""),
    }
    for key, value in rows.items():
        if value:
            table.add_row(key, str(value))
    return table


def show_article(settings: Settings, store: Any, article: Any, *, position: str = "") -> None:
    """Everything a reviewer needs on one screen: text, scorecard, style rules, brief, provenance, history."""
    from worker.review.actions import style_violations
    from worker.store.review_queue import quality_of

    header = (
        f"{position}{article.id} · {article.status} · {article.style} · revision {article.revision} · "
        f"quality {quality_of(article):.2f}"
    )
    console.print(Panel(Markdown(article.body_markdown), title=header, title_align="left"))
    console.print(scorecard_table(article.scores, article.failing_gates))
    if article.failing_gates:
        console.print(Text(f"failing gates: {', '.join(article.failing_gates)}", style="bold red"))
    violations = style_violations(settings, article)
    if violations:
        console.print(Text(f"style rules: {len(violations)} violation(s)", style="bold red"))
        for violation in violations:
            console.print(Text(f"  - {violation}", style="red"))
    else:
        console.print(Text("style rules: no violations", style="green"))
    console.print(_brief_table(store.get_brief(article.brief_id).brief))
    console.print(_provenance_table(article.provenance))
    events = store.list_events(article.id)
    if events:
        last = events[-1]
        note = f": {last.note}" if last.note else ""
        console.print(
            f"last: {last.kind} by {last.actor} at {last.created_at:%Y-%m-%d %H:%M} (revision {last.revision}){note}",
            highlight=False,
            markup=False,
        )


def diff_styles(line: str) -> str | None:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("@@"):
        return "cyan"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    return None
