"""Retention: the writer thread purges old interceptions, and all their rows, in small batches on a real DuckDB file."""

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from addon.audit import AuditWriter, InterceptionEnded, PromptSubmitted, ThoughtRecorded, TokensUsed, retention
from addon.audit.duckfile import DuckStore
from tests.support.audit_rows import query, started, tool

TABLES = ("interception_starts", "interception_ends", "token_usages", "user_prompts", "tool_usages", "model_thoughts")
NOW = datetime.now(UTC)


def uuid7_at(when: datetime) -> UUID:
    """A UUIDv7 made at `when` (the fixture's interceptions are old)."""
    ms = int(when.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10))
    return uuid.UUID(
        int=(ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    )


def events(when: datetime) -> tuple[UUID, list[object]]:
    """One interception with a row in every table."""
    i = uuid7_at(when)
    return i, [
        started(i, started_at=when),
        TokensUsed(
            interception_id=i,
            provider_response_id="m",
            input_tokens=1,
            output_tokens=2,
            cache_read_input_tokens=0,
            cache_write_input_tokens=0,
            created_at=when,
        ),
        PromptSubmitted(interception_id=i, provider_response_id="m", prompt="p", created_at=when),
        tool(i, f"toolu_{i.hex[:8]}", when),
        ThoughtRecorded(interception_id=i, content="t", created_at=when),
        InterceptionEnded(interception_id=i, status="completed", ended_at=when),
    ]


@pytest.fixture
def fixture_db(tmp_path: Path) -> tuple[str, list[UUID], list[UUID]]:
    """An audit file with 7 interceptions from 40-100 days ago, and 3 from the last days."""
    path = str(tmp_path / "audit.duckdb")
    old, new = [], []
    writer = AuditWriter(path)
    writer.start()
    for days in (100, 90, 80, 70, 60, 50, 40):
        i, evs = events(NOW - timedelta(days=days))
        old.append(i)
        for e in evs:
            writer.emit(e)  # type: ignore[arg-type]
    for days in (20, 1, 0):
        i, evs = events(NOW - timedelta(days=days, minutes=1))
        new.append(i)
        for e in evs:
            writer.emit(e)  # type: ignore[arg-type]
    writer.close()
    return path, old, new


def counts(path: str) -> dict[str, int]:
    return {table: query(path, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the writer did not get there"
        time.sleep(0.02)


def test_the_writer_purges_old_interceptions_in_batches_while_writing(
    fixture_db: tuple[str, list[UUID], list[UUID]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _, new = fixture_db
    assert counts(path) == dict.fromkeys(TABLES, 10)
    monkeypatch.setattr(retention, "BATCH", 2)  # 7 old interceptions: four batches
    batches: list[int] = []
    real = retention.purge_batch

    def counting(run: retention.Run, below: UUID, batch: int) -> int:
        batches.append(n := real(run, below, batch))
        return n

    monkeypatch.setattr(retention, "purge_batch", counting)
    writer = AuditWriter(path)
    writer.start()
    writer.set_retention(30)
    fresh, evs = events(datetime.now(UTC))
    for e in evs:
        writer.emit(e)  # type: ignore[arg-type]  # traffic goes on during the purge
    wait_for(lambda: writer.purged == 7)
    writer.close()
    assert batches == [2, 2, 2, 1]
    assert counts(path) == dict.fromkeys(TABLES, 4)
    kept = {row[0] for row in query(path, "SELECT id FROM interception_starts")}
    assert kept == {*new, fresh}
    for table in TABLES[1:]:
        assert {r[0] for r in query(path, f"SELECT DISTINCT interception_id FROM {table}")} == kept


def test_without_retention_nothing_is_purged(fixture_db: tuple[str, list[UUID], list[UUID]]) -> None:
    path, _, _ = fixture_db
    writer = AuditWriter(path)
    writer.start()
    _, evs = events(datetime.now(UTC))
    for e in evs:
        writer.emit(e)  # type: ignore[arg-type]
    wait_for(lambda: writer.rows_written == len(evs))
    writer.close()
    assert writer.purged == 0 and counts(path) == dict.fromkeys(TABLES, 11)


def test_purge_batch_and_boundary(fixture_db: tuple[str, list[UUID], list[UUID]]) -> None:
    path, old, new = fixture_db
    store = DuckStore(path)
    try:
        below = retention.boundary(NOW - timedelta(days=65))  # the 100..70 day old ones: four
        assert all(i < below for i in old[:4]) and all(i > below for i in old[4:])
        assert store.purge_batch(below, 3) == 3
        assert store.purge_batch(below, 3) == 1
        assert store.purge_batch(below, 3) == 0
    finally:
        store.close()
    assert counts(path) == dict.fromkeys(TABLES, 6)
    assert {r[0] for r in query(path, "SELECT id FROM interception_starts")} == {*old[4:], *new}
