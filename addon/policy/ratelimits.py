"""Requests and tokens per minute, per user: token buckets that hold under concurrency.

A user's limits are their own (`[rate_limits.users.<name>]`), else, each of the two separately, the highest
among their groups'. Each limit is a bucket holding up to its per-minute capacity, refilled continuously at that
rate (so a minute's allowance may come in one burst, then at the refill rate). A request is admitted when its
requests bucket holds one request and its tokens bucket holds any: the requests bucket gives one, the tokens
bucket the request's input as estimated from its body; when the request ends, the tokens bucket gives the rest
of what it used (or gets back what the estimate took too much). Over a limit, the client gets a
provider-shaped 429 with `retry-after` (seconds until both buckets would admit it).

The buckets are this process's (`LocalBuckets`), or a fleet's in PostgreSQL (`addon.fleet.ratelimits`): when
those do not answer, `on_store_down` decides: `admit` with this process's own buckets (each proxy then counts
alone), or `refuse` (503).
"""

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Protocol

from addon.config import RateLimit, RateLimits, User
from addon.policy import Refusal


@dataclass(frozen=True, slots=True)
class Draw:
    """What one request asks of one bucket."""

    key: str
    capacity: float
    """Per minute; the bucket's size."""
    need: float
    """What the bucket must hold to admit."""
    take: float
    """What it gives when admitted (it may go below zero)."""


class BucketsUnavailable(Exception):
    """The shared buckets did not answer."""


class Buckets(Protocol):
    async def take(self, draws: list[Draw]) -> float:
        """0 when every bucket holds its draw's `need` (then each gives its `take`); else the seconds until all
        would, and nothing is taken."""
        ...

    async def give(self, draws: list[Draw]) -> None:
        """Each bucket gives `take` more (negative: gets it back), after the fact."""
        ...


class LocalBuckets:
    """This process's buckets, on its event loop (no await inside a decision: atomic)."""

    def __init__(self) -> None:
        self._levels: dict[str, tuple[float, float]] = {}

    def _level(self, draw: Draw, now: float) -> float:
        level, at = self._levels.get(draw.key, (draw.capacity, now))
        return min(draw.capacity, level + (now - at) * draw.capacity / 60)

    async def take(self, draws: list[Draw]) -> float:
        return self.take_now(draws)

    def take_now(self, draws: list[Draw], now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        levels = [self._level(d, now) for d in draws]
        wait = max(((d.need - lvl) * 60 / d.capacity for d, lvl in zip(draws, levels, strict=True)), default=0.0)
        if wait > 0:
            return wait
        for draw, level in zip(draws, levels, strict=True):
            self._levels[draw.key] = (level - draw.take, now)
        return 0.0

    async def give(self, draws: list[Draw]) -> None:
        self.give_now(draws)

    def give_now(self, draws: list[Draw], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for draw in draws:
            self._levels[draw.key] = (self._level(draw, now) - draw.take, now)


@dataclass(slots=True)
class Ticket:
    """An admitted request's hold on the tokens bucket, settled when it ends."""

    user: str
    tokens: Draw | None
    local: bool
    settled: bool = False


class RateLimiter:
    def __init__(self, config: RateLimits, users: tuple[User, ...], shared: Buckets | None = None) -> None:
        self._users = dict(config.users)
        self._groups = dict(config.groups)
        self._memberships = {u.name: u.groups for u in users}
        self.on_store_down = config.on_store_down
        self.local = LocalBuckets()
        self.shared = shared
        self.fallbacks = 0
        """Decisions made without the shared buckets (admitted with this process's, or refused)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def limit_for(self, user: str) -> RateLimit | None:
        own = self._users.get(user)
        groups = [self._groups[g] for g in self._memberships.get(user, ()) if g in self._groups]

        def pick(name: str) -> int | None:
            if own is not None and getattr(own, name) is not None:
                return getattr(own, name)
            return max((v for g in groups if (v := getattr(g, name)) is not None), default=None)

        limit = RateLimit(requests_per_minute=pick("requests_per_minute"), tokens_per_minute=pick("tokens_per_minute"))
        return None if limit == RateLimit() else limit

    async def admit(self, user: str, input_tokens: int) -> Ticket | Refusal | None:
        """A ticket (settle it when the request ends), a 429 refusal, or None: no limit for this user."""
        limit = self.limit_for(user)
        if limit is None:
            return None
        draws, tokens = [], None
        if (rpm := limit.requests_per_minute) is not None:
            draws.append(Draw(f"requests/{user}", rpm, 1, 1))
        if (tpm := limit.tokens_per_minute) is not None:
            tokens = Draw(f"tokens/{user}", tpm, min(1, tpm), max(0, input_tokens))
            draws.append(tokens)
        local = self.shared is None
        if self.shared is not None:
            try:
                wait = await self.shared.take(draws)
            except BucketsUnavailable as e:
                self.fallbacks += 1
                if self.on_store_down == "refuse":
                    return Refusal(503, f"rate limits unavailable: {e}", (("retry-after", "5"),))
                local = True
        if local:
            wait = self.local.take_now(draws)
        if wait > 0:
            return over_limit(user, limit, wait)
        return Ticket(user, tokens, local)

    def settle(self, ticket: Ticket, tokens_used: int) -> None:
        """The tokens the request used, beyond (or short of) what admitting it took."""
        if ticket.settled or ticket.tokens is None:
            return
        ticket.settled = True
        extra = tokens_used - ticket.tokens.take
        if not extra:
            return
        draws = [Draw(ticket.tokens.key, ticket.tokens.capacity, 0, extra)]
        if ticket.local or self.shared is None:
            self.local.give_now(draws)
            return
        task = asyncio.ensure_future(self._give(draws))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _give(self, draws: list[Draw]) -> None:
        assert self.shared is not None
        try:
            await self.shared.give(draws)
        except BucketsUnavailable:
            self.fallbacks += 1  # counted after the fact, and lost with the database: the bucket refills anyway


def over_limit(user: str, limit: RateLimit, wait: float) -> Refusal:
    parts = []
    if limit.requests_per_minute is not None:
        parts.append(f"{limit.requests_per_minute} requests")
    if limit.tokens_per_minute is not None:
        parts.append(f"{limit.tokens_per_minute} tokens")
    seconds = max(1, math.ceil(wait))
    return Refusal(
        429,
        f"rate limit exceeded: {' and '.join(parts)} per minute for {user}; retry in {seconds} s",
        (("retry-after", str(seconds)),),
    )
