"""The throwaway PostgreSQL server the tests use (tests/support/postgres.py): it starts, keeps its data and its
URL across a stop and a crash, and hands each test a database of its own."""

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import PostgresServer


def _rows(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT id, note FROM notes ORDER BY id").fetchall()


def _insert(url: str, note: str) -> None:
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("INSERT INTO notes (note) VALUES (%s)", (note,))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path)
    yield server
    server.close()


def test_the_data_outlives_a_stop_and_a_crash(server: PostgresServer) -> None:
    server.start()
    url = server.create_database("notes_db")
    assert url == f"postgresql://aibridge@127.0.0.1:{server.port}/notes_db"
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, note text NOT NULL)")
    _insert(url, "before the stop")
    assert _rows(url) == [(1, "before the stop")]

    server.stop()
    assert not server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    server.start()
    assert server.url("notes_db") == url
    assert _rows(url) == [(1, "before the stop")]

    _insert(url, "before the crash")  # committed: it survives a kill, as on a real server
    held = psycopg.connect(url)
    server.kill()
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()
    server.start()
    assert server.url("notes_db") == url
    assert _rows(url) == [(1, "before the stop"), (2, "before the crash")]


def test_start_stop_and_kill_are_idempotent(server: PostgresServer) -> None:
    server.stop()
    server.kill()
    server.start()
    server.start()  # already running: nothing to do
    assert server.running
    server.close()
    assert not server.running
    assert not server.data.exists()


def test_each_test_has_a_database_of_its_own(pg_url: str, postgres_server: PostgresServer) -> None:
    assert pg_url.startswith(postgres_server.url("test_"))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == (
            pg_url.rsplit("/", 1)[1],
            "aibridge",
        )
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE mine (x int)")


def test_the_next_test_does_not_see_the_last_ones_tables(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'").fetchone() == (0,)
