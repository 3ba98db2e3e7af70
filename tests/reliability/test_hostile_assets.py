"""Hostile assets: pickle adapters, corrupt safetensors adapters, prompt templates that try to leave the
sandbox, and pickle-serialised Celery messages, against a real ``copydesk worker``.

One deployment (tiny model, SQLite store, embedded broker) serves a ``good`` style with a real LoRA adapter
and one style per broken adapter. Their briefs are submitted as one job, so the worker generates briefs of
good and broken styles in the same batches: the broken styles' briefs must fail with an error naming the
style and the file, the good style's briefs must each get one article, generated once (a broken adapter
that spoilt a shared batch would show up as a retry). The templates directory holds a ``review.j2`` that
tries to run a shell command through the sandbox. Then hand-made messages (pickle, YAML with a Python tag,
a pickle body labelled JSON) that would create a marker file go onto the worker's queue with kombu, and a
normal brief submitted after them must still be written. In-process checks cover every pickle suffix and
a list of sandbox-escape templates in both places templates are rendered (prompts and job files).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hostile_helpers import (
    CaseCounter,
    PoolWatch,
    embedded_broker_url,
    payload_is_live,
    pickle_bomb,
    publish_raw,
    reliability_deployment,
    write_test_style,
)
from ledger import Ledger, lost_and_duplicated
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, adapter_b_dir, tiny_model_dir
from queue_helpers import Deployment, wait_until, write_briefs
from safetensors.torch import load_file, save_file

from worker.config import PROJECT_ROOT
from worker.engine.adapters import ADAPTER_WEIGHTS, PICKLE_SUFFIXES, AdapterRef, check_adapter
from worker.errors import AdapterError, PromptError
from worker.intake.briefs import Brief
from worker.jobs.expansion import RunContext, expand
from worker.jobs.job_files import load_job
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import Style

__all__ = ["adapter_a_dir", "adapter_b_dir", "tiny_model_dir"]  # fixtures used by name

AREA = "hostile assets"
GOOD = "good"
CORRUPTIONS = {
    "garbage": "the file replaced by random bytes",
    "truncated": "the file cut in half",
    "nanweights": "a valid header, every weight NaN",
    "overflow": "a valid header, weights of 3e37 (finite, overflow to inf)",
}
PICKLED = {
    "pickled": "adapter_model.bin only",
    "pickledtoo": "adapter_model.bin next to a valid adapter_model.safetensors",
}
GOOD_BRIEFS = 4
BAD_BRIEFS = 2  # per broken style
SANDBOX_BRIEFS = 2


def escape_attacks(marker: Path) -> list[str]:
    """Templates that would create ``marker`` (or reach Python internals) if they left the sandbox."""
    command = f"touch {marker}"
    return [
        f"{{{{ cycler.__init__.__globals__.os.system('{command}') }}}}",
        f"{{{{ joiner.__init__.__globals__.os.system('{command}') }}}}",
        f"{{{{ lipsum.__globals__['os'].system('{command}') }}}}",
        f"{{{{ namespace.__init__.__globals__.os.popen('{command}').read() }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__['sys'].modules['os']"
        f".system('{command}') }}}}",
        f"{{{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('{command}') }}}}",
        f"{{{{ ''.format.__globals__['os'].system('{command}') }}}}",
        f"{{% set x = brief.__class__.__base__.__subclasses__() %}}{{{{ x }}}}{{{{ '{command}' }}}}",
        "{% set t = brief.tags.append('owned') %}{{ brief.tags }}",
        "{{ brief.update({'title': 'owned'}) }}",
        "{{ (brief.title|attr('__class__')).__mro__ }}",
        f"{{{{ range.__init__.__globals__ }}}}{{{{ '{command}' }}}}",
    ]


# --------------------------------------------------------------------------------------------- the scenario


@dataclass
class AssetRun:
    deployment: Deployment
    job_id: str
    marker_dir: Path
    good_ids: list[str]
    bad_ids: dict[str, list[str]]  # style -> brief ids
    sandbox_ids: list[str]
    pool_crashes_after_job: int
    message_marker: Path
    messages: list[str]
    message_payloads_live: bool
    after_ids: list[str]
    pool_crashes_after_messages: int
    worker_log: str


def build_styles(root: Path, adapter_good: Path, adapter_other: Path, marker_dir: Path) -> Path:
    styles = root / "styles"
    write_test_style(styles, GOOD, adapter="v1")
    shutil.copytree(adapter_good, styles / GOOD / "adapters" / "v1")
    tensors = load_file(adapter_other / ADAPTER_WEIGHTS)
    for name in CORRUPTIONS:
        directory = write_test_style(styles, name, adapter="v1") / "adapters" / "v1"
        shutil.copytree(adapter_other, directory)
        weights = directory / ADAPTER_WEIGHTS
        if name == "garbage":
            weights.write_bytes(os.urandom(weights.stat().st_size))
        elif name == "truncated":
            data = weights.read_bytes()
            weights.write_bytes(data[: len(data) // 2])
        elif name == "nanweights":
            save_file({k: torch.full_like(v, float("nan")) for k, v in tensors.items()}, weights)
        else:
            save_file({k: torch.full_like(v, 3e37) for k, v in tensors.items()}, weights)
    for name in PICKLED:
        directory = write_test_style(styles, name, adapter="v1") / "adapters" / "v1"
        shutil.copytree(adapter_other, directory)
        if name == "pickled":
            (directory / ADAPTER_WEIGHTS).unlink()
        (directory / "adapter_model.bin").write_bytes(pickle_bomb(marker_dir / f"adapter-{name}", wrap_as_task=False))
    return styles


def build_templates(root: Path, marker: Path) -> Path:
    templates = root / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    attack = escape_attacks(marker)[0]
    (templates / "prompts" / "review.j2").write_text(f"Write a review.\n{attack}\n", encoding="utf-8")
    return templates


def brief(brief_id: str, category: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": brief_id,
        "title": f"How to look after a garden ({brief_id})",
        "category": category,
        "target_words": 50,
        **fields,
    }


@pytest.fixture(scope="module")
def asset_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, adapter_a_dir: Path, adapter_b_dir: Path
) -> Iterator[AssetRun]:
    root = tmp_path_factory.mktemp("hostile-assets")
    marker_dir = root / "markers"
    marker_dir.mkdir()
    styles = build_styles(root, adapter_a_dir, adapter_b_dir, marker_dir)
    templates = build_templates(root, marker_dir / "template")
    d = reliability_deployment(root, tiny_model_dir, styles, templates_dir=templates, default_style=GOOD)
    try:
        good_ids = [f"good-{i}" for i in range(GOOD_BRIEFS)]
        bad_ids = {name: [f"{name}-{i}" for i in range(BAD_BRIEFS)] for name in [*CORRUPTIONS, *PICKLED]}
        sandbox_ids = [f"sandbox-{i}" for i in range(SANDBOX_BRIEFS)]
        records = [brief(b, f"{GOOD}-cat") for b in good_ids]
        records += [brief(b, f"{name}-cat") for name, ids in bad_ids.items() for b in ids]
        records += [brief(b, f"{GOOD}-cat", content_type="review") for b in sandbox_ids]
        # Interleave, so that every batch mixes good and broken styles.
        records = records[::2] + records[1::2]
        worker = d.start_worker()
        watch = PoolWatch(worker)
        submitted = d.submit(write_briefs(root / "assets.yaml", records))
        d.wait_for_job(submitted["job_id"], timeout=240)
        crashes_after_job = watch.crashes()

        # Hand-made messages that would create a marker file if the worker deserialised them.
        message_marker = marker_dir / "message"
        bomb = pickle_bomb(message_marker)
        live = payload_is_live(bomb, message_marker)
        if message_marker.exists():
            message_marker.unlink()
        url = embedded_broker_url(d)
        yaml_bomb = f"- [!!python/object/apply:os.system ['touch {message_marker}']]\n- {{}}\n- {{}}\n".encode()
        messages = [
            publish_raw(url, bomb, content_type="application/x-python-serialize"),
            publish_raw(url, yaml_bomb, content_type="application/x-yaml", content_encoding="utf-8"),
            publish_raw(url, bomb, content_type="application/json", content_encoding="utf-8"),
        ]
        wait_until(
            lambda: d.embedded_broker_messages(visible_only=True) == 0,
            timeout=60,
            message=lambda: f"the worker did not take the hostile messages\n{d.logs()}",
        )
        after_ids = ["after-0", "after-1"]
        after = d.submit(write_briefs(root / "after.yaml", [brief(b, f"{GOOD}-cat") for b in after_ids]))
        d.wait_for_job(after["job_id"], timeout=120)
        time.sleep(0.5)  # let a late unpickling (if any) show its marker
        crashes_after_messages = watch.crashes()
        yield AssetRun(
            d,
            submitted["job_id"],
            marker_dir,
            good_ids,
            bad_ids,
            sandbox_ids,
            crashes_after_job,
            message_marker,
            messages,
            live,
            after_ids,
            crashes_after_messages,
            worker.log(0),
        )
    finally:
        d.kill_all()


def errors_of(run: AssetRun, ids: list[str]) -> dict[str, tuple[str, str]]:
    rows = run.deployment.brief_rows()
    return {b: (rows[b]["status"], rows[b]["last_error"] or "") for b in ids}


# ------------------------------------------------------------------------------------------------ pickles


def test_pickle_adapters_are_refused(asset_run: AssetRun, ledger: Ledger, tmp_path: Path, adapter_b_dir: Path) -> None:
    row = ledger.row(
        AREA,
        "pickle adapter (.bin and every pickle suffix)",
        injection=(
            "real worker: 2 styles whose adapter is a pickle adapter_model.bin that would create a marker file "
            "(alone; next to valid safetensors), briefs mixed with a good style's; in-process: each pickle suffix"
        ),
        checked="briefs of those styles fail naming the .bin file; marker never created; good style unaffected",
    )
    counter = CaseCounter()
    # In-process: every pickle suffix next to an otherwise valid adapter.
    for suffix in PICKLE_SUFFIXES:
        with counter.case():
            directory = shutil.copytree(adapter_b_dir, tmp_path / f"adapter{suffix}")
            marker = tmp_path / f"marker{suffix}"
            (directory / f"adapter_model{suffix}").write_bytes(pickle_bomb(marker, wrap_as_task=False))
            with pytest.raises(AdapterError, match="pickle") as refused:
                check_adapter(AdapterRef("calm", "v1", directory), TINY_MODEL_ID)
            assert f"adapter_model{suffix}" in str(refused.value)
            assert not marker.exists()
    # In the worker.
    ids = [b for name in PICKLED for b in asset_run.bad_ids[name]]
    errors = errors_of(asset_run, ids)
    crashes = counter.crashes + asset_run.pool_crashes_after_job
    lost, duplicates = lost_and_duplicated(asset_run.deployment.article_counts(), asset_run.good_ids)
    row.add(
        runs=1,
        faults=len(PICKLE_SUFFIXES) + len(PICKLED),
        briefs=len(ids) + len(asset_run.good_ids),
        lost=lost,
        duplicates=duplicates,
        crashes=crashes,
    )
    for brief_id, (status, error) in errors.items():
        style = brief_id.rsplit("-", 1)[0]
        assert status == "failed", (brief_id, status, error)
        assert "pickle" in error and "adapter_model.bin" in error and f"adapter {style} v1" in error, error
    assert not any(asset_run.marker_dir.glob("adapter-*")), "a pickle adapter was unpickled"
    assert not asset_run.deployment.article_counts().keys() & set(ids)
    assert (lost, duplicates, crashes) == (0, 0, 0), asset_run.deployment.logs()


# ----------------------------------------------------------------------------------------- corrupt weights


def test_a_corrupt_safetensors_adapter_disables_only_its_style(asset_run: AssetRun, ledger: Ledger) -> None:
    row = ledger.row(
        AREA,
        "corrupt safetensors adapter",
        injection="real worker: 4 styles with a corrupt adapter_model.safetensors ("
        + "; ".join(f"{k}: {v}" for k, v in CORRUPTIONS.items())
        + "), their briefs in the same batches as a good style's",
        checked=(
            "each corrupt style's briefs fail with an error naming the style and adapter_model.safetensors; the good "
            "style's briefs: one article each, generated once (no spoilt batch); worker and pool alive"
        ),
    )
    d = asset_run.deployment
    ids = [b for name in CORRUPTIONS for b in asset_run.bad_ids[name]]
    errors = errors_of(asset_run, ids)
    good = errors_of(asset_run, asset_run.good_ids)
    lost, duplicates = lost_and_duplicated(d.article_counts(), asset_run.good_ids)
    generations = d.generations()
    regenerated = sum(1 for b in asset_run.good_ids if generations[b] != 1)
    row.add(
        runs=1,
        faults=len(CORRUPTIONS),
        briefs=len(ids) + len(asset_run.good_ids),
        lost=lost,
        duplicates=duplicates,
        crashes=asset_run.pool_crashes_after_job,
    )
    for brief_id, (status, error) in errors.items():
        style = brief_id.rsplit("-", 1)[0]
        assert status == "failed", (brief_id, status, error)
        assert f"adapter {style} v1" in error and ADAPTER_WEIGHTS in error and "corrupt" in error, error
    assert all(status == "done" for status, _ in good.values()), good
    assert regenerated == 0, f"good briefs generated more than once: {generations}\n{d.logs()}"
    assert not d.article_counts().keys() & set(ids)
    assert (lost, duplicates, asset_run.pool_crashes_after_job) == (0, 0, 0), d.logs()


# ------------------------------------------------------------------------------------------------ sandbox


def test_templates_that_try_to_leave_the_sandbox_are_blocked(
    asset_run: AssetRun, ledger: Ledger, tmp_path: Path
) -> None:
    row = ledger.row(
        AREA,
        "template escaping the sandbox",
        injection=(
            "12 hand-made escape templates (os.system via globals, __subclasses__, mutation of brief data) as a "
            "prompt template and as a job-file template, in-process; one as review.j2 of a real worker"
        ),
        checked="PromptError / per-record job problem naming the template; marker never created; worker alive",
    )
    counter = CaseCounter()
    marker = tmp_path / "escaped"
    attacks = escape_attacks(marker)
    style = Style(name="calm", description="d")
    for number, attack in enumerate(attacks):
        # As a prompt template.
        with counter.case():
            templates = tmp_path / f"t{number}"
            (templates / "prompts").mkdir(parents=True)
            (templates / "prompts" / "explainer.j2").write_text(f"Write.\n{attack}\n", encoding="utf-8")
            with pytest.raises(PromptError) as blocked:
                PromptRenderer(templates).render(Brief(title="x", tags=["a"]), style)
            assert "prompts/explainer.j2" in str(blocked.value)
        # As a job-file template over rows.
        with counter.case():
            job_file = tmp_path / f"escape{number}.yaml"
            job_file.write_text(
                yaml.safe_dump({"template": {"title": attack or "x", "id": "{{ row.k }}"}, "rows": [{"k": "a"}]}),
                encoding="utf-8",
            )
            expansion = expand(load_job(job_file), RunContext(job_file.stem, _utc_now()))
            titles = [item.brief.title for item in expansion.briefs]
            assert not any("owned" in t or "<class" in t or "/bin" in t for t in titles), titles
            if not titles:
                assert expansion.problems and expansion.problems[0].field == "title", expansion.problems
    assert not marker.exists(), "a template left the sandbox"
    # In the worker: review.j2 is an escape attempt.
    errors = errors_of(asset_run, asset_run.sandbox_ids)
    row.add(
        runs=1,
        faults=counter.cases + 1,
        briefs=len(asset_run.sandbox_ids),
        lost=0,
        duplicates=0,
        crashes=counter.crashes + asset_run.pool_crashes_after_job,
    )
    for brief_id, (status, error) in errors.items():
        assert status == "failed" and "prompts/review.j2" in error and "sandbox" in error, (brief_id, error)
    assert not (asset_run.marker_dir / "template").exists(), "the worker's template left the sandbox"
    assert counter.crashes == 0 and asset_run.pool_crashes_after_job == 0


def _utc_now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ messages


def test_pickle_serialised_celery_messages_are_discarded(asset_run: AssetRun, ledger: Ledger) -> None:
    row = ledger.row(
        AREA,
        "pickle-serialised Celery message",
        injection=(
            "3 hand-made messages on the worker's queue (kombu, embedded broker) whose body would run "
            "`touch marker` when deserialised: pickle, YAML with a python/object tag, pickle labelled JSON"
        ),
        checked="marker never created (the pickle is shown live in a throwaway process); worker and pool alive; "
        "a brief submitted afterwards gets its article",
    )
    d = asset_run.deployment
    lost, duplicates = lost_and_duplicated(d.article_counts(), asset_run.after_ids)
    crashes = asset_run.pool_crashes_after_messages
    row.add(
        runs=1,
        faults=len(asset_run.messages),
        briefs=len(asset_run.after_ids),
        lost=lost,
        duplicates=duplicates,
        crashes=crashes,
    )
    assert asset_run.message_payloads_live, "control failed: the pickle payload does not create its marker"
    assert not asset_run.message_marker.exists(), "a hostile Celery message was deserialised and ran"
    log = asset_run.worker_log
    # Celery refuses the content types it does not accept, and cannot decode a pickle labelled JSON.
    refused = log.count("Received invalid task message: Refusing to deserialize untrusted content")
    discarded = refused + log.count("Can't decode message body")
    assert discarded == len(asset_run.messages), log[-6000:]
    assert (lost, duplicates, crashes) == (0, 0, 0), d.logs()
