"""The budget ledger of a fleet, in PostgreSQL: every proxy reserves and settles against the same books.

`admit` is one call of `aibridge_reserve` (an advisory lock per user and month, the month's spend plus the
reservations of live proxies against the limit, the reservation written): a burst spread over any number of
proxies admits exactly what one proxy would. `settle` turns the reservation into spend in the background; a
settle the database could not take is kept and retried (spend is never forgiven). The spend survives restarts
in `budget_spend`.

When the database does not answer: `on_store_down = "admit"` (the default) decides with this proxy's own
`Ledger`, which knows the spend the database last reported and this proxy's reservations since, and the
spend is added to the shared books once it answers again; `"refuse"` answers a 503 instead.
"""

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from addon.fleet.state import STALE, SharedState, SharedUnavailable
from addon.ids import uuid7
from addon.policy import Refusal
from addon.policy.budgets import Ledger, Reservation, month_of, over_budget

logger = logging.getLogger(__name__)

MAX_UNSETTLED: Final = 100_000
"""Settles kept while the database is away; beyond, the oldest are dropped with an error."""
RETRY_INTERVAL: Final = 2.0


@dataclass(slots=True)
class SharedReservation(Reservation):
    id: UUID | None = None
    """The reservation's row; None: there is none (no limit to check, or the fallback made it)."""
    local: bool = False
    """Made by the fallback ledger: settled in its books too."""


class SharedLedger:
    def __init__(self, local: Ledger, state: SharedState, on_store_down: str = "admit") -> None:
        self.local = local
        self.state = state
        self.on_store_down = on_store_down
        self.fallbacks = 0
        """Decisions made without the database (admitted locally or refused)."""
        self._unsettled: deque[SharedReservation] = deque()
        self._retrying: asyncio.Task[None] | None = None

    def limit_for(self, user: str) -> int | None:
        return self.local.limit_for(user)

    async def admit(self, user: str, estimate: int, now: datetime | None = None) -> Reservation | Refusal:
        moment = now or datetime.now(UTC)
        month = month_of(moment)
        limit = self.local.limit_for(user)
        if limit is None:  # nothing to check; its spend still goes to the books when it settles
            return SharedReservation(user, month, 0)
        reservation = SharedReservation(user, month, estimate, id=uuid7())
        try:
            ((admitted, spent),) = await self.state.call(
                "SELECT * FROM aibridge_reserve(%s, %s, %s, %s, %s, %s, %s)",
                [user, month, limit, reservation.id, estimate, self.state.instance, STALE],
            )
        except SharedUnavailable as e:
            return self._fall_back(user, estimate, moment, e)
        self.local.load_month(month, {user: int(spent)})  # what the fallback starts from, should it be needed
        return reservation if admitted else over_budget(int(spent), limit)

    def _fall_back(self, user: str, estimate: int, moment: datetime, error: SharedUnavailable) -> Reservation | Refusal:
        self.fallbacks += 1
        if self.on_store_down == "refuse":
            return Refusal(503, f"budget unavailable: {error}", (("retry-after", "5"),))
        decision = self.local.reserve(user, estimate, moment)
        if isinstance(decision, Refusal):
            return decision
        return SharedReservation(decision.user, decision.month, decision.micros, local=True)

    def settle(self, reservation: Reservation, actual: int) -> None:
        if reservation.settled:
            return
        assert isinstance(reservation, SharedReservation)
        if reservation.local:  # the fallback's: its books, then the shared ones
            self.local.settle(reservation, actual)
        else:  # what the fallback would start from, until the database's next answer says
            self.local.spend(reservation.user, reservation.month, actual)
        reservation.settled = True
        reservation.micros = actual  # what the database is to add, from now on
        if reservation.id is None and not actual:
            return
        self._unsettled.append(reservation)
        if len(self._unsettled) > MAX_UNSETTLED:
            lost = self._unsettled.popleft()
            logger.error("aibridge: a settle of %s's budget was dropped: the shared database is away", lost.user)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.ensure_future(self._settle_all())

    async def _settle_all(self) -> None:
        while self._unsettled:
            reservation = self._unsettled[0]
            try:
                await self.state.call(
                    "SELECT aibridge_settle(%s, %s, %s, %s)",
                    [reservation.id, reservation.user, reservation.month, reservation.micros],
                )
            except SharedUnavailable:
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            self._unsettled.popleft()

    async def close(self) -> None:
        """Settle what can be settled now (bounded), before the pool closes."""
        if self._retrying is not None and not self._retrying.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._retrying), 5)
            except TimeoutError:
                logger.error("aibridge: %d budget settles could not reach the shared database", len(self._unsettled))
