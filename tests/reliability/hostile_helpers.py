"""Helpers of the hostile-input, hostile-asset and limit tests of the reliability suite.

* :class:`CaseCounter` counts the cases a hypothesis test actually executed and the exceptions that were not
  copydesk's own clear errors (the ledger's *crashes*);
* :func:`reliability_deployment` is a :class:`queue_helpers.Deployment` (real ``copydesk worker``
  processes, the tiny model, an SQLite store, the embedded broker) on styles the test writes;
* :func:`publish_raw` puts a hand-made message on a worker's queue with kombu, bypassing Celery's
  serializer: a pickle payload, a malformed JSON task call;
* :class:`PoolWatch` tells whether a worker's main process and pool processes survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queue_helpers import Deployment, WorkerProcess, write_plugin

from worker.errors import CopydeskError
from worker.intake.loading import BriefProblem, SourcedBrief, iter_brief_file

SUFFIXES = (".jsonl", ".csv", ".json", ".yaml")


# ------------------------------------------------------------------------------------------------ counting


@dataclass
class CaseCounter:
    """Cases executed by a (hypothesis) test, and the unexpected exceptions among them."""

    cases: int = 0
    records: int = 0
    lost: int = 0
    duplicates: int = 0
    crashes: int = 0
    crash_examples: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def case(self) -> Iterator[None]:
        """One case: counted; an exception that is not a :class:`CopydeskError` or an assertion is a crash."""
        self.cases += 1
        try:
            yield
        except (AssertionError, CopydeskError):
            raise
        except Exception as exc:
            self.crashes += 1
            self.crash_examples.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            raise


def load_items(path: Path) -> list[SourcedBrief | BriefProblem]:
    """Every item of one brief file (the loader must never raise: the caller counts it as a crash)."""
    return list(iter_brief_file(path))


def assert_clear_problem(problem: BriefProblem, path: Path) -> None:
    """A problem a person can act on: names the file, is one printable line, is not an echo of a huge value."""
    text = str(problem)
    assert problem.file == str(path), problem
    assert problem.message.strip(), problem
    assert text.isprintable(), repr(text[:200])
    assert len(text) < 1500, f"problem message of {len(text)} characters: {text[:200]}..."


# ------------------------------------------------------------------------------------------------ files


def dump_records(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` in the format of ``path``'s suffix (CSV: union of keys as the header, lists ;-joined)."""
    import csv
    import io

    import yaml

    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps({"briefs": records}, ensure_ascii=False), encoding="utf-8")
    elif suffix == ".yaml":
        path.write_text(yaml.safe_dump({"briefs": records}, allow_unicode=False, sort_keys=False), encoding="utf-8")
    elif suffix == ".csv":
        header = list(dict.fromkeys(key for record in records for key in record))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for record in records:
            writer.writerow([_cell(record.get(name)) for name in header])
        path.write_text(buffer.getvalue(), encoding="utf-8")
    else:
        raise ValueError(suffix)
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(item) for item in value)
    return str(value)


# --------------------------------------------------------------------------------------------- deployments


def write_test_style(styles_dir: Path, name: str, *, adapter: str | None = None, max_new_tokens: int = 48) -> Path:
    """A style routed by the category ``<name>-cat``, one candidate, no gates (every draft passes)."""
    import yaml

    directory = styles_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name,
        "description": f"reliability test style {name}",
        "system_prompt": "You write short articles.",
        "routing": {"categories": {f"{name}-cat": 3}},
        "gates": [],
        "generation": {"candidates": 1, "max_new_tokens": max_new_tokens},
        "adapter": adapter,
    }
    (directory / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return directory


def reliability_deployment(root: Path, model_dir: Path, styles_dir: Path, **settings: object) -> Deployment:
    """A deployment on the embedded broker and an SQLite store under ``root``. Briefs count as stale after 120 s
    (not 10): no batch here runs that long, so the reconciler publishes no duplicate messages to drain."""
    plugin = write_plugin(root / "plugin")
    settings = {"stale_after": 120, **settings}
    return Deployment(
        root,
        model_dir,
        styles_dir,
        plugin,
        f"sqlite:///{root / 'home' / 'copydesk.db'}",
        None,
        settings={f"COPYDESK_{key.upper()}": str(value) for key, value in settings.items()},
    )


def embedded_broker_url(deployment: Deployment) -> str:
    return f"sqla+sqlite:///{(deployment.home / 'broker.db').resolve()}"


@dataclass
class PoolWatch:
    """The pids of a worker and its pool when watching started; :meth:`crashes` counts those gone."""

    worker: WorkerProcess
    pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pids = self.worker.pool_pids()

    def crashes(self) -> int:
        """1 for a dead main process, plus one per pool process that is no longer there (died, replaced)."""
        dead_main = 0 if self.worker.alive() else 1
        now = set(self.worker.pool_pids())
        return dead_main + sum(1 for pid in self.pids if pid not in now)


# ----------------------------------------------------------------------------------------------- messages


def publish_raw(
    broker_url: str,
    body: bytes,
    *,
    content_type: str,
    task: str = "copydesk.write_brief",
    queue: str = "generate",
    content_encoding: str = "binary",
) -> str:
    """Publish a Celery protocol-2 message with a hand-made body, as an attacker with broker access could."""
    from kombu import Connection, Exchange, Queue

    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "argsrepr": "(...)",
        "kwargsrepr": "{}",
        "origin": "reliability-test",
    }
    with Connection(broker_url, connect_timeout=10) as conn:
        target = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        producer = conn.Producer()
        producer.publish(
            body,
            exchange=target.exchange,
            routing_key=queue,
            declare=[target],
            content_type=content_type,
            content_encoding=content_encoding,
            headers=headers,
            serializer=None,
            retry=True,
        )
    return task_id


def json_task_body(*args: Any) -> bytes:
    """The JSON body of a protocol-2 task message calling the task with ``args``."""
    return json.dumps([list(args), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()


class MarkerPayload:
    """Unpickling this object runs ``os.system("touch <marker>")``: the classic pickle exploit."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def pickle_bomb(marker: Path, *, wrap_as_task: bool = True) -> bytes:
    """A pickle that creates ``marker`` when loaded (as a task body: ``[[payload], {}, {}]``)."""
    payload: Any = MarkerPayload(marker)
    if wrap_as_task:
        payload = [[payload], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return pickle.dumps(payload, protocol=2)


def payload_is_live(data: bytes, marker: Path) -> bool:
    """Unpickle ``data`` in a throwaway process and say whether that created ``marker`` (a control: the
    payload the worker is sent really would run)."""
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, check=False, timeout=60, capture_output=True)
    return marker.exists()
