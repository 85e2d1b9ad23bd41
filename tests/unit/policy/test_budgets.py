"""Monthly budgets: limits, admission, reservations under a burst, settling and months (addon/policy/budgets.py)."""

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from addon.config import Budgets, User, hash_token, parse_config
from addon.policy import Refusal
from addon.policy.budgets import Ledger, Reservation, dollars, month_of, month_start, over_budget

DOLLAR = 1_000_000
MAY = datetime(2025, 5, 15, 12, 0, tzinfo=UTC)
JUNE = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)


def user(name: str, *groups: str) -> User:
    return User(name=name, token_hash=hash_token(f"aib_{name}"), groups=groups)


USERS = (user("alice", "eng", "ops"), user("bob", "eng"), user("carol"), user("dave", "ops", "sales"))
BUDGETS = Budgets(
    users=(("alice", 5 * DOLLAR),),
    groups=(("eng", 20 * DOLLAR), ("ops", 50 * DOLLAR), ("sales", 10 * DOLLAR)),
)


def ledger(budgets: Budgets = BUDGETS) -> Ledger:
    return Ledger(budgets, USERS)


# --- limits ---------------------------------------------------------------------------------------------


def test_limit_resolution() -> None:
    book = ledger()
    assert book.limit_for("alice") == 5 * DOLLAR  # her own, although her groups allow more
    assert book.limit_for("bob") == 20 * DOLLAR  # his group's
    assert book.limit_for("dave") == 50 * DOLLAR  # the highest of his groups
    assert book.limit_for("carol") is None  # no group
    assert book.limit_for("eve") is None  # not a configured user


async def test_own_limit_of_zero_wins() -> None:
    book = ledger(Budgets(users=(("bob", 0),), groups=(("eng", 20 * DOLLAR),)))
    assert book.limit_for("bob") == 0
    assert await book.admit("bob", 0, MAY) == over_budget(0, 0)


def test_limits_from_the_config() -> None:
    config = parse_config(
        {
            "users": {
                "alice": {"token": hash_token("aib_a"), "groups": ["eng"]},
                "bob": {"token": hash_token("aib_b")},
            },
            "budgets": {"users": {"bob": 2.5}, "groups": {"eng": 20}},
        }
    )
    book = Ledger(config.budgets, config.users)
    assert (book.limit_for("alice"), book.limit_for("bob")) == (20 * DOLLAR, 2_500_000)


# --- admission ------------------------------------------------------------------------------------------


async def test_admit_reserves_and_refuses_at_the_limit() -> None:
    book = ledger()
    first = await book.admit("alice", 3 * DOLLAR, MAY)
    assert first == Reservation("alice", "2025-05", 3 * DOLLAR)
    second = await book.admit("alice", 3 * DOLLAR, MAY)  # 3 < 5: admitted, although it may overshoot
    assert isinstance(second, Reservation)
    assert await book.admit("alice", 1, MAY) == over_budget(0, 5 * DOLLAR)  # 6 reserved ≥ 5
    assert book.spent("alice", MAY) == 0  # reservations are not spend


async def test_admit_refuses_exactly_at_the_limit() -> None:
    book = ledger()
    book.load({"alice": 5 * DOLLAR - 1}, MAY)
    assert isinstance(await book.admit("alice", 10 * DOLLAR, MAY), Reservation)  # one micro-dollar left
    book = ledger()
    book.load({"alice": 5 * DOLLAR}, MAY)
    assert await book.admit("alice", 0, MAY) == over_budget(5 * DOLLAR, 5 * DOLLAR)


async def test_no_limit_always_admits() -> None:
    book = ledger()
    book.load({"carol": 10**12}, MAY)
    for _ in range(10):
        assert isinstance(await book.admit("carol", 100 * DOLLAR, MAY), Reservation)


async def test_users_do_not_share_a_budget() -> None:
    book = ledger()
    book.load({"bob": 20 * DOLLAR}, MAY)
    assert isinstance(await book.admit("bob", 1, MAY), Refusal)
    assert isinstance(await book.admit("alice", 1, MAY), Reservation)  # a group limit is per user, not pooled


@pytest.mark.parametrize(
    ("limit", "estimate"),
    [(5 * DOLLAR, DOLLAR), (5 * DOLLAR, 3 * DOLLAR), (5 * DOLLAR, 7 * DOLLAR), (1_000_003, 10), (7, 2)],
)
async def test_a_burst_admits_exactly_enough_to_fill_the_budget(limit: int, estimate: int) -> None:
    book = ledger(Budgets(users=(("bob", limit),)))
    decisions = [await book.admit("bob", estimate, MAY) for _ in range(math.ceil(limit / estimate) + 50)]
    admitted = [d for d in decisions if isinstance(d, Reservation)]
    assert len(admitted) == math.ceil(limit / estimate)
    assert all(isinstance(d, Reservation) for d in decisions[: len(admitted)])  # no gaps: the rest are refused
    assert all(d == over_budget(0, limit) for d in decisions[len(admitted) :])
    # Overshoot is bounded by the last admitted request's estimate.
    assert limit <= sum(r.micros for r in admitted) < limit + estimate


async def test_unpriced_requests_reserve_nothing() -> None:
    book = ledger()
    for _ in range(100):
        assert await book.admit("alice", 0, MAY) == Reservation("alice", "2025-05", 0)


# --- settling -------------------------------------------------------------------------------------------


