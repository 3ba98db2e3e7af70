"""Shared pytest fixtures. Each section belongs to the stage named in its header."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import FakeClock, fresh_postgres_schema

from worker.store import Store

# --- logging -------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI configures the root logger (``basicConfig(force=True)``); put it back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --- store: store_url -----------------------------------------------------------------------------------


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'copydesk.db'}"


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections use a fresh, uniquely named PostgreSQL schema, dropped afterwards."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store URL: SQLite under tmp_path, or a fresh PostgreSQL schema (marked ``postgres``)."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def clock() -> FakeClock:
    """The store's clock in tests; starts at ``store_helpers.T0``."""
    return FakeClock()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[Store]:
    """A migrated store on ``store_url`` driven by ``clock``."""
    with Store(store_url, clock=clock) as s:
        s.migrate()
        yield s


# --- end store ------------------------------------------------------------------------------------------
