"""Store migrations (:mod:`worker.store.migrations`) on SQLite and PostgreSQL: migration 3 keeps every article's
history, migration 5 adds ``articles.quality`` and backfills it with the number the review queue sorted by
before (``Scorecard.quality`` of the stored scores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from store_helpers import FakeClock, fresh_postgres_schema

from worker.scoring.scorecard import Scorecard
from worker.store import Store
from worker.store.migrations import MIGRATIONS, latest_version, v5_quality
from worker.store.schema import define_v1, define_v2, define_v3, define_v4, new_metadata, schema_migrations

T = FakeClock().now


def score(value: float, passed: bool) -> dict[str, Any]:
    return {"value": value, "low": 0.0, "high": 1.0, "passed": passed, "detail": ""}


SCORES: dict[str, dict[str, Any]] = {
    "all-pass": {"length": score(500, True), "keywords": score(1, True), "on_topic": score(0.8, True)},
    "half": {"length": score(90, False), "keywords": score(1, True), "on_topic": score(0.3, True)},
    "informational-only": {"gunning_fog": score(9, True), "near_duplicate": score(0.1, True)},
    "malformed": {"length": {"value": "many", "passed": True}, "keywords": score(1, True)},
    "no-passed": {"length": {"value": 3}},
    "on-topic-out-of-range": {"on_topic": score(1.7, True), "structure": score(0.2, False)},
    "empty": {},
}


def old_quality_of(scores: dict[str, Any]) -> float:
    """What ``worker.store.review.quality_of`` returned before migration 5."""
    try:
        return Scorecard.from_dict(scores).quality
    except ValueError:
        return 0.0


def version_4_store(url: str) -> None:
    """A store as copydesk left it before migration 5, holding one article for each entry of ``SCORES``."""
    Store(url).close()  # creates the SQLite file's directory
    v4 = new_metadata()
    for define in (define_v1, define_v2, define_v3, define_v4):
        define(v4)
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            schema_migrations.create(conn)
            for migration in MIGRATIONS[:4]:
                migration.apply(conn)
                conn.execute(
                    sa.insert(schema_migrations).values(version=migration.version, name=migration.name, applied_at=T)
                )
            for number, (name, scores) in enumerate(SCORES.items()):
                created = T.replace(second=number)
                conn.execute(
                    sa.insert(v4.tables["briefs"]).values(
                        id=name, payload={"id": name, "title": name}, content_hash="h", status="done", attempts=1,
                        created_at=created, updated_at=created,
                    )
                )  # fmt: skip
                conn.execute(
                    sa.insert(v4.tables["articles"]).values(
                        id=f"a-{name}", brief_id=name, status="needs_review", title=name, body_markdown="# x\n",
                        style="plain-howto", scores=scores, failing_gates=[], provenance={}, revision=1,
                        created_at=created, updated_at=created,
                    )
                )  # fmt: skip
    finally:
        engine.dispose()


def columns(url: str) -> dict[str, list[tuple[str, str, bool]]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        inspector = sa.inspect(engine)
        return {
            table: sorted(
                (c["name"], type(c["type"]).__name__, bool(c["nullable"])) for c in inspector.get_columns(table)
            )
            for table in sorted(inspector.get_table_names())
        }
    finally:
        engine.dispose()


@pytest.fixture
def fresh_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty store on ``store_url``'s backend (its own SQLite file or PostgreSQL schema), to compare a
    migrated store with. (Not the ``postgres_schema_url`` fixture: within one test that is ``store_url`` itself.)"""
    if store_url.startswith("postgresql"):
        with fresh_postgres_schema("fresh") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"


@pytest.mark.parametrize("name", sorted(SCORES))
def test_the_frozen_formula_is_todays_scorecard_quality(name: str) -> None:
    assert v5_quality(SCORES[name]) == old_quality_of(SCORES[name])


def test_the_table_covers_every_kind_of_stored_scores() -> None:
    qualities = {name: v5_quality(scores) for name, scores in SCORES.items()}
    assert qualities["all-pass"] == pytest.approx(0.95 + 0.05 * 0.8)
    assert qualities["half"] == pytest.approx(0.95 * 2 / 3 + 0.05 * 0.3)  # on_topic is a gate too
    assert qualities["on-topic-out-of-range"] == pytest.approx(0.95 * 0.5 + 0.05)  # on_topic clamped to 1
    assert qualities["malformed"] == qualities["no-passed"] == qualities["informational-only"] == 0.0


