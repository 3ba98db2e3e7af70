"""Style commands of the CLI: styles list, show, new, train, promote, compare, eval (corpus: worker.cli.corpus)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from worker.cli.common import CommandGroup, JsonOpt, console, err_console, handle_errors, print_json
from worker.cli.model_options import options_from
from worker.config import Settings, load_settings
from worker.engine.base_model import configured_model_id
from worker.errors import EvaluationError, StyleError, TrainingError
from worker.lab.options import EvalOptions, TrainingOptions

styles_app = CommandGroup(help="Styles and their adapter versions: list, show, new, train, promote, compare, eval.")

StyleArg = Annotated[str, typer.Argument(help="Style name (a folder under the styles directory).")]


def configured_weights_sha256(settings: Settings) -> str | None:
    """The configured base model's weights SHA-256 (cached beside the weights), or ``None`` when the model is
    not on disk yet: adapters are then checked by the model's name only."""
    from worker.engine.base_model import resolve_base_model
    from worker.errors import ModelError

    try:
        return resolve_base_model(settings).weights_hash
    except (ModelError, OSError):
        return None


def _catalog(settings: Settings) -> Any:
    """Every style, loaded for the configured base model (its served version, canary and profile targets)."""
    from worker.styles.catalog import StyleCatalog

    return StyleCatalog.for_settings(settings)


def _serves(style: Any) -> str:
    """What ``style`` serves on each base model, and a red note when it serves nothing on the configured one."""
    from worker.styles.served import describe

    text = describe(style.served) if style.served else (style.adapter or "the base model alone")
    try:
        style.served_version()
    except StyleError:
        return f"{text}; [red]nothing on {style.base_model}[/] (the configured base model)"
    return text


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------------- styles


@styles_app.command("list")
@handle_errors
def styles_list(as_json: JsonOpt = False) -> None:
    """Every style, the version it serves, and its versions with their held-out loss."""
    from worker.styles.versions import list_versions

    settings = load_settings()
    catalog = _catalog(settings)
    model_id = configured_model_id(settings)
    weights = configured_weights_sha256(settings)
    rows = []
    for name in catalog.names:
        style = catalog.get(name)
        versions = list_versions(style, model_id, weights)
        rows.append(
            {
                "style": name,
                "served": style.adapter,  # on the configured base model
                "served_per_base": style.served,  # "*": on every base model
                "serves": _serves(style),
                "versions": [
                    {
                        "version": v.version,
                        "usable": v.problem is None,
                        "base_model_id": v.meta.get("base_model_id"),
                        "eval_loss": v.metrics.get("best_eval_loss"),
                        "base_eval_loss": v.metrics.get("base_eval_loss"),
                        "articles": v.meta.get("corpus", {}).get("articles"),
                        "created_at": v.meta.get("created_at"),
                    }
                    for v in versions
                ],
            }
        )
    if as_json:
        print_json({"styles": rows, "problems": catalog.problems})
        return
    table = Table(
        "style", "serves", "versions (held-out loss: base → adapter)", title=f"styles (base model {model_id})"
    )
    for row in rows:
        described = [
            f"{v['version']}{'' if v['usable'] else ' [red](unusable)[/]'}: "
            f"{_fmt(v['base_eval_loss'])} → {_fmt(v['eval_loss'])}, {v['articles']} articles, on {v['base_model_id']}"
            for v in row["versions"]
        ]
        table.add_row(row["style"], row["serves"], "\n".join(described) or "none")
    console.print(table)
    for name, problem in catalog.problems.items():
        err_console.print(f"[red]{name}:[/] {problem}", highlight=False)


