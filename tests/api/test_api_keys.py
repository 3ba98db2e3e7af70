"""API keys in the store and through ``copydesk keys``: hashed, shown once, roles ordered, revocable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from worker.cli.main import app as cli_app
from worker.errors import ConflictError, NotFoundError, StoreError
from worker.store import Role, Store
from worker.store.keys import hash_key


def stored_rows(url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text("SELECT * FROM api_keys"))]
    finally:
        engine.dispose()


def test_a_created_key_authenticates_and_only_its_hash_is_stored(store: Store, store_url: str) -> None:
    record, key = store.create_api_key("cms", Role.EDITOR)
    assert key.startswith(f"cdk_{record.id}_") and len(key) > 50
    assert store.authenticate_api_key(key) == record
    rows = stored_rows(store_url)
    assert len(rows) == 1
    assert rows[0]["secret_hash"] == hash_key(key)
    assert all(key not in str(value) for value in rows[0].values()), rows


def test_wrong_malformed_and_revoked_keys_do_not_authenticate(store: Store) -> None:
    record, key = store.create_api_key("planner", Role.SUBMITTER)
    other, _ = store.create_api_key("other", Role.ADMIN)
    forged = f"cdk_{record.id}_{'A' * 43}"  # right id, wrong secret
    swapped = key.replace(record.id, other.id)  # a real secret under another key's id
    for bad in ("", "cdk_", key + "x", key[:-1], forged, swapped, "' OR 1=1 --", key.upper()):
        assert store.authenticate_api_key(bad) is None, bad
    assert store.revoke_api_key("planner").revoked_at is not None
    assert store.authenticate_api_key(key) is None
    assert store.revoke_api_key(record.id).name == "planner"  # idempotent, by id too
    assert [k.name for k in store.list_api_keys() if k.active] == ["other"]


def test_key_names_are_unique_and_safe(store: Store) -> None:
    store.create_api_key("chat-bot", "submitter")
    with pytest.raises(ConflictError, match="already exists"):
        store.create_api_key("chat-bot", Role.ADMIN)
    for bad in ("", "a b", "../x", "x" * 101, "-lead", "name\n"):
        with pytest.raises(StoreError, match="invalid key name"):
            store.create_api_key(bad, Role.SUBMITTER)
    with pytest.raises(ValueError):
        store.create_api_key("boss", "superuser")
    with pytest.raises(NotFoundError):
        store.revoke_api_key("nobody")


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [
        (Role.SUBMITTER, Role.SUBMITTER, True),
        (Role.SUBMITTER, Role.EDITOR, False),
        (Role.SUBMITTER, Role.ADMIN, False),
        (Role.EDITOR, Role.SUBMITTER, True),
        (Role.EDITOR, Role.EDITOR, True),
        (Role.EDITOR, Role.ADMIN, False),
        (Role.ADMIN, Role.EDITOR, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_roles_are_ordered(have: Role, need: Role, allowed: bool) -> None:
    assert have.allows(need) is allowed


def test_keys_commands_show_the_key_once(tmp_path: Path) -> None:
    env = {"COPYDESK_HOME": str(tmp_path / "home"), "COPYDESK_STORE_URL": None, "COPYDESK_CONFIG": None}
    runner = CliRunner()
    created = runner.invoke(cli_app, ["keys", "create", "desk", "--role", "editor", "--json"], env=env)
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)["key"]
    listed = runner.invoke(cli_app, ["keys", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"], r["revoked_at"]) for r in rows] == [("desk", "editor", None)]
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    again = runner.invoke(cli_app, ["keys", "create", "desk"], env=env)
    assert again.exit_code == ConflictError.exit_code and "already exists" in again.output
    revoked = runner.invoke(cli_app, ["keys", "revoke", "desk"], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    missing = runner.invoke(cli_app, ["keys", "revoke", "ghost"], env=env)
    assert missing.exit_code == NotFoundError.exit_code and "no API key named 'ghost'" in missing.output
