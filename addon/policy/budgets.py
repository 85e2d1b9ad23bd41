"""Monthly spend limits that hold under concurrency.

A user's limit is their own (`[budgets] users`), else the highest of their groups' limits, else none. Before a
request goes upstream, `admit()` refuses it when the month's spend plus what requests in flight have reserved
has reached the limit, and otherwise reserves the request's estimate (all input uncached, all of `max_tokens`
as output); `settle()` swaps the reservation for the actual cost when the request ends. This `Ledger` keeps one
process's books on its event loop, with no await between check and reservation, so a burst of parallel requests
cannot overshoot: once reservations fill the budget the rest are refused, and the limit is exceeded by at most
the last admitted request's cost. Months are UTC calendar months; spend is rebuilt from the audit file on start.
A fleet keeps the same books in PostgreSQL instead (`addon.fleet.ledger`), with this one as its fallback.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from addon.config import Budgets, User
from addon.policy import Refusal


def month_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def dollars(micros: int) -> str:
    return f"US${micros / 1_000_000:,.2f}"


@dataclass(slots=True)
class Reservation:
    user: str
    month: str
    micros: int
    settled: bool = False


def over_budget(spent: int, limit: int) -> Refusal:
    return Refusal(403, f"budget exceeded: spent {dollars(spent)} of {dollars(limit)} this month")


class Budget(Protocol):
    """What the engine asks of a ledger: this process's (`Ledger`) or a fleet's (`addon.fleet.ledger`)."""

    async def admit(self, user: str, estimate: int, now: datetime | None = None) -> Reservation | Refusal: ...

    def settle(self, reservation: Reservation, actual: int) -> None: ...


class Ledger:
    def __init__(self, budgets: Budgets, users: tuple[User, ...]) -> None:
        self._user_limits = dict(budgets.users)
        self._group_limits = dict(budgets.groups)
        self._groups = {u.name: u.groups for u in users}
        self._spent: dict[tuple[str, str], int] = defaultdict(int)
        self._reserved: dict[tuple[str, str], int] = defaultdict(int)

    def limit_for(self, user: str) -> int | None:
        if user in self._user_limits:
            return self._user_limits[user]
        limits = [self._group_limits[g] for g in self._groups.get(user, ()) if g in self._group_limits]
        return max(limits) if limits else None

    def spent(self, user: str, now: datetime | None = None) -> int:
        return self._spent[(user, month_of(now or datetime.now(UTC)))]

    def load(self, spend: dict[str, int], now: datetime | None = None) -> None:
        """This month's spend per user, as the audit file has it."""
        self.load_month(month_of(now or datetime.now(UTC)), spend)

    def load_month(self, month: str, spend: dict[str, int]) -> None:
        for user, micros in spend.items():
            self._spent[(user, month)] = micros

    def spend(self, user: str, month: str, micros: int) -> None:
        """Spend made elsewhere (a fleet's books), without a reservation here."""
        self._spent[(user, month)] += micros

    async def admit(self, user: str, estimate: int, now: datetime | None = None) -> Reservation | Refusal:
        return self.reserve(user, estimate, now)

    def reserve(self, user: str, estimate: int, now: datetime | None = None) -> Reservation | Refusal:
        """`admit`, at once (no await between the check and the reservation)."""
        month = month_of(now or datetime.now(UTC))
        key = (user, month)
        limit = self.limit_for(user)
        if limit is not None:
            committed = self._spent[key] + self._reserved[key]
            if committed >= limit:
                return over_budget(self._spent[key], limit)
        self._reserved[key] += estimate
        return Reservation(user, month, estimate)

    def settle(self, reservation: Reservation, actual: int) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        key = (reservation.user, reservation.month)
        self._reserved[key] -= reservation.micros
        self._spent[key] += actual