@styles_app.command("show")
@handle_errors
def styles_show(name: StyleArg, as_json: JsonOpt = False) -> None:
    """One style: its targets (and which came from the corpus profile) and every version's metrics."""
    from worker.styles.versions import list_versions

    settings = load_settings()
    style = _catalog(settings).get(name)
    versions = list_versions(style, configured_model_id(settings), configured_weights_sha256(settings))
    data = {
        "style": style.name,
        "description": style.description,
        "base_model": style.base_model,
        "served": style.adapter,  # on the configured base model
        "served_per_base": style.served,  # "*": on every base model
        "canary": {**style.canary.model_dump(mode="json"), "base_model": style.canary_base} if style.canary else None,
        "targets": style.targets.model_dump(mode="json"),
        "targets_from_corpus_profile": style.profile_targets,
        "gates": style.gates,
        "versions": [v.to_dict() for v in versions],
    }
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]{style.name}[/]: {style.description}", highlight=False)
    console.print(
        f"serves: {_serves(style)}"
        + (f" · canary: {style.canary.version} on {style.canary.share:.0%} of briefs" if style.canary else "")
        + (f" on {style.canary_base}" if style.canary and style.canary_base else "")
        + f" · gates: {', '.join(style.gates)}",
        highlight=False,
    )
    targets = Table("target", "value", "from", title="targets")
    for key, value in data["targets"].items():
        targets.add_row(key, str(value), "corpus profile" if key in style.profile_targets else "style.yaml / default")
    console.print(targets)
    _print_versions(versions)


def _print_versions(versions: list[Any]) -> None:
    """``styles show``'s table of versions (:class:`worker.styles.versions.VersionInfo`), each with its base model."""
    table = Table(
        "version",
        "base model",
        "served",
        "created",
        "articles",
        "epochs",
        "held-out loss base → adapter",
        "perplexity",
        "usable",
        title="versions",
    )
    for v in versions:
        m = v.metrics
        table.add_row(
            v.version,
            str(v.meta.get("base_model_id") or "?"),
            "yes" if v.served else "",
            str(v.meta.get("created_at", ""))[:10],
            str(v.meta.get("corpus", {}).get("articles", "")),
            f"{_fmt(m.get('epochs_run'), 1)}/{m.get('epochs_max', '')}"
            + (" (early stop)" if m.get("stopped_early") else ""),
            f"{_fmt(m.get('base_eval_loss'))} → {_fmt(m.get('best_eval_loss'))}",
            f"{_fmt(m.get('base_eval_perplexity'), 1)} → {_fmt(m.get('eval_perplexity'), 1)}",
            "yes" if v.problem is None else f"[red]no[/]: {v.problem}",
        )
    console.print(table)


TRAIN_ALIASES = {  # the flags these options had before they were generated from TrainingOptions
    "learning_rate": ("--lr",),
    "lora_r": ("--rank",),
    "lora_alpha": ("--alpha",),
    "early_stopping_patience": ("--patience",),
}


@styles_app.command("new")
@handle_errors
def styles_new(
    name: StyleArg,
    corpus: Annotated[Path, typer.Option("--corpus", help="Folder of the archive's Markdown posts.")],
    as_json: JsonOpt = False,
) -> None:
    """A new style from an archive: style.yaml with targets, routing and gates from it (then train it)."""
    from worker.lab.corpus_style import create_style

    settings = load_settings()
    path = create_style(settings.styles_dir, name, corpus, settings.language)
    if as_json:
        print_json({"style": name, "style_file": str(path)})
        return
    console.print(f"wrote {path}: edit its system prompt, then `copydesk styles train {name} --corpus {corpus}`")


