"""Queue commands of the CLI: worker, submit, status, cancel, results, jobs, workers, run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.cli.common import (
    CommandGroup,
    FilesArg,
    JsonOpt,
    console,
    err_console,
    format_option,
    handle_errors,
    open_store,
    print_json,
    print_outcome_table,
)
from worker.config import Settings, load_settings
from worker.errors import QueueError
from worker.store.views import job_dict, result_line

RESULT_FORMATS = ("jsonl", "table")

jobs_app = CommandGroup(help="Batch jobs: list them.")


def _celery(settings: Settings) -> Any:
    from worker.queue.celery_app import make_celery

    return make_celery(settings)


@handle_errors
def worker_command(
    concurrency: Annotated[int, typer.Option(help="Pool processes; each loads the model once.")] = 1,
    queues: Annotated[str, typer.Option(help="Queues to consume, comma-separated.")] = "generate,train",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    name: Annotated[str, typer.Option(help="Worker node name.")] = "copydesk@%h",
) -> None:
    """Run a Celery worker (prefork pool, so time limits are enforced) on the configured broker."""
    from worker.queue.celery_app import app

    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--queues={queues}",
            f"--loglevel={loglevel}",
            "--events",
            f"--hostname={name}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


@handle_errors
def submit_command(
    files: FilesArg,
    as_json: JsonOpt = False,
    completion_window: Annotated[
        str | None, typer.Option(help="Briefs not started within this time expire, e.g. 24h (s, m, h, d).")
    ] = None,
) -> None:
    """Validate brief files, enqueue the valid briefs as one job, and print the job id."""
    from worker.queue.submit import publish_job
    from worker.store.expiry import parse_completion_window

    settings = load_settings()
    window = parse_completion_window(completion_window) if completion_window else None
    recorded = _record(files, open_store(settings), settings, window)
    submission = recorded.submission
    for brief_id in submission.already_done:
        err_console.print(f"[cyan]already written:[/] brief {brief_id} has an article; not generated again")
    summary = {
        "job_id": submission.job_id,
        "enqueued": len(submission.to_publish),
        "already_done": submission.already_done,
        "already_queued": submission.already_queued,
        "invalid": len(recorded.problems),
        "published": True,
    }
    try:
        publish_job(_celery(settings), submission)
    except QueueError:
        summary["published"] = False
        raise
    finally:
        _print_submitted(summary, as_json)


def _record(files: list[Path], store: Any, settings: Settings, completion_window: Any = None) -> Any:
    """Record the briefs of ``files`` as one job; print the invalid records and the unknown pinned styles."""
    from worker.queue.submit import record

    recorded = record(files, store=store, styles_dir=settings.styles_dir, completion_window=completion_window)
    if recorded.pins_unchecked is not None:  # the styles may live on the workers only: their catalog decides
        err_console.print(
            f"[yellow]pinned styles not checked:[/] {recorded.pins_unchecked}", highlight=False, soft_wrap=True
        )
    for problem in recorded.problems:
        err_console.print(f"[yellow]invalid (not enqueued):[/] {problem}", highlight=False, soft_wrap=True)
    for problem in recorded.unknown_pins:
        err_console.print(
            f"[yellow]warning (enqueued; the workers' styles decide):[/] {problem}", highlight=False, soft_wrap=True
        )
    return recorded


def _print_submitted(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    console.print(
        f"job [bold]{summary['job_id']}[/]: {summary['enqueued']} brief(s) enqueued, "
        f"{len(summary['already_done'])} already written, {summary['invalid']} invalid"
    )


@handle_errors
def status_command(
    job_id: Annotated[str, typer.Argument(help="Job id printed by submit.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show a live progress bar until the job settles.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's status and counts (--wait: live progress until it completes)."""
    store = open_store(load_settings())
    job = wait_for_job(store, job_id, timeout) if wait else store.get_job(job_id)
    if as_json:
        print_json(job_dict(job))
    else:
        _print_job(job)
    if wait and job.status not in ("completed", "cancelled", "failed"):
        raise typer.Exit(124)


