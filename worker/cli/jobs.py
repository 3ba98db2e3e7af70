"""Job-file commands of the CLI: ``jobs validate|schedule|run|history|show`` and ``beat``.

They extend the ``jobs`` group of :mod:`worker.cli.queue` (whose ``jobs list`` lists every batch job, runs
included).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from worker.cli.common import JsonOpt, console, err_console, handle_errors, open_store, print_json
from worker.config import load_settings
from worker.errors import BeatLockedError, JobFileError, QueueError
from worker.names import is_safe_name


def _local(moment: datetime | None, timezone: str, *, short: bool = False) -> str:
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z" if short else "%Y-%m-%d %H:%M:%S %Z")


def _slot(moment: datetime, timezone: str) -> str:
    """``Mon 2026-03-02 07:00 GMT (07:00Z)``: a run time in its job's zone, and in UTC."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%a %Y-%m-%d %H:%M:%S %Z} ({moment.astimezone(UTC):%H:%M:%S}Z)"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "running"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# -- validate ----------------------------------------------------------------------------------------------


@handle_errors
def jobs_validate(
    names: Annotated[list[str] | None, typer.Argument(help="Job names (default: every file in jobs/).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check job files: settings, schedule, brief source and every row; exit 1 when anything is wrong."""
    from worker.jobs.job_files import check_job_file, job_files, job_path

    settings = load_settings()
    paths = [job_path(settings.jobs_dir, name) for name in names] if names else job_files(settings.jobs_dir)
    if not paths:
        err_console.print(f"no job files in {settings.jobs_dir}")
        raise typer.Exit(1)
    checks = [check_job_file(path, styles_dir=settings.styles_dir) for path in paths]
    if as_json:
        print_json(
            [
                {
                    "file": str(c.path),
                    "job": c.job.name if c.job else None,
                    "briefs": c.briefs,
                    "over_limit": c.over_limit,
                    "problems": [vars(p) for p in c.problems],
                }
                for c in checks
            ]
        )
    else:
        for check in checks:
            for problem in check.problems:
                err_console.print(f"[yellow]invalid:[/] {problem}", highlight=False, soft_wrap=True)
        table = Table("job", "schedule", "briefs per run", "problems", title=f"{len(checks)} job file(s)")
        for c in checks:
            schedule = ""
            if c.job is not None and c.job.spec.schedule is not None:
                schedule = f"{c.job.spec.schedule.cron} ({c.job.spec.schedule.timezone})"
            elif c.job is not None:
                schedule = "on demand"
            briefs = f"{c.briefs}" + (f" (+{c.over_limit} over the limit)" if c.over_limit else "")
            mark = "[green]ok[/]" if not c.problems else f"[red]{len(c.problems)}[/]"
            table.add_row(c.path.stem, schedule, briefs if c.job else "", mark)
        console.print(table)
    if any(c.problems for c in checks):
        raise typer.Exit(1)


# -- schedule ----------------------------------------------------------------------------------------------


@handle_errors
def jobs_schedule(
    count: Annotated[int, typer.Option("--count", "-n", help="Next runs to show per job.", min=1, max=100)] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Show each job file's schedule, its next run times (local and UTC) and its latest run."""
    from worker.jobs.beat import next_runs
    from worker.jobs.job_files import job_files, read_job

    settings = load_settings()
    latest = open_store(settings).latest_runs()
    rows: list[dict[str, Any]] = []
    for path in job_files(settings.jobs_dir):
        job, problems = read_job(path)
        if job is None:
            rows.append({"job": path.stem, "error": "; ".join(str(p) for p in problems[:2])})
            continue
        spec = job.spec
        last = latest.get(job.name)
        rows.append(
            {
                "job": job.name,
                "enabled": spec.enabled,
                "cron": spec.schedule.cron if spec.schedule else None,
                "timezone": job.timezone,
                "auto_approve": spec.auto_approve,
                "next_runs": [t.isoformat() for t in next_runs(job, count)] if spec.enabled else [],
                "last_run": None if last is None else {"id": last.id, "status": last.status},
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("job", "schedule", "next runs (local / UTC)", "last run", "auto-approve", title="schedule")
    for row in rows:
        if "error" in row:
            table.add_row(row["job"], "[red]invalid[/]", row["error"], "", "")
            continue
        if row["cron"] is None:
            schedule, upcoming = "on demand", "copydesk jobs run " + row["job"]
        else:
            schedule = f"{row['cron']}\n{row['timezone']}" + ("" if row["enabled"] else "\n[yellow]disabled[/]")
            upcoming = "\n".join(_slot(datetime.fromisoformat(t), row["timezone"]) for t in row["next_runs"])
        last = row["last_run"]
        table.add_row(
            row["job"],
            schedule,
            upcoming or "-",
            last["status"] if last else "never",
            "yes" if row["auto_approve"] else "no",
        )
    console.print(table)


# -- run ---------------------------------------------------------------------------------------------------


@handle_errors
def jobs_run(
    name: Annotated[str, typer.Argument(help="Job name (the file name in jobs/ without .yaml).")],
    at: Annotated[
        str | None,
        typer.Option(help="Run the slot of this time (ISO 8601, e.g. 2026-03-02T07:00+00:00) instead of now."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the run settles.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run a job file now (or for the slot --at): record its briefs as one run and enqueue them."""
    from worker.jobs.job_files import load_job_named
    from worker.jobs.job_runs import TRIGGER_MANUAL, record_run

    settings = load_settings()
    store = open_store(settings)
    slot = _parse_at(at) if at else datetime.now(UTC)
    outcome = record_run(load_job_named(settings.jobs_dir, name), slot, store=store, trigger=TRIGGER_MANUAL)
    summary = _run_summary(outcome)
    try:
        if outcome.created:
            _publish_run(settings, outcome)
    except QueueError:
        summary["published"] = False
        if as_json:
            print_json(summary)
        raise
    finally:
        if not as_json:
            verb = "started" if outcome.created else "already exists; nothing added"
            console.print(
                f"run [bold]{outcome.run_id}[/] {verb}: {summary['enqueued']} brief(s) enqueued, "
                f"{summary['left_out']} left out"
            )
    if wait:
        from worker.cli.queue import wait_for_job
        from worker.jobs.job_runs import settle_run

        job = wait_for_job(store, outcome.run_id, timeout)
        settle_run(store, outcome.run_id)
        summary["status"] = job.status
    if as_json:
        print_json(summary)
    elif wait:
        _print_run(store.get_run(outcome.run_id))
    if wait and summary.get("status") not in ("completed", "cancelled", "failed"):
        raise typer.Exit(124)


def _run_summary(outcome: Any) -> dict[str, Any]:
    """What ``jobs run`` reports of a recorded run; prints the records it left out."""
    for problem in outcome.problems:
        err_console.print(f"[yellow]left out:[/] {problem}", highlight=False, soft_wrap=True)
    if outcome.over_limit:
        err_console.print(f"[yellow]left out:[/] {outcome.over_limit} brief(s) over limits.max_briefs")
    return {
        "run_id": outcome.run_id,
        "created": outcome.created,
        "scheduled_for": outcome.scheduled_for.isoformat(),
        "briefs": outcome.briefs,
        "enqueued": len(outcome.submission.to_publish),
        "left_out": len(outcome.problems) + outcome.over_limit,
        "published": True,
    }


def _publish_run(settings: Any, outcome: Any) -> None:
    from worker.jobs.job_runs import publish_run
    from worker.queue.celery_app import make_celery
    from worker.queue.submit import publish

    celery = make_celery(settings)
    publish_run(outcome, lambda ids: publish(celery, ids))


def _parse_at(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time such as 2026-03-02T07:00+00:00") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no UTC offset: add one, e.g. {text}+00:00")
    return moment


# -- history and show -----------------------------------------------------------------------------------


def known_job(settings: Any, store: Any, name: str) -> str:
    """``name`` when it has a job file or recorded runs; a :class:`JobFileError` otherwise (as ``jobs run`` and
    ``jobs validate`` refuse an unknown job)."""
    from worker.jobs.job_files import job_path

    try:
        job_path(settings.jobs_dir, name)
    except JobFileError:
        if not is_safe_name(name) or not store.list_runs(name, limit=1):
            raise
    return name


def _run_dict(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job_name,
        "scheduled_for": run.scheduled_for,
        "trigger": run.trigger,
        "status": run.status,
        "counts": vars(run.counts),
        "left_out": run.invalid_records + int(run.info.get("over_limit", 0)),
        "started_at": run.started_at,
        "settled_at": run.settled_at,
        "duration_seconds": run.duration_seconds,
        "auto_approve": bool(run.info.get("auto_approve")),
        "approved": run.info.get("approved", []),
        "problems": run.info.get("problems", []),
        "job_file": run.info.get("job_file"),
        "job_sha256": run.info.get("job_sha256"),
    }


@handle_errors
def jobs_history(
    name: Annotated[str, typer.Argument(help="Job name.")],
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List a job's runs, latest first: status, counts, records left out, duration."""
    from worker.jobs.job_runs import settle_runs

    settings = load_settings()
    store = open_store(settings)
    runs = store.list_runs(known_job(settings, store, name), limit=limit)
    if any(run.settled_at is None for run in runs):
        settle_runs(store, [run.id for run in runs if run.settled_at is None])
        runs = store.list_runs(name, limit=limit)
    if as_json:
        print_json([{k: v for k, v in _run_dict(r).items() if k != "problems"} for r in runs])
        return
    table = Table(title=f"{len(runs)} run(s) of {name}")
    table.add_column("run", overflow="fold", ratio=3)
    table.add_column("scheduled for", overflow="fold", ratio=2)
    table.add_column("status", overflow="fold", ratio=2)
    table.add_column("briefs", overflow="fold", ratio=2)
    table.add_column("left out", justify="right", ratio=1)
    table.add_column("took", justify="right", overflow="fold", ratio=1)
    for run in runs:
        c = run.counts
        approved = len(run.info.get("approved", []))
        table.add_row(
            run.id,
            _local(run.scheduled_for, run.info.get("timezone", "UTC"), short=True),
            f"{run.status}\n{run.trigger}" + (f"\n{approved} approved" if approved else ""),
            f"{c.total}: {c.done} done, {c.needs_attention} attention, {c.failed} failed",
            str(run.invalid_records + int(run.info.get("over_limit", 0))),
            _duration(run.duration_seconds),
        )
    console.print(table)


@handle_errors
def jobs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (from `copydesk jobs history JOB`).")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run: when and why it ran, its counts and duration, what was left out, and each brief's result."""
    from worker.jobs.job_runs import settle_run

    store = open_store(load_settings())
    settle_run(store, store.get_run(run_id).id)
    run = store.get_run(run_id)
    results = list(store.job_results(run_id))
    if as_json:
        data = _run_dict(run) | {
            "results": [
                {
                    "brief_id": r.brief_id,
                    "brief_status": r.status,
                    "article_id": r.article.id if r.article else None,
                    "article_status": r.article.status if r.article else None,
                    "error": r.error,
                }
                for r in results
            ]
        }
        print_json(data)
        return
    _print_run(run)
    table = Table("brief", "status", "article", "error", title="briefs")
    for r in results:
        table.add_row(
            r.brief_id, r.article.status if r.article else r.status, r.article.id if r.article else "", r.error or ""
        )
    console.print(table)


def _print_run(run: Any) -> None:
    tz = run.info.get("timezone", "UTC")
    c = run.counts
    lines = [
        f"[bold]{run.id}[/]  job {run.job_name}  ({run.trigger})",
        f"scheduled for {_local(run.scheduled_for, tz)}; started {_local(run.started_at, tz)}",
        f"status {run.status}; duration {_duration(run.duration_seconds)}",
        f"briefs {c.total}: {c.done} done, {c.needs_attention} need attention, {c.failed} failed, "
        f"{c.cancelled} cancelled, {c.queued} queued, {c.running} running",
    ]
    if run.info.get("auto_approve"):
        lines.append(f"auto-approve on: {len(run.info.get('approved', []))} article(s) approved")
    over = int(run.info.get("over_limit", 0))
    if run.invalid_records or over:
        lines.append(f"left out: {run.invalid_records} invalid record(s), {over} over limits.max_briefs")
    console.print("\n".join(lines), highlight=False)
    for problem in run.info.get("problems", []):
        where = ", ".join(
            filter(None, [problem["file"], problem["record"], problem["field"] and f"field '{problem['field']}'"])
        )
        console.print(f"  [yellow]left out:[/] {where}: {problem['message']}", highlight=False, soft_wrap=True)


# -- beat --------------------------------------------------------------------------------------------------


@handle_errors
def beat_command(
    max_interval: Annotated[
        float, typer.Option(help="Longest sleep between ticks (job file changes take effect within it).", min=0.1)
    ] = 5.0,
    lock_ttl: Annotated[
        float, typer.Option(help="Seconds the single-scheduler lock outlives a beat that stopped heartbeating.", min=3)
    ] = 30.0,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run Celery beat with the schedule of jobs/ (one beat per store; see docs/scheduling.md)."""
    from worker.jobs.beat import make_lock
    from worker.pipeline.runner import worker_identity
    from worker.queue.celery_app import app as celery

    settings = celery.conf.copydesk_settings
    store = open_store(settings)
    lock = make_lock(settings, store, worker_identity("beat"), ttl=lock_ttl)
    lock.acquire()
    celery.conf.copydesk_beat_lock = lock
    try:
        celery.Beat(scheduler="worker.jobs.beat:JobScheduler", max_interval=max_interval, loglevel=loglevel).run()
    finally:
        celery.conf.copydesk_beat_lock = None
        if not lock.lost:
            lock.release()
        store.close()
    if lock.lost:
        raise BeatLockedError("beat stopped: it lost the single-scheduler lock (another beat took over)")


def register(app: typer.Typer) -> None:
    """Add the job-file commands to the ``jobs`` group and ``beat`` to ``app``."""
    from worker.cli.queue import jobs_app

    jobs_app.info.help = "Batch jobs and job files: list, validate, schedule, run, history, show."
    jobs_app.command("validate")(jobs_validate)
    jobs_app.command("schedule")(jobs_schedule)
    jobs_app.command("run")(jobs_run)
    jobs_app.command("history")(jobs_history)
    jobs_app.command("show")(jobs_show)
    app.command("beat")(beat_command)
