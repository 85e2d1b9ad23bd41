"""The one writer of the audit file: a thread that appends batches, so recording never slows traffic.

Hooks call `emit()` (a non-blocking queue put). The thread collects events for up to `FLUSH_INTERVAL`, then
appends them in one transaction with one Appender per table. When a write fails, the batch is kept and retried
with backoff (a warning says why), and traffic goes on; a fatal DuckDB error reopens the database.
With `retention_days` set, the same thread purges old interceptions in small batches between its appends
(`retention`).
"""

import contextlib
import logging
import queue
import re
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from uuid import UUID

import duckdb

from addon.audit import retention
from addon.audit.events import AuditEvent
from addon.audit.schema import migrate

logger = logging.getLogger(__name__)

FLUSH_INTERVAL: Final = 1.0
"""Seconds events may wait in memory; what is still queued at a `kill -9` is lost. A commit costs DuckDB about
8 ms whatever its size (appenders for four tables), holding the GIL, so the event loop stalls while it runs:
once a second, not five times."""
MAX_BATCH: Final = 5000
MAX_RETRY_DELAY: Final = 5.0
DB_CONFIG: Final = {
    # Files stay readable by DuckDB 1.5 tools, such as the duckdb CLI from PyPI.
    "storage_compatibility_version": "v1.5.0",
    "threads": "2",
    "memory_limit": "512MB",
}
_STOP = object()
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


class AuditFileError(Exception):
    """The audit file cannot be opened; the message says why."""


