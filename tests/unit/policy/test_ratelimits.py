"""Rate limits per user (addon/policy/ratelimits.py): which limit applies, the buckets' arithmetic, admission
under a burst, the 429 and its retry-after, settling tokens after the fact, and falling back when the shared
buckets do not answer."""

import pytest

from addon.config import RateLimit, RateLimits, User, hash_token, parse_config
from addon.policy import Refusal
from addon.policy.ratelimits import BucketsUnavailable, Draw, LocalBuckets, RateLimiter, Ticket


def user(name: str, *groups: str) -> User:
    return User(name=name, token_hash=hash_token(f"aib_{name}"), groups=groups)


USERS = (user("alice", "eng", "ops"), user("bob", "eng"), user("carol"))
LIMITS = RateLimits(
    users=(("alice", RateLimit(requests_per_minute=5)),),
    groups=(
        ("eng", RateLimit(requests_per_minute=10, tokens_per_minute=1000)),
        ("ops", RateLimit(requests_per_minute=20)),
    ),
)


def test_a_users_own_limit_wins_each_of_the_two_else_the_highest_of_their_groups() -> None:
    limiter = RateLimiter(LIMITS, USERS)
    assert limiter.limit_for("alice") == RateLimit(requests_per_minute=5, tokens_per_minute=1000)
    assert limiter.limit_for("bob") == RateLimit(requests_per_minute=10, tokens_per_minute=1000)
    assert limiter.limit_for("carol") is None
    assert limiter.limit_for("nobody") is None


def test_the_config_reads_rate_limits() -> None:
    config = parse_config(
        {
            "users": {"alice": {"token": hash_token("aib_a"), "groups": ["eng"]}},
            "rate_limits": {
                "on_store_down": "refuse",
                "users": {"alice": {"tokens_per_minute": 50_000}},
                "groups": {"eng": {"requests_per_minute": 60}},
            },
        }
    )
    limiter = RateLimiter(config.rate_limits, config.users)
    assert limiter.limit_for("alice") == RateLimit(requests_per_minute=60, tokens_per_minute=50_000)
    assert limiter.on_store_down == "refuse"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"users": {"alice": {}}}, "rate_limits.users.alice: give requests_per_minute, tokens_per_minute or both"),
        ({"users": {"alice": {"rpm": 5}}}, "rate_limits.users.alice: unknown key(s) rpm"),
        ({"groups": {"eng": {"requests_per_minute": 0}}}, "rate_limits.groups.eng.requests_per_minute must be"),
        ({"on_store_down": "wait"}, "rate_limits.on_store_down must be one of 'admit', 'refuse'"),
        ({"per_user": {}}, "rate_limits: unknown key(s) per_user"),
    ],
)
def test_a_bad_rate_limit_says_what_is_wrong(table: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({"rate_limits": table})


def test_a_bucket_refills_continuously_up_to_its_capacity() -> None:
    buckets = LocalBuckets()
    draw = Draw("requests/alice", 60, 1, 1)  # one a second
    assert [buckets.take_now([draw], now=0.0) for _ in range(60)] == [0.0] * 60  # a minute's worth at once
    assert buckets.take_now([draw], now=0.0) == pytest.approx(1.0)  # the 61st: one second to wait
    assert buckets.take_now([draw], now=0.5) == pytest.approx(0.5)
    assert buckets.take_now([draw], now=1.0) == 0.0
    assert buckets.take_now([draw], now=1000.0) == 0.0  # long idle: full again, not more
    assert [buckets.take_now([draw], now=1000.0) for _ in range(60)].count(0.0) == 59


def test_nothing_is_taken_unless_every_bucket_admits() -> None:
    buckets = LocalBuckets()
    requests, tokens = Draw("requests/a", 10, 1, 1), Draw("tokens/a", 100, 1, 150)
    assert buckets.take_now([requests, tokens], now=0.0) == 0.0  # tokens may go below zero ...
    assert buckets.take_now([requests, tokens], now=0.0) == pytest.approx(30.6)  # ... then wait till above
    assert buckets.take_now([requests], now=0.0) == 0.0  # the refused draw took no request


async def test_a_burst_is_admitted_exactly_up_to_the_limit_then_refused_with_retry_after() -> None:
    limiter = RateLimiter(LIMITS, USERS)
    decisions = [await limiter.admit("alice", 10) for _ in range(8)]
    assert [isinstance(d, Ticket) for d in decisions] == [True] * 5 + [False] * 3
    refusal = decisions[-1]
    assert isinstance(refusal, Refusal) and refusal.status == 429
    assert refusal.message.startswith("rate limit exceeded: 5 requests and 1000 tokens per minute for alice")
    assert refusal.headers == (("retry-after", "12"),)  # a request comes back every 12 s
    assert await limiter.admit("carol", 10**9) is None  # no limit: no ticket


async def test_tokens_used_beyond_the_estimate_are_taken_when_the_request_ends() -> None:
    limiter = RateLimiter(RateLimits(users=(("bob", RateLimit(tokens_per_minute=1000)),)), USERS)
    ticket = await limiter.admit("bob", 100)
    assert isinstance(ticket, Ticket)
    limiter.settle(ticket, 1500)  # 1400 more than admitting took: the bucket is 500 short
    refusal = await limiter.admit("bob", 1)
    assert isinstance(refusal, Refusal) and refusal.headers == (("retry-after", "31"),)
    limiter.settle(ticket, 10**6)  # settled once only
    again = RateLimiter(RateLimits(users=(("bob", RateLimit(tokens_per_minute=1000)),)), USERS)
    generous = await again.admit("bob", 900)
    assert isinstance(generous, Ticket)
    again.settle(generous, 100)  # the estimate took 800 too many: given back
    assert isinstance(await again.admit("bob", 0), Ticket)


class DownBuckets:
    async def take(self, draws: list[Draw]) -> float:
        raise BucketsUnavailable("the database is away")

    async def give(self, draws: list[Draw]) -> None:
        raise BucketsUnavailable("the database is away")


async def test_without_the_shared_buckets_admit_counts_alone_and_refuse_refuses() -> None:
    admitting = RateLimiter(LIMITS, USERS, DownBuckets())
    decisions = [await admitting.admit("alice", 1) for _ in range(6)]
    assert [isinstance(d, Ticket) for d in decisions] == [True] * 5 + [False]  # this process's own buckets
    assert admitting.fallbacks == 6
    refusing = RateLimiter(RateLimits(users=LIMITS.users, on_store_down="refuse"), USERS, DownBuckets())
    refusal = await refusing.admit("alice", 1)
    assert refusal == Refusal(503, "rate limits unavailable: the database is away", (("retry-after", "5"),))
