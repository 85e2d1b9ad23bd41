"""The audit schema: migrations, and the columns the events are appended to."""

import dataclasses
from collections.abc import Iterator

import duckdb
import pytest

from addon.audit.events import (
    KINDS,
    AuditEvent,
)
from addon.audit.schema import MIGRATIONS, migrate
from addon.ids import uuid7
from tests.support.audit_rows import started


@pytest.fixture
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    migrate(connection)
    yield connection
    connection.close()


@pytest.mark.parametrize("cls", KINDS)
def test_event_fields_match_table_columns(db: duckdb.DuckDBPyConnection, cls: type[AuditEvent]) -> None:
    columns = [
        name
        for (name,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [cls.TABLE],
        ).fetchall()
    ]
    assert columns == [f.name for f in dataclasses.fields(cls) if f.name not in cls.UNSTORED]


def test_migrate_is_idempotent(db: duckdb.DuckDBPyConnection) -> None:
    migrate(db)
    migrate(db)
    applied = [name for (name,) in db.execute("SELECT name FROM _aibridge_migrations").fetchall()]
    assert applied == [name for name, _ in MIGRATIONS]


def test_failed_migration_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(db: duckdb.DuckDBPyConnection) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr("addon.audit.schema.MIGRATIONS", [*MIGRATIONS, ("m999_broken", broken)])
    connection = duckdb.connect(":memory:")
    with pytest.raises(RuntimeError):
        migrate(connection)
    tables = {name for (name,) in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "half_done" not in tables
    assert "interception_starts" in tables
    assert connection.execute("SELECT count(*) FROM _aibridge_migrations").fetchone() == (len(MIGRATIONS),)
    connection.close()


def test_an_audit_from_before_the_insights_keeps_its_rows_and_gains_the_new_columns() -> None:
    db = duckdb.connect(":memory:")
    db.execute("CREATE TABLE _aibridge_migrations (name VARCHAR NOT NULL, applied_at TIMESTAMPTZ)")
    for name, apply in MIGRATIONS[:2]:  # m001_initial, m002_costs: the audit as it was
        apply(db)
        db.execute("INSERT INTO _aibridge_migrations VALUES (?, now())", [name])
    old = uuid7()
    row = started(old).row()[:17]  # the columns interception_starts had
    db.execute(f"INSERT INTO interception_starts VALUES ({', '.join('?' * len(row))})", list(row))
    migrate(db)
    assert db.execute(
        "SELECT id, model, working_directory, repository, branch, agent FROM interceptions"
    ).fetchall() == [(old, "claude-sonnet-4-5", None, None, None, None)]
    assert db.execute("SELECT count(*) FROM tool_results").fetchall() == [(0,)]
    assert db.execute("SELECT count(*) FROM cache_busts").fetchall() == [(0,)]
