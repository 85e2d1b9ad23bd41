"""The PostgreSQL store against a real server: the writer appends and migrates once however many proxies start
together, a batch retried after a lost acknowledgement is stored once, text PostgreSQL cannot hold is made
storable without holding other rows back, rows wait while the database is away and none is lost when it is
back, and the copy into DuckDB (for snapshots and exports) is the database as it is."""

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import psycopg
import pytest

from addon.audit import AuditFileError, AuditWriter, InterceptionEnded, PromptSubmitted, TokensUsed, retention
from addon.audit.events import AuditEvent
from addon.audit.postgres import PostgresStore, connect_reader
from addon.audit.schema import POSTGRES_MIGRATIONS
from addon.audit.store import StoreError
from addon.ids import uuid7
from tests.support.audit_rows import T0, started, tool
from tests.support.postgres import PostgresServer

TABLES = ("interception_starts", "interception_ends", "token_usages", "user_prompts", "tool_usages")


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def count(url: str, table: str) -> int:
    return int(rows(url, f"SELECT count(*) FROM {table}")[0][0])


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not there in time"
        time.sleep(0.05)


def interception(n: int = 0) -> tuple[UUID, list[AuditEvent]]:
    ident = uuid7()
    at = T0 + timedelta(minutes=n)
    return ident, [
        started(ident, started_at=at, metadata={"n": n}),
        PromptSubmitted(interception_id=ident, provider_response_id=None, prompt=f"prompt {n}", created_at=at),
        TokensUsed(
            interception_id=ident,
            provider_response_id="msg_1",
            input_tokens=10,
            output_tokens=2,
            cache_read_input_tokens=3,
            cache_write_input_tokens=0,
            cost_micros=120,
            created_at=at,
        ),
        tool(ident, f"toolu_{n}", at),
        InterceptionEnded(interception_id=ident, status="completed", http_status=200, ended_at=at),
    ]


def by_table(events: list[AuditEvent]) -> dict[str, list[tuple[object, ...]]]:
    grouped: dict[str, list[tuple[object, ...]]] = {}
    for event in events:
        grouped.setdefault(event.TABLE, []).append(event.row())
    return grouped