class AuditFileLocked(AuditFileError):
    """Another process has the audit file open: `holder` names it."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


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
    try:
        db = duckdb.connect(path, config=DB_CONFIG)
    except duckdb.IOException as e:
        if (holder := lock_holder(e)) is not None:
            raise AuditFileLocked(
                f"audit file {path} is held by another process: {holder}. Close it (a duckdb shell left open "
                f"counts) or point aibridge_db elsewhere.",
                holder,
            ) from None
        raise
    if created:  # prompts and tool calls: the file is its user's alone (the proxy's umask covers the WAL too)
        Path(path).chmod(0o600)
    migrate(db)
    return db


class AuditWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db: duckdb.DuckDBPyConnection | None = open_database(path)
        except duckdb.Error as e:
            raise AuditFileError(str(e)) from e
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aibridge-audit-writer", daemon=True)
        self._stopping = threading.Event()
        self._retry_at = 0.0
        self._failures = 0
        self.rows_written = 0
        self.pending = 0
        """Events accepted but not yet committed."""
        self.write_errors = 0
        self.purged = 0
        """Interceptions removed by retention since start."""
        self.retention_days: int | None = None
        self._next_purge = 0.0
        self._purge_below: UUID | None = None
        self._purge_count = 0

    def set_retention(self, days: int | None) -> None:
        """Purge interceptions older than `days` now and every `retention.INTERVAL`; None keeps everything."""
        if days != self.retention_days:
            self.retention_days = days
            self._next_purge = 0.0

    def queue_depth(self) -> int:
        """Events accepted but not yet committed (queued, or collected into the batch being written)."""
        return self._queue.qsize() + self.pending

    def start(self) -> None:
        self._thread.start()

    def emit(self, event: AuditEvent) -> None:
        """Queue an event; safe from any thread, never blocks."""
        self._queue.put(event)

    def close(self, timeout: float = 15.0) -> None:
        """Flush everything queued and close the file."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._stopping.set()
            self._thread.join(timeout)
        else:
            self._drain_and_flush_once()
        if self._db is not None:
            with contextlib.suppress(duckdb.Error):
                self._db.close()

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        """(interception id, its thread root) of the interception that recorded a client tool call."""
        try:
            cursor = self._db.cursor()  # type: ignore[union-attr]
        except (duckdb.Error, AttributeError):
            return None
        try:
            rows = cursor.execute(
                """SELECT t.interception_id, s.thread_root_id FROM tool_usages t
                   JOIN interception_starts s ON s.id = t.interception_id
                   WHERE t.provider_tool_call_id = ? ORDER BY t.created_at DESC LIMIT 1""",
                [tool_call_id],
            ).fetchall()
        except duckdb.Error:
            return None
        finally:
            cursor.close()
        return (rows[0][0], rows[0][1]) if rows else None

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for reading in another thread (the live query endpoint)."""
        if self._db is None:
            raise duckdb.ConnectionException("the audit file is not open (writes are failing)")
        return self._db.cursor()

    def spend_since(self, since: datetime) -> dict[str, int]:
        """Micro-dollars spent per initiator since `since`, as recorded (budgets are rebuilt from it)."""
        assert self._db is not None
        cursor = self._db.cursor()
        try:
            rows = cursor.execute(
                """SELECT s.initiator, sum(t.cost_micros)::BIGINT FROM token_usages t
                   JOIN interception_starts s ON s.id = t.interception_id
                   WHERE t.created_at >= ? AND t.cost_micros IS NOT NULL GROUP BY s.initiator""",
                [since],
            ).fetchall()
        finally:
            cursor.close()
        return {user: int(total) for user, total in rows}

    def _run(self) -> None:
        pending: list[AuditEvent] = []
        stopping = False
        while not stopping:
            stopping = self._collect(pending)
            if pending and (stopping or time.monotonic() >= self._retry_at):
                self._flush(pending)
            if not stopping and not pending:
                self._purge_step()
        for _ in range(3):  # shutting down: a few last tries before giving up loudly
            if not pending:
                break
            time.sleep(0.2)
            self._flush(pending)
        if pending:
            logger.error("aibridge: %d audit events could not be written to %s", len(pending), self.path)

    def _collect(self, pending: list[AuditEvent]) -> bool:
        """Sleep FLUSH_INTERVAL (not when a full batch is already queued), then take what is queued; True when
        asked to stop. Waiting on the queue instead would wake this thread for every event, and each wake is a
        GIL hand-over the event loop pays for in latency."""
        if self._queue.qsize() < MAX_BATCH - len(pending):
            self._stopping.wait(FLUSH_INTERVAL)
        while len(pending) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._drain(pending)
                return True
            pending.append(item)  # type: ignore[arg-type]
        self.pending = len(pending)
        return False

    def _drain(self, pending: list[AuditEvent]) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                pending.append(item)  # type: ignore[arg-type]

    def _drain_and_flush_once(self) -> None:
        pending: list[AuditEvent] = []
        self._drain(pending)
        if pending:
            self._flush(pending)

    def _flush(self, pending: list[AuditEvent]) -> None:
        by_table: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        for event in pending:
            by_table[event.TABLE].append(event.row())
        if self._db is None and not self._reopen():
            self._on_failure(RuntimeError("the audit file is not open"))
            return
        assert self._db is not None
        try:
            self._db.begin()
            for table, rows in by_table.items():
                with self._db.appender(table) as appender:
                    appender.append_rows(rows)
            self._db.commit()
        except duckdb.FatalException as e:
            self._on_failure(e)
            self._reopen()
            return
        except duckdb.Error as e:
            with contextlib.suppress(duckdb.Error):
                self._db.rollback()
            self._on_failure(e)
            return
        if self._failures:
            logger.warning("aibridge: audit file %s writable again; %d events written", self.path, len(pending))
        self._failures = 0
        self.rows_written += len(pending)
        pending.clear()
        self.pending = 0

    def _purge_step(self) -> None:
        """One retention batch, when one is due: appends always go first, so traffic never waits on a purge."""
        if self._purge_below is None:
            if self.retention_days is None or time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + retention.INTERVAL
            self._purge_below = retention.boundary(datetime.now(UTC) - timedelta(days=self.retention_days))
            self._purge_count = 0
        if self._db is None:
            return
        try:
            count = retention.purge_batch(self._db, self._purge_below, retention.BATCH)
        except duckdb.Error as e:
            logger.warning("aibridge: retention purge of %s failed (retried in an hour): %s", self.path, e)
            self._purge_below = None
            return
        self._purge_count += count
        self.purged += count
        if count < retention.BATCH:
            if self._purge_count:
                logger.info(
                    "aibridge: retention purged %d interceptions older than %d days from %s",
                    self._purge_count,
                    self.retention_days,
                    self.path,
                )
            self._purge_below = None

    def _on_failure(self, error: Exception) -> None:
        self._failures += 1
        self.write_errors += 1
        delay = min(0.2 * 2**self._failures, MAX_RETRY_DELAY)
        self._retry_at = time.monotonic() + delay
        if self._failures == 1 or self._failures % 20 == 0:
            logger.warning(
                "aibridge: cannot write the audit file %s (%s); records are kept and retried", self.path, error
            )

    def _reopen(self) -> bool:
        if self._db is not None:
            with contextlib.suppress(duckdb.Error):
                self._db.close()
        self._db = None
        try:
            self._db = open_database(self.path)
        except (duckdb.Error, AuditFileLocked, OSError) as e:
            logger.warning("aibridge: cannot reopen the audit file %s: %s", self.path, e)
            return False
        return True