async def test_settle_replaces_the_reservation_with_the_actual_cost() -> None:
    book = ledger()
    reservation = await book.admit("alice", 4 * DOLLAR, MAY)
    assert isinstance(reservation, Reservation)
    assert isinstance(await book.admit("alice", 4 * DOLLAR, MAY), Reservation)  # 4 < 5
    assert isinstance(await book.admit("alice", 1, MAY), Refusal)  # 8 ≥ 5
    book.settle(reservation, 250_000)
    assert reservation.settled
    assert book.spent("alice", MAY) == 250_000
    # 0.25 spent + 4 still reserved < 5: there is room again.
    assert isinstance(await book.admit("alice", 1, MAY), Reservation)


async def test_settle_is_idempotent() -> None:
    book = ledger()
    reservation = await book.admit("alice", 4 * DOLLAR, MAY)
    assert isinstance(reservation, Reservation)
    book.settle(reservation, DOLLAR)
    book.settle(reservation, DOLLAR)
    book.settle(reservation, 3 * DOLLAR)
    assert book.spent("alice", MAY) == DOLLAR
    # The reservation was released once: 1 spent + 3.999999 reserved < 5, one micro-dollar more is 5.
    assert isinstance(await book.admit("alice", 3_999_999, MAY), Reservation)
    assert isinstance(await book.admit("alice", 1, MAY), Reservation)
    assert isinstance(await book.admit("alice", 1, MAY), Refusal)


async def test_settle_more_than_reserved() -> None:
    book = ledger()
    reservation = await book.admit("alice", 1, MAY)
    assert isinstance(reservation, Reservation)
    book.settle(reservation, 6 * DOLLAR)
    assert book.spent("alice", MAY) == 6 * DOLLAR
    assert await book.admit("alice", 0, MAY) == over_budget(6 * DOLLAR, 5 * DOLLAR)


# --- months ---------------------------------------------------------------------------------------------


async def test_a_new_month_starts_at_zero() -> None:
    book = ledger()
    book.load({"alice": 5 * DOLLAR}, MAY)
    assert isinstance(await book.admit("alice", 1, MAY), Refusal)
    assert book.spent("alice", JUNE) == 0
    assert isinstance(await book.admit("alice", 1, JUNE), Reservation)
    assert book.spent("alice", MAY) == 5 * DOLLAR


async def test_a_reservation_settles_into_its_own_month() -> None:
    book = ledger()
    last_may = datetime(2025, 5, 31, 23, 59, 59, tzinfo=UTC)
    reservation = await book.admit("alice", 4 * DOLLAR, last_may)
    assert isinstance(reservation, Reservation) and reservation.month == "2025-05"
    assert isinstance(await book.admit("alice", 4 * DOLLAR, JUNE), Reservation)  # May's reservation is not June's
    book.settle(reservation, 2 * DOLLAR)  # the request ended in June
    assert book.spent("alice", MAY) == 2 * DOLLAR
    assert book.spent("alice", JUNE) == 0


async def test_months_are_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert month_of(datetime(2025, 6, 1, 8, 0, tzinfo=tokyo)) == "2025-05"  # 23:00 UTC on 31 May
    assert month_of(datetime(2025, 6, 1, 9, 0, tzinfo=tokyo)) == "2025-06"
    assert month_start(datetime(2025, 6, 1, 8, 0, tzinfo=tokyo)) == datetime(2025, 5, 1, tzinfo=UTC)
    assert month_start(datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == datetime(2025, 12, 1, tzinfo=UTC)
    book = ledger()
    reservation = await book.admit("alice", 1, datetime(2025, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))))
    assert isinstance(reservation, Reservation) and reservation.month == "2024-12"


async def test_load_sets_this_months_spend() -> None:
    book = ledger()
    book.load({"alice": 4 * DOLLAR, "bob": 20 * DOLLAR, "carol": 123}, MAY)
    assert (book.spent("alice", MAY), book.spent("bob", MAY), book.spent("carol", MAY)) == (
        4 * DOLLAR,
        20 * DOLLAR,
        123,
    )
    assert book.spent("dave", MAY) == 0
    assert book.spent("alice", JUNE) == 0
    assert isinstance(await book.admit("alice", DOLLAR, MAY), Reservation)  # 4 < 5
    assert await book.admit("alice", 1, MAY) == over_budget(4 * DOLLAR, 5 * DOLLAR)  # 4 + 1 reserved ≥ 5
    assert await book.admit("bob", 1, MAY) == over_budget(20 * DOLLAR, 20 * DOLLAR)


def test_load_without_now_is_the_current_month() -> None:
    book = ledger()
    book.load({"alice": 42})
    assert book.spent("alice") == 42
    assert book.spent("alice", datetime.now(UTC)) == 42


# --- messages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "limit", "message"),
    [
        (0, 0, "budget exceeded: spent US$0.00 of US$0.00 this month"),
        (5 * DOLLAR, 5 * DOLLAR, "budget exceeded: spent US$5.00 of US$5.00 this month"),
        (20_123_456, 20 * DOLLAR, "budget exceeded: spent US$20.12 of US$20.00 this month"),
        (1_234_567_890, 1_000 * DOLLAR, "budget exceeded: spent US$1,234.57 of US$1,000.00 this month"),
        (2_500_000, 2_500_000, "budget exceeded: spent US$2.50 of US$2.50 this month"),
    ],
)
def test_refusal_message(spent: int, limit: int, message: str) -> None:
    assert over_budget(spent, limit).message == message


def test_dollars() -> None:
    assert dollars(0) == "US$0.00"
    assert dollars(1) == "US$0.00"
    assert dollars(9_999) == "US$0.01"
    assert dollars(1_000_000_000) == "US$1,000.00"
