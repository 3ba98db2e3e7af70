"""What ``copydesk styles train`` and ``styles compare`` print: a trained version's figures (SFT or DPO), and each
adapter version of a style with the test of the difference."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from worker.cli.common import console, err_console, print_json
from worker.config import Settings


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def print_training(name: str, version: str, metrics: dict[str, Any]) -> None:
    """One line on a newly trained version: held-out loss (SFT) or held-out preference figures (DPO)."""
    if metrics.get("method") == "dpo":
        _print_dpo(name, version, metrics)
    else:
        _print_sft(name, version, metrics)


def _print_dpo(name: str, version: str, m: dict[str, Any]) -> None:
    before, after = m["heldout_before"], m["heldout"]
    console.print(
        f"[green]trained[/] {name} {version} by DPO from {m['reference_version']} in {m['seconds']:.0f} s on "
        f"{m['train_pairs']} pairs; {m['heldout_pairs']} held out: preference accuracy "
        f"{_fmt(before['preference_accuracy'], 2)} → {_fmt(after['preference_accuracy'], 2)}, reward margin "
        f"{_fmt(before['reward_margin'])} → {_fmt(after['reward_margin'])}",
        highlight=False,
    )
    for warning in m.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _print_sft(name: str, version: str, m: dict[str, Any]) -> None:
    console.print(
        f"[green]trained[/] {name} {version} in {m['seconds']:.0f} s: held-out loss "
        f"{_fmt(m['base_eval_loss'])} (base) → {_fmt(m['best_eval_loss'])} (best epoch {m['best_epoch']}"
        f"{', stopped early' if m['stopped_early'] else ''}); {m['train_examples']} train / "
        f"{m['heldout_examples']} held out",
        highlight=False,
    )


def compare(settings: Settings, style: Any, as_json: bool) -> None:
    """Read every version's figures of ``style`` from the store and print them (or their JSON)."""
    from worker.store import Store
    from worker.store.canary import comparison_tests

    with Store.from_settings(settings) as store:
        stats = store.compare_versions(style.name)
    canary = style.canary.version if style.canary is not None else None
    tests = comparison_tests(stats, _canary_served(style), canary)
    if as_json:
        print_json({"style": style.name, "versions": [s.to_dict() for s in stats], "tests": tests})
        return
    print_comparison(style, stats, tests)


def _canary_served(style: Any) -> str | None:
    """The version the canary is tested against: the one served on the canary's base model (that of the loaded
    base model when the canary records none)."""
    from worker.styles.served import resolve

    if style.canary is None or not style.served:
        return style.adapter
    try:
        return resolve(style.served, style.canary_base or style.base_model)
    except LookupError:
        return None


def print_comparison(style: Any, stats: list[Any], tests: list[dict[str, Any]]) -> None:
    """One row per version (:class:`worker.store.canary.VersionStats`), then one line per test. A version's role
    names the base model it is served on (the base model alone: one row per base model)."""
    from worker.styles.served import ANY_BASE

    roles = {version: "served" if base == ANY_BASE else f"served on {base}" for base, version in style.served.items()}
    roles.setdefault(style.adapter, "served")
    if style.canary is not None:
        roles[style.canary.version] = f"canary {style.canary.share:.0%}"
    table = Table(
        "version", "base model", "role", "articles", "gate pass", "attempts", "approved", "rejected", "sent back",
        "approval rate", "edit distance (words)", title=f"{style.name}: versions compared",
    )  # fmt: skip
    for s in stats:
        table.add_row(
            s.version or "base model",
            ", ".join(s.base_models),
            roles.get(s.version, ""),
            str(s.articles),
            _fmt(s.gate_pass_rate, 2),
            _fmt(s.mean_attempts, 2),
            str(s.approvals),
            str(s.rejections),
            str(s.send_backs),
            f"{_fmt(s.approval_rate, 2)} ({s.approved}/{s.decided})" if s.decided else "",
            f"{_fmt(s.mean_edit_distance, 1)} ({_fmt(s.mean_edit_share, 2)} of the draft)" if s.approved else "",
        )
    console.print(table)
    for test in tests:
        first, second = (v or "base model" for v in test["versions"])
        console.print(f"{first} vs {second}: {test['test']}: p = {test['p_value']:.3f}", highlight=False)
