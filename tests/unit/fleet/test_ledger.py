"""The fleet's budget ledger (addon/fleet/ledger.py) on a real PostgreSQL: a burst spread over two proxies
admits exactly what one proxy would, spend outlives restarts and is added once however often a settle is
retried, a killed proxy's reservations stop counting, and without the database each proxy keeps its own books
(or refuses) and pays what it owes once the database is back."""

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from addon.audit.postgres import PostgresStore
from addon.config import Budgets, User, hash_token
from addon.fleet import ledger as ledger_module
from addon.fleet.ledger import SharedLedger, SharedReservation
from addon.fleet.state import SharedState
from addon.policy import Refusal
from addon.policy.budgets import Ledger, month_of, over_budget
from tests.support.postgres import PostgresServer
from tests.unit.audit.test_postgres import by_table, interception

DOLLAR = 1_000_000
USERS = (User(name="bob", token_hash=hash_token("aib_bob"), groups=("eng",)),)
BUDGETS = Budgets(groups=(("eng", 10 * DOLLAR),))
MONTH = month_of(datetime.now(UTC))


def ledger(state: SharedState, on_store_down: str = "admit") -> SharedLedger:
    return SharedLedger(Ledger(BUDGETS, USERS), state, on_store_down)


def spend(url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(url) as conn:
        return {(u, m): v for u, m, v in conn.execute('SELECT "user", month, micros FROM budget_spend')}


async def settled(book: SharedLedger) -> None:
    for _ in range(200):
        if not book._unsettled:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the settles did not reach the database")


@pytest.mark.parametrize("estimate", [DOLLAR, 3 * DOLLAR, 7 * DOLLAR])
async def test_a_burst_over_two_proxies_admits_exactly_what_one_would(
    proxies: Callable[[], SharedState], estimate: int
) -> None:
    one, two = ledger(proxies()), ledger(proxies())
    burst = [book.admit("bob", estimate) for _ in range(12) for book in (one, two)]
    decisions = await asyncio.gather(*burst)
    admitted = [d for d in decisions if isinstance(d, SharedReservation)]
    assert len(admitted) == math.ceil(10 * DOLLAR / estimate)  # the single-process count (tests/unit/policy)
    assert all(d == over_budget(0, 10 * DOLLAR) for d in decisions if isinstance(d, Refusal))


async def test_spend_is_settled_once_and_outlives_the_proxy(
    proxies: Callable[[], SharedState], shared_url: str
) -> None:
    book = ledger(proxies())
    reservation = await book.admit("bob", 4 * DOLLAR)
    assert isinstance(reservation, SharedReservation) and reservation.id is not None
    book.settle(reservation, 3 * DOLLAR)
    book.settle(reservation, 3 * DOLLAR)  # a second settle of the same request changes nothing
    await settled(book)
    state = proxies()
    await state.call("SELECT aibridge_settle(%s, 'bob', %s, %s)", [reservation.id, MONTH, 3 * DOLLAR])  # a retry
    assert spend(shared_url) == {("bob", MONTH): 3 * DOLLAR}
    later = ledger(proxies())  # a restarted proxy: nothing rebuilt by hand
    assert isinstance(await later.admit("bob", 7 * DOLLAR), SharedReservation)  # 3 spent + 7 reserved: full
    refused = await later.admit("bob", 1)
    assert refused == over_budget(3 * DOLLAR, 10 * DOLLAR)


async def test_a_killed_proxys_reservations_stop_counting_once_its_heartbeat_is_stale(
    proxies: Callable[[], SharedState], shared_url: str
) -> None:
    gone, alive = ledger(proxies()), ledger(proxies())
    assert isinstance(await gone.admit("bob", 10 * DOLLAR), SharedReservation)
    assert isinstance(await alive.admit("bob", 1), Refusal)  # the budget is reserved in full
    with psycopg.connect(shared_url) as conn:  # its heartbeat stopped a minute ago (kill -9)
        conn.execute(
            "UPDATE fleet_members SET seen_at = now() - INTERVAL '1 minute' WHERE instance = %s", [gone.state.instance]
        )
    assert isinstance(await alive.admit("bob", 1), SharedReservation)


def undo_the_ledgers_migration(url: str) -> None:
    """The database as it was before the fleet's tables (an audit from before them)."""
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM _aibridge_migrations WHERE name = 'm003_shared_limits'")
        for table in ("fleet_members", "budget_spend", "budget_reservations", "rate_buckets", "key_cooldowns"):
            conn.execute(f"DROP TABLE {table}")
        for function in ("aibridge_reserve", "aibridge_settle", "aibridge_take", "aibridge_give"):
            conn.execute(f"DROP FUNCTION {function}")


async def test_the_ledgers_migration_takes_this_months_spend_from_the_audit(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    for n in range(2):
        _, events = interception(n)
        store.append(by_table(events))
    store.close()
    with psycopg.connect(pg_url) as conn:  # one of them this month, the other in March 2026
        conn.execute(
            "UPDATE token_usages SET created_at = now() WHERE id = (SELECT min(id::TEXT)::UUID FROM token_usages)"
        )
    undo_the_ledgers_migration(pg_url)
    PostgresStore(pg_url).close()
    assert spend(pg_url) == {("user@example.com", MONTH): 120}


async def test_without_the_database_each_proxy_keeps_its_books_and_pays_later(
    proxies: Callable[[], SharedState],
    shared_url: str,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger_module, "RETRY_INTERVAL", 0.2)
    book = ledger(proxies())
    first = await book.admit("bob", 2 * DOLLAR)
    assert isinstance(first, SharedReservation)
    book.settle(first, 2 * DOLLAR)
    await settled(book)
    postgres_server.kill()
    local = await book.admit("bob", 8 * DOLLAR)  # the database's last word: US$2 spent
    assert isinstance(local, SharedReservation) and local.local
    assert await book.admit("bob", 1) == over_budget(2 * DOLLAR, 10 * DOLLAR)  # 2 spent + 8 reserved: full
    book.settle(local, 5 * DOLLAR)
    refusing = ledger(proxies(), "refuse")
    refusal = await refusing.admit("bob", 1)
    assert isinstance(refusal, Refusal) and refusal.status == 503 and refusal.message.startswith("budget unavailable")
    assert book.fallbacks == 2 and refusing.fallbacks == 1
    postgres_server.start()
    await settled(book)
    assert spend(shared_url) == {("bob", MONTH): 7 * DOLLAR}
