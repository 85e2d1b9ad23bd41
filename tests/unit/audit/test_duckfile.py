"""The DuckDB file store's own edges: a closed store answers with StoreError, its reader is the file itself for
snapshots and exports, a file that cannot be attached is an AuditFileError that says why, and a file another
process holds is waited for a moment, then refused naming the holder."""

import threading
import time
from pathlib import Path

import pytest

from addon.audit import AuditFileError
from addon.audit.duckfile import LOCK_WAIT, DuckReader, DuckStore, open_database, open_read_only
from addon.audit.store import AuditFileLocked, StoreError
from addon.ids import uuid7
from tests.support.audit_rows import started
from tests.support.holder import holding


def test_a_closed_store_answers_with_a_store_error(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "audit.duckdb"))
    store.append({"interception_starts": [started(uuid7()).row()]})
    assert store.fetch("SELECT count(*) FROM interception_starts", []) == [(1,)]
    store.close()
    with pytest.raises(StoreError):
        store.fetch("SELECT 1", [])
    with pytest.raises(StoreError):
        store.append({"interception_starts": [started(uuid7()).row()]})


def test_the_reader_reads_and_is_its_own_duckdb(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "audit.duckdb"))
    store.append({"interception_starts": [started(uuid7()).row()]})
    reader = store.reader()
    try:
        names, rows = reader.fetch("SELECT count(*) AS n FROM interception_starts")
        assert (names, rows) == (["n"], [(1,)])
        with reader.as_duckdb() as duck:
            assert duck is reader.db
    finally:
        reader.close()
        store.close()


def test_a_file_that_is_no_audit_file_says_why(tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(AuditFileError):
        DuckReader(open_read_only(junk))


def test_the_proxy_waits_out_a_reader_that_holds_the_file_a_moment(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.duckdb")
    open_database(path).close()
    with holding(path) as holder:
        threading.Timer(0.5, holder.kill).start()  # a reader lets go within a query
        began = time.monotonic()
        db = open_database(path)
    db.close()
    assert 0.4 < time.monotonic() - began < LOCK_WAIT


def test_a_process_that_keeps_the_file_stops_the_open_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.duckdb")
    open_database(path).close()
    with holding(path) as holder, pytest.raises(AuditFileLocked) as locked:
        open_database(path)
    assert f"PID {holder.pid}" in str(locked.value) or str(holder.pid) in str(locked.value)
