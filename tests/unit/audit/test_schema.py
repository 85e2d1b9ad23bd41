"""The audit schema: migrations, and the columns the events are appended to."""

import dataclasses
from collections.abc import Iterator

import duckdb
import pytest

from addon.audit.events import (
    AuditEvent,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
)
from addon.audit.schema import MIGRATIONS, migrate


@pytest.fixture
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    migrate(connection)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    "cls", [InterceptionStarted, InterceptionEnded, TokensUsed, PromptSubmitted, ToolCalled, ThoughtRecorded]
)
def test_event_fields_match_table_columns(db: duckdb.DuckDBPyConnection, cls: type[AuditEvent]) -> None:
    columns = [
        name
        for (name,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [cls.TABLE],
        ).fetchall()
    ]
    assert columns == [f.name for f in dataclasses.fields(cls)]


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