def test_migration_5_backfills_quality_and_keeps_the_worst_order(store_url: str, fresh_url: str) -> None:
    version_4_store(store_url)
    with Store(store_url) as old:
        assert old.schema_version() == 4
        assert old.migrate() == list(range(5, latest_version() + 1))
        stored = {a.brief_id: a.quality for a in old.review_queue()}
        worst = [a.brief_id for a in old.review_queue(order="worst")]
    assert stored == {name: old_quality_of(scores) for name, scores in SCORES.items()}
    oldest = list(SCORES)  # created one second apart, in this order
    assert worst == sorted(oldest, key=lambda name: old_quality_of(SCORES[name]))  # stable: ties oldest first
    assert worst[-2:] == ["half", "all-pass"]
    assert fresh_url != store_url
    with Store(fresh_url) as fresh:
        fresh.migrate()
    assert columns(store_url) == columns(fresh_url)
    assert [(name, nullable) for name, _, nullable in columns(store_url)["articles"] if name == "quality"] == [
        ("quality", False)
    ]


def _version_2_store(url: str) -> None:
    """A store exactly as copydesk left it before migration 3, holding one brief and its article."""
    Store(url).close()  # creates the SQLite file's directory
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            schema_migrations.create(conn)
            for migration in MIGRATIONS[:2]:
                migration.apply(conn)
                conn.execute(
                    sa.insert(schema_migrations).values(version=migration.version, name=migration.name, applied_at=T)
                )
            conn.execute(
                sa.text(
                    "INSERT INTO briefs (id, payload, content_hash, status, attempts, created_at, updated_at) "
                    "VALUES ('old', :payload, 'h', 'done', 1, :t, :t)"
                ),
                {"payload": '{"id": "old", "title": "An old brief"}', "t": T.replace(tzinfo=None)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO articles (id, brief_id, status, title, body_markdown, style, scores, failing_gates,"
                    " provenance, revision, created_at, updated_at) VALUES ('a-old', 'old', 'needs_review', 'Old',"
                    " '# Old\n\nText.\n', 'plain-howto', '{}', '[]', '{}', 1, :t, :t)"
                ),
                {"t": T.replace(tzinfo=None)},
            )
    finally:
        engine.dispose()


def test_migration_3_from_version_2_matches_a_fresh_store_and_keeps_history(store_url: str, fresh_url: str) -> None:
    _version_2_store(store_url)
    with Store(store_url) as old:
        assert old.schema_version() == 2
        applied = old.migrate()
        assert applied[0] == 3 and applied == list(range(3, latest_version() + 1))
        (revision,) = old.list_revisions("a-old")
        assert (revision.revision, revision.body_markdown, revision.source) == (1, "# Old\n\nText.\n", "generated")
        (event,) = old.list_events("a-old")
        assert (event.kind, event.to_status, event.actor) == ("generated", "needs_review", "copydesk")
        assert old.get_brief("old").feedback is None
    assert fresh_url != store_url
    with Store(fresh_url) as fresh:
        fresh.migrate()
    assert columns(store_url) == columns(fresh_url)
    assert {"article_revisions", "article_events"} <= set(columns(store_url))
    assert ("feedback", "TEXT", True) in columns(store_url)["briefs"]


def indexes(url: str) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """``{table: [(index name, columns), ...]}`` of every table, sorted."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        inspector = sa.inspect(engine)
        return {
            table: sorted(
                (str(i["name"]), tuple(str(c) for c in i["column_names"])) for i in inspector.get_indexes(table)
            )
            for table in sorted(inspector.get_table_names())
        }
    finally:
        engine.dispose()


def test_migration_8_adds_the_flat_cost_indexes_as_a_fresh_store_has_them(store_url: str, tmp_path: Path) -> None:
    Store(store_url).close()  # creates the SQLite file's directory
    engine = sa.create_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            schema_migrations.create(conn)
            for migration in MIGRATIONS[:7]:
                migration.apply(conn)
                conn.execute(
                    sa.insert(schema_migrations).values(version=migration.version, name=migration.name, applied_at=T)
                )
    finally:
        engine.dispose()
    before = indexes(store_url)
    with Store(store_url) as old:
        assert old.migrate() == [8] == [latest_version()]
    after = indexes(store_url)
    added = {
        (table, name, cols)
        for table, found in after.items()
        for name, cols in found
        if (name, cols) not in before[table]
    }
    assert added == {
        ("briefs", "ix_briefs_status_created_at_id", ("status", "created_at", "id")),
        ("articles", "ix_articles_style_created_at_id", ("style", "created_at", "id")),
        ("job_items", "ix_job_items_job_id_position", ("job_id", "position")),
    }
    if store_url.startswith("postgresql"):
        with fresh_postgres_schema("fresh") as fresh_url:
            with Store(fresh_url) as fresh:
                fresh.migrate()
            assert indexes(fresh_url) == after
    else:
        fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
        with Store(fresh_url) as fresh:
            fresh.migrate()
        assert indexes(fresh_url) == after
