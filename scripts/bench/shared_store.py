"""The fleet's store against the single process's, on this machine: audit writer throughput (rows/s, DuckDB file
vs PostgreSQL) and what a request's limit checks add before its first byte (budget and rate limit: in memory vs
one PostgreSQL call each).

    .venv/bin/python scripts/bench/shared_store.py [--rows 100000] [--checks 2000]

It starts its own throwaway PostgreSQL (tests/support/postgres.py; fsync off, as tests run it). Prints a
markdown table; ratios are against the in-memory or DuckDB baseline measured in the same run.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addon.audit import AuditWriter, InterceptionEnded, TokensUsed
from addon.audit.postgres import PostgresStore
from addon.config import Budgets, RateLimit, RateLimits, User, hash_token
from addon.fleet.ledger import SharedLedger
from addon.fleet.ratelimits import SharedBuckets
from addon.fleet.state import SharedState
from addon.ids import uuid7
from addon.policy.budgets import Ledger
from addon.policy.ratelimits import RateLimiter
from tests.support.audit_rows import started
from tests.support.postgres import PostgresServer

USERS = tuple(User(name=f"u{i}", token_hash=hash_token(f"aib_u{i}")) for i in range(50))
BUDGETS = Budgets(users=tuple((u.name, 10**12) for u in USERS))
LIMITS = RateLimits(users=tuple((u.name, RateLimit(requests_per_minute=10**8, tokens_per_minute=10**9)) for u in USERS))


def write_rows(target: str, rows: int) -> float:
    """Rows per second through the real writer thread, from the first emit to the last commit."""
    writer = AuditWriter(target)
    writer.start()
    began = time.perf_counter()
    for n in range(rows // 3):
        ident = uuid7()
        writer.emit(started(ident))
        writer.emit(
            TokensUsed(
                interception_id=ident,
                provider_response_id="msg",
                input_tokens=n,
                output_tokens=1,
                cache_read_input_tokens=0,
                cache_write_input_tokens=0,
                cost_micros=1,
            )
        )
        writer.emit(InterceptionEnded(interception_id=ident, status="completed", http_status=200))
    writer.close(timeout=600)
    return writer.rows_written / (time.perf_counter() - began)


async def checks(ledger: object, limiter: RateLimiter, count: int) -> list[float]:
    """Microseconds per request for its budget and rate-limit admission and settling."""
    times = []
    for n in range(count):
        user = USERS[n % len(USERS)].name
        began = time.perf_counter()
        reservation = await ledger.admit(user, 1000)  # type: ignore[attr-defined]
        ticket = await limiter.admit(user, 100)
        times.append((time.perf_counter() - began) * 1e6)
        ledger.settle(reservation, 10)  # type: ignore[attr-defined]
        limiter.settle(ticket, 120)  # type: ignore[arg-type]
    return times


async def limit_checks(url: str, count: int) -> tuple[float, float]:
    local = await checks(Ledger(BUDGETS, USERS), RateLimiter(LIMITS, USERS), count)
    state = SharedState(url)
    shared = await checks(
        SharedLedger(Ledger(BUDGETS, USERS), state), RateLimiter(LIMITS, USERS, SharedBuckets(state)), count
    )
    await asyncio.sleep(1)
    await state.close()
    return statistics.median(local), statistics.median(shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="audit rows per store (default 100000)")
    parser.add_argument("--checks", type=int, default=2000, help="requests' limit checks (default 2000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aibridge-bench-") as tmp, PostgresServer(Path(tmp) / "pg") as server:
        url = server.create_database("bench")
        PostgresStore(url).close()
        duck = write_rows(str(Path(tmp) / "audit.duckdb"), args.rows)
        pg = write_rows(url, args.rows)
        local, shared = asyncio.run(limit_checks(url, args.checks))
    print("| measure | baseline | PostgreSQL | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| audit writer, rows/s (baseline: DuckDB file) | {duck:,.0f} | {pg:,.0f} | {pg / duck:.2f} |")
    print(
        f"| budget + rate-limit checks per request, median µs (baseline: in memory) | {local:,.0f} | {shared:,.0f} | "
        f"{shared / local:.0f} |"
    )


if __name__ == "__main__":
    main()
