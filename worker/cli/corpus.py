"""Corpus commands of the CLI: inspect an archive (summary, ``--list`` of kept articles, ``--json``) and show one
article's brief and cleaned body exactly as training sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from worker.cli.common import CommandGroup, JsonOpt, console, handle_errors, print_json
from worker.config import load_settings

corpus_app = CommandGroup(help="Article archives used to train styles.")

DirArg = Annotated[Path, typer.Argument(help="Folder of Markdown posts (Hugo, Jekyll, Zola, Go blog, ...).")]
MinWordsOpt = Annotated[int, typer.Option(help="Pages whose body has fewer words are skipped as near-empty.")]


@corpus_app.command("inspect")
@handle_errors
def corpus_inspect(
    directory: DirArg,
    min_words: MinWordsOpt = 60,
    max_length: Annotated[int, typer.Option(help="Training's --max-length: count the articles longer.")] = 512,
    listing: Annotated[bool, typer.Option("--list", help="List every kept article.")] = False,
    tokens: Annotated[bool, typer.Option(help="Count tokens with the base model's tokenizer.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Counts, skipped files by reason, dates, authors, code, directives, token lengths and the voice profile."""
    from worker.lab.corpus import load_corpus
    from worker.lab.corpus_report import inspect_corpus
    from worker.lab.corpus_tokens import base_model_counter

    settings = load_settings()
    corpus = load_corpus(directory, min_words=min_words)
    counter = base_model_counter(settings) if tokens and corpus.articles else None
    report = inspect_corpus(corpus, settings.language, count_tokens=counter, max_length=max_length, listing=listing)
    if as_json:
        print_json(report)
        return
    _print_summary(report)
    if listing:
        _print_listing(report["kept_articles"])


@corpus_app.command("show")
@handle_errors
def corpus_show(
    directory: DirArg,
    article_id: Annotated[str, typer.Argument(help="An article id from `corpus inspect --list`.")],
    min_words: MinWordsOpt = 60,
    as_json: JsonOpt = False,
) -> None:
    """One kept article: its extracted brief and its cleaned body, exactly as training will see them."""
    from worker.lab.corpus import CorpusError, load_corpus
    from worker.lab.corpus_report import show_article

    shown = show_article(load_corpus(directory, min_words=min_words), article_id)
    if shown is None:
        raise CorpusError(f"no kept article {article_id!r} in {directory} (see `copydesk corpus inspect --list`)")
    if as_json:
        print_json(shown)
        return
    console.rule(f"{shown['id']} · {shown['path']} · date {shown['date']} ({shown['date_source']})")
    print_json(shown["brief"])
    for warning in shown["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.rule("body")
    console.print(shown["body"], markup=False, highlight=False, soft_wrap=True)


def _pairs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"


def _print_summary(report: dict[str, Any]) -> None:
    console.print(
        f"[bold]{report['articles']}[/] article(s) from {report['files']} Markdown file(s) in {report['root']}, "
        f"{report['words']} words; {report['skipped']} skipped ({_pairs(report['skipped_by_reason'])})",
        highlight=False,
    )
    console.print(
        f"layouts: {_pairs(report['layouts'])} · front matter: {_pairs(report['front_matter'])} · "
        f"content types: {_pairs(report['content_types'])}",
        highlight=False,
    )
    dates, authors = report["dates"], report["authors"]
    console.print(
        f"dates: {dates['found']}/{report['articles']} ({_pairs(dates['sources'])}) · authors: "
        f"{authors['articles_with_authors']} article(s), {authors['distinct']} distinct · code blocks kept: "
        f"{report['code_blocks']} · directives inlined: {report['directives_inlined']}, placeholders: "
        f"{report['placeholders']} · articles with warnings: {report['articles_with_warnings']}",
        highlight=False,
    )
    if tokens := report["tokens"]:
        console.print(_token_line(tokens), highlight=False)
    coverage = Table("field", "given in front matter", title="field coverage")
    for name, count in report["coverage"].items():
        coverage.add_row(name, f"{count}/{report['articles']}")
    console.print(coverage)
    if report["profile"]:
        _print_profile(report["profile"])
    if report["skipped_files"]:
        skipped = Table("file", "reason", title="skipped files")
        for item in report["skipped_files"]:
            skipped.add_row(item["path"], item["reason"])
        console.print(skipped)


def _token_line(tokens: dict[str, Any]) -> str:
    if not tokens["articles"]:
        return "tokens: no articles"
    return (
        f"tokens per article: p10 {tokens['p10']}, median {tokens['median']}, p90 {tokens['p90']}, max "
        f"{tokens['max']} · longer than --max-length {tokens['max_length']}: {tokens['longer']} article(s), "
        f"{tokens['tokens_cut']} tokens past it"
    )


def _print_listing(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "title", "date (source)", "authors", "words", "tokens", "warnings", title="kept articles")
    for row in rows:
        table.add_row(
            row["id"],
            row["title"][:60],
            f"{row['date'] or '-'} ({row['date_source']})",
            ", ".join(row["authors"])[:40],
            str(row["words"]),
            "" if row["tokens"] is None else str(row["tokens"]),
            "; ".join(row["warnings"])[:80],
        )
    console.print(table)


def _print_profile(profile: dict[str, Any]) -> None:
    lengths = Table("words", "articles", title="length distribution")
    for row in profile["length_histogram"]:
        if row["count"]:
            lengths.add_row(row["words"], "█" * row["count"] + f" {row['count']}")
    console.print(lengths)
    table = Table("measure", "p10", "median", "p90", "mean", title="readability and tone profile")
    for name, summary in {"words": profile["words"], **profile["features"]}.items():
        table.add_row(name, *(_fmt(summary[key]) for key in ("p10", "median", "p90", "mean")))
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    app.add_typer(corpus_app, name="corpus")
