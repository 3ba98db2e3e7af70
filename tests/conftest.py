"""Shared pytest fixtures. Each section belongs to the stage named in its header."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

# --- store: store_url -----------------------------------------------------------------------------------

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'copydesk.db'}"


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections use a fresh, uniquely named PostgreSQL schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(POSTGRES_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            sa.make_url(POSTGRES_URL)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store URL: SQLite under tmp_path, or a fresh PostgreSQL schema (marked ``postgres``)."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_schema_url")


# --- end store ------------------------------------------------------------------------------------------
