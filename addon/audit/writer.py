"""The one writer of the audit: a thread that appends batches, so recording never slows traffic.

Hooks call `emit()` (a non-blocking queue put). The thread collects events for up to `FLUSH_INTERVAL`, then
appends them to the store (`duckfile` or `postgres`) in one transaction. When a write fails, the batch is kept
and retried with backoff (a warning says why), and traffic goes on; at most `MAX_QUEUED` events wait, beyond
that new ones are dropped and counted (`dropped`), with an error in the log. With `retention_days` set, the same
thread purges old interceptions in small batches between its appends (`retention`).
"""

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from addon.audit import retention
from addon.audit.duckfile import DuckStore
from addon.audit.events import AuditEvent
from addon.audit.postgres import PostgresStore
from addon.audit.queries import Reader
from addon.audit.store import Store, StoreError, is_postgres

logger = logging.getLogger(__name__)

FLUSH_INTERVAL: Final = 1.0
"""Seconds events may wait in memory; what is still queued at a `kill -9` is lost. A commit costs DuckDB about
8 ms whatever its size (appenders for four tables), holding the GIL, so the event loop stalls while it runs:
once a second, not five times."""
MAX_BATCH: Final = 5000
MAX_RETRY_DELAY: Final = 5.0
MAX_QUEUED: Final = 500_000
"""Events kept while the store is down (a few hundred MB at most): about an hour of a busy proxy."""
_STOP = object()


def open_store(target: str) -> Store:
    """The store `target` names: a `postgresql://` URL, else a DuckDB file path."""
    return PostgresStore(target) if is_postgres(target) else DuckStore(target)


class AuditWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.store = open_store(path)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aibridge-audit-writer", daemon=True)
        self._stopping = threading.Event()
        self._retry_at = 0.0
        self._failures = 0
        self.rows_written = 0
        self.pending = 0
        """Events accepted but not yet committed."""
        self.write_errors = 0
        self.dropped = 0
        """Events refused because MAX_QUEUED were already waiting (the store was down too long)."""
        self.purged = 0
        """Interceptions removed by retention since start."""
        self.broken = 0
        """Events that could not be scrubbed or prepared (a bug, logged with its traceback), left out."""
        self.retention_days: int | None = None
        self._next_purge = 0.0
        self._purge_below: UUID | None = None
        self._purge_count = 0
        self.scrub: Callable[[AuditEvent], AuditEvent | None] | None = None
        """Applied to each event in this thread, once, before it is written (secrets redacted, or text dropped:
        `addon.policy.recording`); None keeps events as they are."""

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

    @property
    def target(self) -> str:
        """The store as messages name it (a URL without its password)."""
        return self.store.target

    def emit(self, event: AuditEvent) -> None:
        """Queue an event; safe from any thread, never blocks."""
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                logger.error(
                    "aibridge: %d audit events dropped: %d are waiting for %s, which is not taking writes",
                    self.dropped,
                    MAX_QUEUED,
                    self.target,
                )
            return
        self._queue.put(event)

    def close(self, timeout: float = 15.0) -> None:
        """Flush everything queued and close the store."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._stopping.set()
            self._thread.join(timeout)
        else:
            self._drain_and_flush_once()
        self.store.close()

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        """(interception id, its thread root) of the interception that recorded a client tool call; None also
        when the store cannot answer (lineage is best effort)."""
        try:
            rows = self.store.fetch(
                """SELECT t.interception_id, s.thread_root_id FROM tool_usages t
                   JOIN interception_starts s ON s.id = t.interception_id
                   WHERE t.provider_tool_call_id = ? ORDER BY t.created_at DESC LIMIT 1""",
                [tool_call_id],
            )
        except StoreError:
            return None
        return (rows[0][0], rows[0][1]) if rows else None

    def reader(self) -> Reader:
        """A reader of its own, for another thread (the live query endpoint)."""
        return self.store.reader()

    def spend_since(self, since: datetime) -> dict[str, int]:
        """Micro-dollars spent per initiator since `since`, as recorded (budgets are rebuilt from it); raises
        StoreError when the store cannot answer."""
        rows = self.store.fetch(
            """SELECT s.initiator, sum(t.cost_micros)::BIGINT FROM token_usages t
               JOIN interception_starts s ON s.id = t.interception_id
               WHERE t.created_at >= ? AND t.cost_micros IS NOT NULL GROUP BY s.initiator""",
            [since],
        )
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
            logger.error("aibridge: %d audit events could not be written to %s", len(pending), self.target)

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
            self._take(pending, item)  # type: ignore[arg-type]
        self.pending = len(pending)
        return False

    def _drain(self, pending: list[AuditEvent]) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._take(pending, item)  # type: ignore[arg-type]

    def _take(self, pending: list[AuditEvent], event: AuditEvent) -> None:
        """Scrubbed (text redacted, or dropped), then prepared (`AuditEvent.prepared`): an event that fails either
        is dropped and counted, and the thread goes on."""
        try:
            if self.scrub is not None and (event := self.scrub(event)) is None:  # type: ignore[assignment]
                return
            event = event.prepared()
        except Exception:  # one event must never stop the audit
            self.broken += 1
            logger.exception("aibridge: an audit event (%s) could not be prepared and was dropped", event.TABLE)
            return
        pending.append(event)

    def _drain_and_flush_once(self) -> None:
        pending: list[AuditEvent] = []
        self._drain(pending)
        if pending:
            self._flush(pending)

    def _flush(self, pending: list[AuditEvent]) -> None:
        by_table: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        for event in pending:
            by_table[event.TABLE].append(event.row())
        try:
            self.store.append(by_table)
        except StoreError as e:
            self._on_failure(e)
            return
        if self._failures:
            logger.warning("aibridge: audit store %s writable again; %d events written", self.target, len(pending))
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
        try:
            count = self.store.purge_batch(self._purge_below, retention.BATCH)
        except StoreError as e:
            logger.warning("aibridge: retention purge of %s failed (retried in an hour): %s", self.target, e)
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
                    self.target,
                )
            self._purge_below = None

    def _on_failure(self, error: Exception) -> None:
        self._failures += 1
        self.write_errors += 1
        delay = min(0.2 * 2**self._failures, MAX_RETRY_DELAY)
        self._retry_at = time.monotonic() + delay
        if self._failures == 1 or self._failures % 20 == 0:
            logger.warning(
                "aibridge: cannot write the audit store %s (%s); records are kept and retried", self.target, error
            )