def test_proxies_starting_together_migrate_once_and_all_write(pg_url: str) -> None:
    writers: list[AuditWriter] = []
    threads = [threading.Thread(target=lambda: writers.append(AuditWriter(pg_url))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(writers) == 4
    for n, writer in enumerate(writers):
        for event in interception(n)[1]:
            writer.emit(event)
        writer.close()
    assert rows(pg_url, "SELECT name FROM _aibridge_migrations ORDER BY name") == [
        (name,) for name, _ in POSTGRES_MIGRATIONS
    ]
    assert {table: count(pg_url, table) for table in TABLES} == dict.fromkeys(TABLES, 4)


def test_a_batch_retried_after_a_lost_acknowledgement_is_stored_once(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        _, events = interception()
        store.append(by_table(events))
        store.append(by_table(events))  # the first commit's answer was lost: the writer tries again
        _, more = interception(1)
        store.append(by_table(events + more))  # a retry that also carries new rows
    finally:
        store.close()
    assert {table: count(pg_url, table) for table in TABLES} == dict.fromkeys(TABLES, 2)
    assert store.dropped_rows == 0


def test_text_postgresql_cannot_hold_is_made_storable_and_holds_nothing_back(pg_url: str) -> None:
    ident, events = interception()
    events.append(
        PromptSubmitted(
            interception_id=ident,
            provider_response_id=None,
            prompt="nul \x00 and a lone surrogate \ud800",
            metadata={"note": "json nul \x00"},
        )
    )
    writer = AuditWriter(pg_url)
    for event in events:
        writer.emit(event)
    writer.close()
    assert writer.write_errors == 0
    prompts = sorted(rows(pg_url, "SELECT prompt, metadata FROM user_prompts"), key=lambda r: str(r[0]))
    assert prompts == [
        ("nul \ufffd and a lone surrogate \ufffd", {"note": "json nul \ufffd"}),
        ("prompt 0", None),
    ]
    assert {table: count(pg_url, table) for table in TABLES[:3]} == dict.fromkeys(TABLES[:3], 1)


def test_rows_wait_while_the_database_is_away_and_none_is_lost(pg_url: str, postgres_server: PostgresServer) -> None:
    writer = AuditWriter(pg_url)
    writer.start()
    try:
        first, events = interception()
        for event in events:
            writer.emit(event)
        wait_for(lambda: writer.rows_written == len(events))
        postgres_server.kill()
        expected = [first]
        for n in range(1, 4):
            ident, more = interception(n)
            expected.append(ident)
            for event in more:
                writer.emit(event)
        wait_for(lambda: writer.write_errors >= 1)
        assert writer.queue_depth() == 15  # kept, not dropped
        postgres_server.start()
        wait_for(lambda: writer.queue_depth() == 0)
    finally:
        writer.close()
    assert sorted(r[0] for r in rows(pg_url, "SELECT id FROM interception_starts")) == sorted(expected)
    assert {table: count(pg_url, table) for table in TABLES} == dict.fromkeys(TABLES, 4)


def test_a_proxy_starts_while_the_database_is_away(pg_url: str, postgres_server: PostgresServer) -> None:
    postgres_server.stop()
    writer = AuditWriter(pg_url)  # no exception: traffic goes on, the rows wait
    writer.start()
    try:
        ident, events = interception()
        for event in events:
            writer.emit(event)
        assert writer.find_tool_call("toolu_0") is None  # lineage is best effort: no answer, no exception
        with pytest.raises(StoreError):
            writer.spend_since(T0)
        postgres_server.start()
        wait_for(lambda: writer.queue_depth() == 0)
        assert writer.find_tool_call("toolu_0") == (ident, None)
        assert writer.spend_since(T0) == {"user@example.com": 120}
    finally:
        writer.close()


def test_retention_purges_from_postgresql(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        idents = []
        for n in range(3):
            ident, events = interception(n)
            idents.append(ident)
            store.append(by_table(events))
        below = max(idents) if idents else None
        assert below is not None
        assert store.purge_batch(below, 1) == 1
        assert store.purge_batch(below, 5) == 1
        assert store.purge_batch(below, 5) == 0
        assert store.purge_batch(retention.boundary(T0), 5) == 0
    finally:
        store.close()
    assert {table: count(pg_url, table) for table in TABLES} == dict.fromkeys(TABLES, 1)


def test_the_duckdb_copy_is_the_database_as_it_is(pg_url: str) -> None:
    ident, events = interception()
    events.append(
        PromptSubmitted(interception_id=ident, provider_response_id="", prompt='two\nlines, "quoted", ', metadata={})
    )
    store = PostgresStore(pg_url)
    store.append(by_table(events))
    store.close()
    reader = connect_reader(pg_url)
    try:
        with reader.as_duckdb() as duck:
            for table in TABLES:
                columns = ", ".join(c[0] for c in duck.execute(f"SELECT * FROM {table} LIMIT 0").description)
                copied = duck.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2").fetchall()
                original = reader.fetch(f"SELECT {columns} FROM {table} ORDER BY 1, 2")[1]
                normalised = [tuple(_same_json(v) for v in row) for row in copied]
                assert normalised == [tuple(_same_json(v) for v in row) for row in original], table
    finally:
        reader.close()


def _same_json(value: object) -> object:
    """DuckDB gives JSON back as text, psycopg as Python values."""
    import json

    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


def test_a_url_that_is_not_one_is_a_clear_error_without_its_password() -> None:
    with pytest.raises(AuditFileError) as info:
        AuditWriter("postgresql://bridge:s3cret@db/audit?bogus=1")
    assert "not a PostgreSQL URL" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(StoreError) as info:
        connect_reader("postgresql://bridge:s3cret@127.0.0.1:1/audit")
    assert "127.0.0.1:1" not in str(info.value) or "s3cret" not in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "postgresql://bridge:***@127.0.0.1:1/audit" in str(info.value)


def test_a_database_from_before_the_insights_keeps_its_rows_and_gains_the_new_columns(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE _aibridge_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ)")
        for name, sql in POSTGRES_MIGRATIONS[:3]:  # up to m003_shared_limits: the database as it was
            conn.execute(sql)
            conn.execute("INSERT INTO _aibridge_migrations VALUES (%s, now())", [name])
        old = uuid7()
        row = started(old).row()[:17]  # the columns interception_starts had
        conn.execute(f"INSERT INTO interception_starts VALUES ({', '.join(['%s'] * len(row))})", list(row))
    store = PostgresStore(pg_url)  # migrates
    store.close()
    assert rows(pg_url, "SELECT id, working_directory, repository, branch, agent FROM interceptions") == [
        (old, None, None, None, None)
    ]
    assert [r[0] for r in rows(pg_url, "SELECT name FROM _aibridge_migrations ORDER BY name")][-1] == "m004_insights"
    assert count(pg_url, "tool_results") == 0 and count(pg_url, "cache_busts") == 0
