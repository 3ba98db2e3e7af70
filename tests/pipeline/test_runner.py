"""Tests of :func:`worker.pipeline.runner.write_briefs` against a real store (SQLite and PostgreSQL) and the tiny model.

Two styles: ``alpha`` serves a real LoRA adapter, ``beta`` runs on the base model; neither has gates, so
every article is written in one attempt of one candidate.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from model_fixtures import adapter_a_dir, copy_dir, one_torch_thread, tiny_model_dir

from worker.config import Settings
from worker.engine.base_model import resolve_base_model
from worker.engine.engine import Engine
from worker.errors import NotFoundError
from worker.intake.briefs import Brief
from worker.pipeline.pipeline import Pipeline
from worker.pipeline.runner import WriteOutcome, worker_identity, write_briefs
from worker.results import BriefStatus
from worker.store import Store, article_id_for
from worker.store.article_files import read_article_file

__all__ = ["adapter_a_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OWNER = "test-runner@host:1"
LEASE = 600.0


def write_style(styles_dir: Path, name: str, *, adapter: str | None = None) -> Path:
    directory = styles_dir / name
    directory.mkdir(parents=True)
    data: dict[str, Any] = {
        "name": name,
        "description": f"test style {name}",
        "system_prompt": "You write short articles.",
        "routing": {"categories": {f"{name}-cat": 3}},
        "gates": [],
        "generation": {"candidates": 1, "max_new_tokens": 16},
        "adapter": adapter,
    }
    (directory / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def styles_dir(tmp_path_factory: pytest.TempPathFactory, adapter_a_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("runner-styles")
    copy_dir(adapter_a_dir, write_style(root, "alpha", adapter="v1") / "adapters" / "v1")
    write_style(root, "beta")
    return root


def make_settings(home: Path, styles_dir: Path, model_dir: Path) -> Settings:
    return Settings(
        home=home,
        model=str(model_dir),
        dtype="float32",
        device="cpu",
        styles_dir=styles_dir,
        default_style="beta",
        max_attempts=1,
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, styles_dir: Path, tiny_model_dir: Path) -> Engine:
    return Engine.from_settings(make_settings(tmp_path_factory.mktemp("unused"), styles_dir, tiny_model_dir))


@pytest.fixture(scope="module")
def broken_engine(tiny_model_dir: Path) -> Engine:
    """A real engine on torch's ``meta`` device: it loads, but every generation raises RuntimeError
    (as a device failure or an out-of-memory error would)."""
    return Engine(resolve_base_model(Settings(model=str(tiny_model_dir))), device="meta", dtype=torch.float32)


@pytest.fixture
def settings(tmp_path: Path, styles_dir: Path, tiny_model_dir: Path) -> Settings:
    return make_settings(tmp_path / "home", styles_dir, tiny_model_dir)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        s.migrate()
        yield s


def briefs_in(store: Store, *briefs: Brief) -> list[str]:
    for brief in briefs:
        assert store.add_brief(brief, source="test")
    return [brief.brief_id for brief in briefs]


ALPHA = Brief(
    id="run-alpha", title="How to plant tomatoes", content_type="how-to", category="alpha-cat", tags=["garden"]
)
BETA = Brief(id="run-beta", title="Why caches make programs fast", category="beta-cat", keywords=["cache"])
BETA_2 = Brief(id="run-beta-2", title="How a compiler reads your code", category="beta-cat")
UNKNOWN = Brief(id="run-unknown", title="A brief pinned to a style nobody wrote", style="nope")


def run(store: Store, settings: Settings, engine: Engine, ids: list[str]) -> list[WriteOutcome]:
    return write_briefs(ids, store=store, pipeline=Pipeline(settings, engine), owner=OWNER, lease_seconds=LEASE)


# ------------------------------------------------------------------------------------------------ writing


def test_articles_are_saved_with_their_markdown_files(store: Store, settings: Settings, engine: Engine) -> None:
    ids = briefs_in(store, ALPHA, BETA)
    outcomes = run(store, settings, engine, [*ids, ids[0]])  # a repeated id is written once

    assert [o.brief_id for o in outcomes] == ids
    for outcome, brief, style, adapter in zip(outcomes, (ALPHA, BETA), ("alpha", "beta"), ("v1", None), strict=True):
        assert outcome.status == "needs_review"
        assert outcome.error is None
        assert outcome.article is not None
        ledger = store.get_brief(brief.brief_id)
        assert ledger.status == BriefStatus.DONE
        assert ledger.lease_owner is None
        assert ledger.attempts == 1

        article = store.get_article(brief.brief_id)
        assert article.id == article_id_for(brief.brief_id) == outcome.article.id
        assert (article.style, article.adapter_version, article.status) == (style, adapter, "needs_review")
        assert article.provenance["adapter"]["version"] == adapter
        assert article.body_markdown.startswith(f"# {article.title}")

        path = settings.articles_dir / style / f"{article.id}.md"
        assert path.is_file()
        assert article.file_path == outcome.article.file_path == str(path)
        meta, body = read_article_file(path)
        assert body == article.body_markdown
        assert meta["title"] == article.title
        assert meta["brief_id"] == brief.brief_id
        assert meta["article_id"] == article.id
        assert meta["style"] == style
        assert meta["adapter_version"] == adapter
        assert meta["status"] == "needs_review"
        assert meta["tags"] == list(brief.tags)
        assert meta["keywords"] == list(brief.keywords)
        assert meta["scores"] == {name: score["value"] for name, score in article.scores.items()}
        assert meta["date"] == article.created_at.date()

        candidates = store.list_candidates(brief.brief_id)
        assert [(c["attempt"], c["index"], c["selected"]) for c in candidates] == [(1, 0, True)]


def test_writing_the_same_briefs_again_skips_them(store: Store, settings: Settings, engine: Engine) -> None:
    ids = briefs_in(store, ALPHA, BETA)
    run(store, settings, engine, ids)
    files = {path: path.read_bytes() for path in settings.articles_dir.rglob("*.md")}
    assert len(files) == 2

    again = run(store, settings, engine, ids)

    assert [(o.brief_id, o.status, o.article, o.error) for o in again] == [
        (ids[0], "skipped: done", None, None),
        (ids[1], "skipped: done", None, None),
    ]
    assert sorted(a.brief_id for a in store.list_articles()) == sorted(ids)
    assert all(len(store.list_candidates(brief_id)) == 1 for brief_id in ids)
    assert all(store.get_brief(brief_id).attempts == 1 for brief_id in ids)
    assert {path: path.read_bytes() for path in settings.articles_dir.rglob("*.md")} == files


# ---------------------------------------------------------------------------------------------- failures


def test_a_brief_that_errors_in_the_pipeline_ends_failed(store: Store, settings: Settings, engine: Engine) -> None:
    ids = briefs_in(store, UNKNOWN, BETA)
    failed, written = run(store, settings, engine, ids)

    assert failed.brief_id == UNKNOWN.brief_id
    assert failed.status == "failed"
    assert failed.article is None
    assert failed.error is not None and "unknown style 'nope'" in failed.error
    ledger = store.get_brief(UNKNOWN.brief_id)
    assert ledger.status == BriefStatus.FAILED
    assert ledger.last_error == failed.error
    assert ledger.lease_owner is None
    with pytest.raises(NotFoundError):
        store.get_article(UNKNOWN.brief_id)

    assert written.status == "needs_review"
    assert store.get_brief(BETA.brief_id).status == BriefStatus.DONE
    assert [a.brief_id for a in store.list_articles()] == [BETA.brief_id]

    assert run(store, settings, engine, [UNKNOWN.brief_id])[0].status == "skipped: failed"


def test_when_the_pipeline_raises_the_claimed_briefs_go_back_to_the_queue(
    store: Store, settings: Settings, engine: Engine, broken_engine: Engine
) -> None:
    ids = briefs_in(store, BETA, BETA_2)

    with pytest.raises(RuntimeError, match="meta"):
        run(store, settings, broken_engine, ids)

    for brief_id in ids:
        ledger = store.get_brief(brief_id)
        assert ledger.status == BriefStatus.QUEUED
        assert ledger.lease_owner is None and ledger.lease_expires_at is None
        assert ledger.attempts == 1
        assert ledger.last_error is not None and ledger.last_error.startswith("RuntimeError: ")
    assert store.list_articles() == []
    assert not settings.articles_dir.exists()

    # not lost: the next run claims and writes them
    outcomes = run(store, settings, engine, ids)
    assert [o.status for o in outcomes] == ["needs_review", "needs_review"]
    assert all(store.get_brief(brief_id).attempts == 2 for brief_id in ids)


def test_a_batch_naming_a_brief_not_in_the_store_claims_nothing(
    store: Store, settings: Settings, engine: Engine
) -> None:
    (brief_id,) = briefs_in(store, BETA)

    with pytest.raises(NotFoundError, match="not-stored"):
        run(store, settings, engine, [brief_id, "not-stored"])

    ledger = store.get_brief(brief_id)  # the batch is claimed in one transaction: untouched
    assert ledger.status == BriefStatus.QUEUED
    assert ledger.lease_owner is None and ledger.attempts == 0 and ledger.last_error is None
    assert run(store, settings, engine, [brief_id])[0].status == "needs_review"


def test_a_brief_leased_to_another_worker_is_skipped(store: Store, settings: Settings, engine: Engine) -> None:
    ids = briefs_in(store, ALPHA, BETA)
    assert store.claim_brief(ids[0], owner="someone-else", lease_seconds=LEASE, max_attempts=3) is not None

    outcomes = run(store, settings, engine, ids)

    assert [o.status for o in outcomes] == ["skipped: running", "needs_review"]
    assert store.get_brief(ids[0]).lease_owner == "someone-else"
    assert [a.brief_id for a in store.list_articles()] == [ids[1]]


def test_worker_identity_names_kind_host_and_process() -> None:
    assert worker_identity("celery") == f"celery@{socket.gethostname()}:{os.getpid()}"
    assert worker_identity().startswith("inline@")
