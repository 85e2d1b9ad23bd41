"""The audit in a DuckDB file: the embedded store of one proxy process.

DuckDB lets one process open a file: the proxy's writer thread holds it (appending a batch per transaction with
one Appender per table), the live query endpoint reads it through cursors of that same connection, and the CLI
attaches it read-only when no proxy runs.
"""

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import duckdb

from addon.audit import retention
from addon.audit.dialect import DUCKDB
from addon.audit.schema import migrate
from addon.audit.store import AuditFileError, AuditFileLocked, StoreError

DB_CONFIG: Final = {
    # Files stay readable by DuckDB 1.5 tools, such as the duckdb CLI from PyPI.
    "storage_compatibility_version": "v1.5.0",
    "threads": "2",
    "memory_limit": "512MB",
}
LOCK_WAIT: Final = 3.0
"""Seconds the proxy waits for a file another process holds: a reader (`aibridge`, its web view) lets go within
a query; a proxy or a duckdb shell does not, and then start-up stops with a message naming it."""
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def lock_holder(error: Exception) -> str | None:
    """The process DuckDB says holds a file's lock, e.g. `PID 42 (python proxy.py)`; None for other errors."""
    if match := _LOCK_HOLDER.search(str(error)):
        return describe_process(int(match.group(2)), match.group(1))
    return None


def describe_process(pid: int, fallback: str) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    return f"PID {pid} ({cmdline or fallback})"


def open_database(path: str) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating) the audit file; `AuditFileLocked` names the process holding it."""
    created = path != ":memory:" and not Path(path).exists()
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            db = duckdb.connect(path, config=DB_CONFIG)
            break
        except duckdb.IOException as e:
            holder = lock_holder(e)
            if holder is None:
                raise
            if time.monotonic() < deadline:  # a reader (the CLI, the web view) holds it for a moment
                time.sleep(0.1)
                continue
            raise AuditFileLocked(
                f"audit file {path} is held by another process: {holder}. Close it (a duckdb shell left open "
                f"counts) or point aibridge_db elsewhere.",
                holder,
            ) from None
    if created:  # prompts and tool calls: the file is its user's alone (the proxy's umask covers the WAL too)
        Path(path).chmod(0o600)
    migrate(db)
    return db


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """The audit file attached read-only, as the CLI reads it with no proxy running. `AuditFileLocked` names the
    process holding it; `AuditFileError` says why else it cannot be opened."""
    db = duckdb.connect(config={"threads": "2", "memory_limit": "1GB"})
    try:
        db.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS audit (READ_ONLY)")
    except duckdb.IOException as e:
        db.close()
        if (holder := lock_holder(e)) is not None:
            raise AuditFileLocked(str(e), holder) from None
        raise AuditFileError(str(e)) from None
    db.execute("USE audit")
    return db


class DuckReader:
    """`queries.Reader` over a DuckDB connection or cursor."""

    dialect = DUCKDB

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self.db = db

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = self.db.execute(sql, list(params))
        return [d[0] for d in result.description], result.fetchall()

    @contextlib.contextmanager
    def as_duckdb(self) -> Iterator[duckdb.DuckDBPyConnection]:
        yield self.db

    def close(self) -> None:
        self.db.close()


class DuckStore:
    """The writer's side of an audit file (`store.Store`)."""

    def __init__(self, path: str) -> None:
        self.path = self.target = path
        self._closed = False
        try:
            self._db: duckdb.DuckDBPyConnection | None = open_database(path)
        except duckdb.Error as e:
            raise AuditFileError(str(e)) from e

    def append(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        db = self._open()
        try:
            db.begin()
            for table, values in rows.items():
                with db.appender(table) as appender:
                    appender.append_rows(values)
            db.commit()
        except duckdb.FatalException as e:  # the database is invalidated: open it anew for the retry
            self._reset()
            raise StoreError(str(e)) from e
        except duckdb.Error as e:
            with contextlib.suppress(duckdb.Error):
                db.rollback()
            raise StoreError(str(e)) from e

    def purge_batch(self, below: UUID, batch: int) -> int:
        db = self._open()
        db.begin()
        try:
            count = retention.purge_batch(lambda sql, params: db.execute(sql, list(params)).fetchall(), below, batch)
            db.commit()
        except duckdb.Error as e:
            with contextlib.suppress(duckdb.Error):
                db.rollback()
            raise StoreError(str(e)) from e
        return count

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of one read on a cursor of its own (any thread); StoreError when the file is not open."""
        try:
            cursor = self._open().cursor()
        except duckdb.Error as e:
            raise StoreError(str(e)) from e
        try:
            return cursor.execute(sql, list(params)).fetchall()
        except duckdb.Error as e:
            raise StoreError(str(e)) from e
        finally:
            cursor.close()

    def reader(self) -> DuckReader:
        """A cursor of its own for reading in another thread (the live query endpoint)."""
        return DuckReader(self._open().cursor())

    def close(self) -> None:
        self._closed = True
        self._reset()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreError("the audit file is closed")
        if self._db is None:
            try:
                self._db = open_database(self.path)
            except (duckdb.Error, AuditFileLocked, OSError) as e:
                raise StoreError(f"cannot reopen the audit file: {e}") from e
        return self._db

    def _reset(self) -> None:
        if self._db is not None:
            with contextlib.suppress(duckdb.Error):
                self._db.close()
        self._db = None
