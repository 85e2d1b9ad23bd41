"""Rate-limit buckets shared by a fleet (addon/fleet/ratelimits.py) on a real PostgreSQL: two proxies draw from
one bucket, so a burst over both admits exactly the limit; nothing is taken from a refused request; tokens
counted after the fact reach the bucket every proxy sees."""

import asyncio
from collections.abc import Callable

import pytest

from addon.config import RateLimit, RateLimits
from addon.fleet.ratelimits import SharedBuckets
from addon.fleet.state import SharedState
from addon.policy import Refusal
from addon.policy.ratelimits import Draw, RateLimiter, Ticket

LIMITS = RateLimits(users=(("alice", RateLimit(requests_per_minute=10, tokens_per_minute=10_000)),))


def limiter(state: SharedState) -> RateLimiter:
    return RateLimiter(LIMITS, (), SharedBuckets(state))


async def test_a_burst_over_two_proxies_admits_exactly_the_limit(proxies: Callable[[], SharedState]) -> None:
    one, two = limiter(proxies()), limiter(proxies())
    decisions = await asyncio.gather(*[book.admit("alice", 10) for _ in range(15) for book in (one, two)])
    assert sum(isinstance(d, Ticket) for d in decisions) == 10
    refusals = [d for d in decisions if isinstance(d, Refusal)]
    assert {r.status for r in refusals} == {429} and all(r.headers[0][0] == "retry-after" for r in refusals)
    assert one.fallbacks == two.fallbacks == 0


async def test_nothing_is_taken_from_a_refused_request(proxies: Callable[[], SharedState]) -> None:
    buckets = SharedBuckets(proxies())
    requests, tokens = Draw("requests/bob", 10, 1, 1), Draw("tokens/bob", 100, 1, 150)
    assert await buckets.take([tokens, requests]) == 0  # tokens may go below zero ...
    assert await buckets.take([tokens, requests]) == pytest.approx(30.6, abs=0.1)  # ... then wait
    for _ in range(9):  # the refused draw took no request: nine left
        assert await buckets.take([requests]) == 0
    assert await buckets.take([requests]) > 0


async def test_tokens_counted_after_the_fact_reach_every_proxy(proxies: Callable[[], SharedState]) -> None:
    one, two = limiter(proxies()), limiter(proxies())
    ticket = await one.admit("alice", 100)
    assert isinstance(ticket, Ticket)
    one.settle(ticket, 20_000)  # far past the minute's 10,000
    for _ in range(100):
        if not one._tasks:
            break
        await asyncio.sleep(0.02)
    refusal = await two.admit("alice", 1)
    assert isinstance(refusal, Refusal) and refusal.status == 429
    assert int(refusal.headers[0][1]) >= 59  # 10,000 short at 10,000 a minute
