"""Key cooldowns shared by a fleet: each cooldown a proxy starts is written to `key_cooldowns` at once, and
every proxy reads the live ones every second (seconds left by the database's clock, so hosts' clocks may
differ). Without the database, each proxy's own cooldowns still hold."""

import asyncio
import contextlib
import logging
from typing import Final

from addon.fleet.state import SharedState, SharedUnavailable
from addon.policy.keypool import KeyPools

logger = logging.getLogger(__name__)

SYNC_INTERVAL: Final = 1.0


class SharedCooldowns:
    def __init__(self, pools: KeyPools, state: SharedState) -> None:
        self.pools = pools
        self.state = state
        self._tasks: set[asyncio.Task[None]] = set()
        self._sync: asyncio.Task[None] | None = None
        pools.on_cool = self.publish

    def start(self) -> None:
        if self._sync is None:
            self._sync = asyncio.ensure_future(self._run())

    def publish(self, provider: str, fingerprint: str, seconds: float, status: int) -> None:
        task = asyncio.ensure_future(self._write(provider, fingerprint, seconds, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, provider: str, fingerprint: str, seconds: float, status: int) -> None:
        with contextlib.suppress(SharedUnavailable):
            await self.state.call(
                """INSERT INTO key_cooldowns VALUES (%s, %s, now() + make_interval(secs => %s), %s)
                   ON CONFLICT (provider, fingerprint) DO UPDATE
                   SET until = greatest(key_cooldowns.until, EXCLUDED.until), status = EXCLUDED.status""",
                [provider, fingerprint, seconds, status],
            )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(SharedUnavailable):
                rows = await self.state.call(
                    """SELECT provider, fingerprint, extract(epoch FROM until - now())::FLOAT8
                       FROM key_cooldowns WHERE until > now()"""
                )
                self.pools.merge([(p, f, float(left)) for p, f, left in rows])
            await asyncio.sleep(SYNC_INTERVAL)

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(BaseException):
                await self._sync
            self._sync = None
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2)
