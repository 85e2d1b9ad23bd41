"""The connection to the shared database on the event loop: a small async pool, a deadline on every call, and
a short memory of failure so traffic does not wait on a database that is down.

Every proxy keeps its row in `fleet_members` fresh (a heartbeat): reservations of a proxy whose heartbeat is
stale (it was killed) stop counting against anyone's budget.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from addon.audit.store import masked

logger = logging.getLogger(__name__)

CALL_TIMEOUT: Final = 1.0
"""Seconds a decision may wait for the database before it falls back."""
RETRY_AFTER: Final = 2.0
"""Seconds after a failure during which decisions fall back at once, before the database is tried again."""
HEARTBEAT: Final = 5.0
STALE: Final = 30.0
"""Seconds without a heartbeat after which a proxy counts as gone (its reservations no longer count)."""


_JOIN: Final = "INSERT INTO fleet_members VALUES (%s, now()) ON CONFLICT (instance) DO UPDATE SET seen_at = now()"
_FORGET: Final = """
    WITH gone AS (DELETE FROM fleet_members WHERE seen_at < now() - INTERVAL '1 day' RETURNING instance)
    DELETE FROM budget_reservations r
    WHERE r.instance IN (SELECT instance FROM gone)
       OR NOT EXISTS (SELECT 1 FROM fleet_members m WHERE m.instance = r.instance)"""
"""Proxies gone a day, and reservations no member holds: nothing counts them any more."""


class SharedUnavailable(Exception):
    """The shared database did not answer in time; the message says why."""


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SharedState:
    def __init__(self, url: str, instance: str | None = None) -> None:
        self.url = url
        self.target = masked(url)
        self.instance = instance or instance_name()
        self._pool: AsyncConnectionPool | None = None
        self._down_until = 0.0
        self._heartbeat: asyncio.Task[None] | None = None
        self.failures = 0
        """Calls that did not get an answer (each made some decision fall back)."""
        self.up = True

    @property
    def available(self) -> bool:
        """False for a short while after a failure: decisions then fall back without waiting."""
        return time.monotonic() >= self._down_until

    async def call(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement in autocommit; `SharedUnavailable` when there is no answer within CALL_TIMEOUT."""
        if not self.available:
            raise SharedUnavailable(f"{self.target} did not answer a moment ago")
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                pool = await self._open()
                async with pool.connection() as conn:
                    cur = await conn.execute(sql, list(params))
                    rows = await cur.fetchall() if cur.description else []
        except (psycopg.Error, PoolTimeout, TimeoutError, OSError) as e:
            self._failed(e)
            raise SharedUnavailable(f"{self.target} did not answer: {_reason(e)}") from None
        if not self.up:
            logger.warning("aibridge: the shared database %s answers again", self.target)
            self.up = True
        return rows

    async def _open(self) -> AsyncConnectionPool:
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=8,
                kwargs={"autocommit": True, "connect_timeout": 5, "application_name": "aibridge-limits"},
                timeout=CALL_TIMEOUT,
                name="aibridge-limits",
                open=False,
            )
            await self._pool.open(wait=False)
            async with self._pool.connection() as conn:  # a member before its first reservation counts
                await conn.execute(_JOIN, [self.instance])
            self._heartbeat = asyncio.create_task(self._beat())
        return self._pool

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        self._down_until = time.monotonic() + RETRY_AFTER
        if self.up:
            logger.warning(
                "aibridge: the shared database %s does not answer (%s); limits fall back as configured "
                "(on_store_down) until it does",
                self.target,
                _reason(error),
            )
            self.up = False

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            with contextlib.suppress(SharedUnavailable):
                await self.call(_JOIN, [self.instance])
                await self.call(_FORGET)

    async def close(self) -> None:
        """Leave the fleet: this proxy's reservations go (its requests ended or were cut off), then the pool."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
        if self._pool is not None:
            with contextlib.suppress(SharedUnavailable):
                self._down_until = 0.0
                await self.call("DELETE FROM budget_reservations WHERE instance = %s", [self.instance])
                await self.call("DELETE FROM fleet_members WHERE instance = %s", [self.instance])
            await self._pool.close()
            self._pool = None


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