def wait_for_job(store: Any, job_id: str, timeout: float = 0) -> Any:
    job = store.get_job(job_id)
    deadline = time.monotonic() + timeout if timeout else None
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    ) as progress:
        task = progress.add_task(job_id, total=job.counts.total)
        while True:
            job = store.get_job(job_id)
            c = job.counts
            progress.update(
                task,
                completed=c.settled,
                description=f"{job.status}: {c.running} running, {c.done} done, {c.needs_attention} need attention, "
                f"{c.failed} failed",
            )
            if job.status in ("completed", "cancelled", "failed"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                return job
            time.sleep(1.0)


def _print_job(job: Any) -> None:
    table = Table(caption="run = running, attn = needs attention")
    table.add_column("job", overflow="fold")
    table.add_column("status", overflow="fold")
    for heading in ("total", "queued", "run", "done", "attn", "failed", "cancel"):
        table.add_column(heading, justify="right", overflow="fold")
    c = job.counts
    table.add_row(
        job.id,
        job.status,
        *(str(v) for v in (c.total, c.queued, c.running, c.done, c.needs_attention, c.failed, c.cancelled)),
    )
    console.print(table)


@handle_errors
def cancel_command(job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonOpt = False) -> None:
    """Cancel a job: briefs not yet started are cancelled; running ones finish."""
    from worker.queue.events import job_settled

    settings = load_settings()
    store = open_store(settings)
    cancelled = store.cancel_job(job_id)
    job = store.get_job(job_id)
    job_settled(store, _celery(settings), job)  # webhooks, as the API's cancel
    if as_json:
        print_json({"job_id": job_id, "cancelled": cancelled, "status": job.status})
        return
    console.print(f"job {job_id}: {cancelled} brief(s) cancelled; status {job.status}")


@handle_errors
def results_command(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    output_format: Annotated[str, format_option(RESULT_FORMATS, "jsonl: one line per brief id (custom_id).")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Write one line per brief id (custom_id) with its article or its error."""
    store = open_store(load_settings())
    lines = (json.dumps(result_line(r), ensure_ascii=False, default=str) for r in store.job_results(job_id))
    if output_format == "table":
        table = Table("brief", "status", "article", "error")
        for r in store.job_results(job_id):
            table.add_row(
                r.brief_id,
                r.article.status if r.article else r.status,
                r.article.id if r.article else "",
                r.error or "",
            )
        console.print(table)
        return
    if output is None:
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    with output.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    err_console.print(f"results written to {output}")


@jobs_app.command("list")
@handle_errors
def jobs_list(limit: Annotated[int, typer.Option(help="At most this many.")] = 50, as_json: JsonOpt = False) -> None:
    """List jobs, newest first, with their status and counts."""
    jobs = open_store(load_settings()).list_jobs(limit=limit)
    if as_json:
        print_json([job_dict(j) for j in jobs])
        return
    table = Table("job", "status", "total", "done", "needs attention", "failed", "cancelled", "created")
    for j in jobs:
        c = j.counts
        table.add_row(
            j.id,
            j.status,
            str(c.total),
            str(c.done),
            str(c.needs_attention),
            str(c.failed),
            str(c.cancelled),
            f"{j.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@handle_errors
def workers_command(as_json: JsonOpt = False) -> None:
    """List live workers and the queues they consume (needs a broker with remote control: Redis or RabbitMQ)."""
    from worker.queue.celery_app import is_embedded

    settings = load_settings()
    app = _celery(settings)
    if is_embedded(app.conf.broker_url):
        raise QueueError(
            "the embedded SQLite broker does not support Celery remote control (no broadcast), so live workers "
            "cannot be listed; use Redis or RabbitMQ (COPYDESK_BROKER_URL) for `copydesk workers` and Flower"
        )
    replies = app.control.inspect(timeout=2.0).active_queues() or {}
    rows = {name: sorted(q["name"] for q in queues) for name, queues in replies.items()}
    if as_json:
        print_json(rows)
        return
    table = Table("worker", "queues", title=f"{len(rows)} live worker(s)")
    for name, queues in sorted(rows.items()):
        table.add_row(name, ", ".join(queues))
    console.print(table)


@handle_errors
def run_command(
    files: FilesArg,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 1800,
    as_json: JsonOpt = False,
) -> None:
    """The main job: start an embedded worker, submit FILES, show progress, print results, stop the worker."""
    from worker.queue.submit import publish_job

    settings = load_settings()
    store = open_store(settings)
    worker = _start_worker()
    try:
        recorded = _record(files, store, settings)
        submission = recorded.submission
        publish_job(_celery(settings), submission)
        if not as_json:
            console.print(f"job [bold]{submission.job_id}[/]: {len(submission.to_publish)} brief(s) submitted")
        job = wait_for_job(store, submission.job_id, timeout)
    finally:
        _stop_worker(worker)
    results = list(store.job_results(submission.job_id))
    if as_json:
        print_json(job_dict(job) | {"invalid": len(recorded.problems), "results": [result_line(r) for r in results]})
    else:
        print_outcome_table(results)
        _print_job(job)
    if job.status != "completed" or job.counts.failed or recorded.problems:
        raise typer.Exit(1)


def _start_worker() -> subprocess.Popen[bytes]:
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed with the process
    command, env = embedded_worker_command()
    err_console.print("starting an embedded worker (the first run converts the model, ~25 s)")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def embedded_worker_command() -> tuple[list[str], dict[str, str]]:
    """The embedded worker's command line and environment: it imports the same ``worker`` package as this process.

    ``python -m`` would put the current directory first on the path, so a ``worker`` folder there (another
    checkout) would be imported instead, with its own default home, store and broker: the job would never start.
    ``-P`` leaves the current directory out; ``PYTHONPATH`` starts with the folder this package was imported from.
    """
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    if package_root not in {str(Path(entry).resolve()) for entry in sys.path if entry}:  # a checkout, not site-packages
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    return [sys.executable, "-P", "-m", "worker.cli.main", "worker", "--loglevel=WARNING"], env


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM: finish the current task), then make sure the whole group is gone."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    err_console.print("worker stopped")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    app.command("cancel")(cancel_command)
    app.command("results")(results_command)
    app.command("workers")(workers_command)
    app.command("run")(run_command)
    app.add_typer(jobs_app, name="jobs")