@styles_app.command("train")
@handle_errors
@options_from(TrainingOptions, into="options", error=TrainingError, what="training", aliases=TRAIN_ALIASES)
def styles_train(
    name: StyleArg,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Folder of the style's Markdown articles.")] = None,
    feedback: Annotated[
        Path | None,
        typer.Option(
            "--feedback", help="From `copydesk feedback export`: SFT examples (sft) or preference pairs (dpo)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run from its checkpoint.")] = False,
    options: TrainingOptions = TrainingOptions(),  # options_from: one option per field
    submit: Annotated[
        bool, typer.Option("--submit", help="Send it to the `train` queue instead of running here.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a new adapter version of a style from its article archive (TRL SFT + LoRA)."""
    from worker.lab.training import train_style

    settings = load_settings()
    _catalog(settings).get(name)  # an unknown style fails here, before anything loads
    if submit:
        _submit_training(settings, name, corpus, feedback, options)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task(f"training {name}: loading", total=None)

        def on_progress(message: str, done: int, total: int) -> None:
            progress.update(task, description=f"training {name}: {message}", completed=done, total=total or None)

        result = train_style(
            settings, name, corpus_dir=corpus, feedback=feedback, options=options, resume=resume, progress=on_progress
        )
    if as_json:
        print_json(result.summary())
        return
    from worker.cli.style_reports import print_training

    print_training(name, result.version, result.metrics)
    console.print(f"written to {result.directory}; serve it with: copydesk styles promote {name} {result.version}")


def _submit_training(settings: Settings, name: str, corpus: Path | None, feedback: Path | None, options: Any) -> None:
    from worker.queue.celery_app import TRAIN_QUEUE, TRAIN_TASK, make_celery

    app = make_celery(settings)
    kwargs = {
        "style": name,
        "corpus": str(corpus.resolve()) if corpus else None,
        "feedback": str(feedback.resolve()) if feedback else None,
        "options": options.model_dump(mode="json"),
    }
    result = app.send_task(TRAIN_TASK, kwargs=kwargs, queue=TRAIN_QUEUE)
    console.print(f"submitted training of {name} to the {TRAIN_QUEUE} queue: task {result.id}")


@styles_app.command("promote")
@handle_errors
def styles_promote(
    name: StyleArg,
    version: Annotated[str, typer.Argument(help="Version to serve (v1, v2, ...), or `none` for the base model.")],
    as_json: JsonOpt = False,
    share: Annotated[
        float | None,
        typer.Option(
            "--share", help="Canary: serve it to this share of the style's briefs only (0-1, by brief id hash)."
        ),
    ] = None,
) -> None:
    """Serve an adapter version on the base model it was trained on (checked against it), keeping what other base
    models serve; `--share` makes it a canary on that base model, and promoting without `--share` ends that."""
    from worker.styles.served import resolve
    from worker.styles.versions import promote

    settings = load_settings()
    style = _catalog(settings).get(name)
    promoted = promote(
        style,
        version,
        configured_model_id(settings),
        share=share,
        base_weights_sha256=configured_weights_sha256(settings),
    )
    base, where = promoted.base_model, promoted.directory / "style.yaml"
    try:
        before: str | None = resolve(style.served, base)
        was = before or "base model"
    except LookupError:  # the style served nothing on this base model yet
        before, was = None, "nothing"
    if as_json:
        canary = promoted.canary.model_dump(mode="json") if promoted.canary else None
        data = {"style": name, "base_model": base, "before": before, "served": promoted.adapter, "canary": canary}
        print_json({**data, "file": str(where)})
        return
    now = promoted.adapter or "base model"
    if share is not None and promoted.canary is not None:
        canary = promoted.canary
        console.print(
            f"{name} on {base}: canary [bold]{canary.version}[/] on {canary.share:.0%} of briefs, {now} on the rest "
            f"({where})",
            highlight=False,
        )
        return
    console.print(f"{name} on {base}: {was} → [bold]{now}[/] ({where})", highlight=False)


@styles_app.command("compare")
@handle_errors
def styles_compare(name: StyleArg, as_json: JsonOpt = False) -> None:
    """Per adapter version: articles, gate pass rate, attempts, editors' decisions, edit distance, and Fisher's
    exact test of the approval rates (the canary against the served version)."""
    from worker.cli.style_reports import compare

    settings = load_settings()
    compare(settings, _catalog(settings).get(name), as_json)


EVAL_ALIASES = {"output_dir": ("--output",)}  # the flag it had before it was generated from EvalOptions


@styles_app.command("eval")
@handle_errors
@options_from(
    EvalOptions, into="options", error=EvaluationError, what="evaluation", aliases={"output_dir": ("--output",)}
)
def styles_eval(
    name: Annotated[str | None, typer.Argument(help="Style name (or --all).")] = None,
    all_styles: Annotated[bool, typer.Option("--all", help="Every style that has an adapter version.")] = False,
    version: Annotated[
        str | None, typer.Option(help="Version to evaluate (default: the served one, else the newest).")
    ] = None,
    against: Annotated[str, typer.Option(help="Compare with `base` or another version vN.")] = "base",
    options: EvalOptions = EvalOptions(),  # options_from: one option per field
    as_json: JsonOpt = False,
) -> None:
    """Held-out perplexity (base vs adapter) and the voice of drafts for shared briefs; writes a table and a PNG."""
    from worker.lab.evaluation import evaluable_styles, evaluate_styles

    if (name is None) == (not all_styles):
        raise typer.BadParameter("give one style NAME or --all")
    settings = load_settings()
    names = evaluable_styles(settings) if all_styles else [name]
    if options.output_dir is not None and len(names) > 1:
        raise typer.BadParameter("--output takes one style; with --all every report goes to its adapters/vN/eval/")
    label = name or "all styles"
    with err_console.status(f"evaluating {label}") as status:
        reports = evaluate_styles(
            settings,
            names,
            version=version,
            against=against,
            options=options,
            progress=lambda message: status.update(f"evaluating {label}: {message}"),
        )
    if as_json:
        data = [{**report.data, "files": report.files} for report in reports]
        print_json(data[0] if name else {"styles": data})
        return
    for report in reports:
        _print_eval(report)
    if len(reports) > 1:
        _print_eval_summary(reports)


def _print_eval(report: Any) -> None:
    from worker.lab.eval_report import classifier_summary, machine_summary, paired_lines, probe_lines, table_cell

    data = report.data
    table = Table(
        "variant",
        "perplexity",
        "profile distance",
        "embedding distance",
        "attributed (voice)",
        "mean P(style)",
        "memorisation trips",
        title=f"{report.style} {report.version} against {data['against']}",
    )
    for row in report.rows():
        table.add_row(
            row["variant"],
            _fmt(row["perplexity"], 2) or "n/a",
            table_cell(row, "profile_distance", 3),
            table_cell(row, "embedding_distance", 3),
            table_cell(row, "attribution_accuracy", 2),
            _fmt(row["style_probability"], 2) or "n/a",
            table_cell(row, "memorisation_trips", 2),
        )
    console.print(table)
    for label, test in data["sign_test"].items():
        console.print(
            f"paired drafts, {label} vs base: only {label}'s attributed right {test['adapter_only']}, "
            f"only base's {test['base_only']} (sign test p = {test['p_value']:.3f})",
            highlight=False,
        )
    for line in paired_lines(data):
        console.print(line, highlight=False)
    console.print(classifier_summary(data["classifier"]), highlight=False)
    console.print(machine_summary(data.get("machine", {})), highlight=False)
    for line in probe_lines(data.get("memorisation_probe", {})):
        console.print(line.removeprefix("- "), highlight=False)
    for note in data["caveats"]:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"report: {report.files['markdown']} · plot: {report.files['plot']}", highlight=False)


def _print_eval_summary(reports: list[Any]) -> None:
    table = Table(
        "style",
        "version",
        "perplexity base → adapter",
        "attributed base → adapter",
        "sign test p",
        "profile distance base → adapter",
        "embedding distance base → adapter",
        "verdict",
        title="summary",
    )
    for report in reports:
        rows = {row["variant"]: row for row in report.rows()}
        base, tuned = rows["base"], rows[report.version]
        test = report.data["sign_test"].get(report.version)
        table.add_row(
            report.style,
            report.version,
            f"{_fmt(base['perplexity'], 2)} → {_fmt(tuned['perplexity'], 2)}",
            f"{_fmt(base['attribution_accuracy'], 2)} → {_fmt(tuned['attribution_accuracy'], 2)}",
            _fmt(test["p_value"]) if test else "n/a",
            f"{_fmt(base['profile_distance'])} → {_fmt(tuned['profile_distance'])}",
            f"{_fmt(base['embedding_distance'])} → {_fmt(tuned['embedding_distance'])}",
            report.data.get("verdict", {}).get(report.version, {}).get("verdict", "n/a"),
        )
    pooled = _pooled_attribution(reports)
    if pooled is not None:
        base_share, tuned_share, test = pooled
        table.add_row(
            "all styles",
            "",
            "",
            f"{base_share:.2f} → {tuned_share:.2f}",
            _fmt(test["p_value"]),
            "",
            "",
            "",
        )
    console.print(table)


def _pooled_attribution(reports: list[Any]) -> tuple[float, float, dict[str, Any]] | None:
    """Every style's drafts together: the share attributed to the right style, base vs served adapter, and the
    sign test over all pairs (how well the styles' drafts can be told apart at all)."""
    from worker.lab.voice_classifier import sign_test

    base_right: list[bool] = []
    tuned_right: list[bool] = []
    for report in reports:
        fidelity = report.data["fidelity"]
        if "right" not in fidelity["base"]:
            return None
        base_right += fidelity["base"]["right"]
        tuned_right += fidelity[report.version]["right"]
    if not base_right:
        return None
    return sum(base_right) / len(base_right), sum(tuned_right) / len(tuned_right), sign_test(base_right, tuned_right)


def register(app: typer.Typer) -> None:
    app.add_typer(styles_app, name="styles")
