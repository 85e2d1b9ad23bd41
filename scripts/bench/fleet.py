"""A fleet on this machine: the bridge on PostgreSQL against the bridge on DuckDB (what the shared store and its
limit checks add to a request's first byte), and throughput at concurrency 64 for 1 and 2 proxies behind HAProxy.

    .venv/bin/python scripts/bench/fleet.py [--rounds 3] [--requests 200] [--seconds 10] [--concurrency 64]

Every proxy has the same users, budgets and rate limits (high enough never to refuse), so each request goes
through a budget and a rate-limit check: in memory on DuckDB, in the database on PostgreSQL. The parts are real:
mitmdump with the addon and HAProxy (tests/support/fleet.py), a throwaway PostgreSQL (tests/support/postgres.py,
fsync off as the tests run it), the benchmarks' TLS mock provider. Scenarios alternate within each round; the
figures are medians over rounds. The load client (aiohttp, one process) shares the machine's cores with the
proxies, HAProxy, PostgreSQL and the mock, and its own CPU is printed: on 2 cores, 2 proxies cannot double
what 1 gives.
"""

import argparse
import asyncio
import base64
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from load import Knobs, Result, call, client_session
from phases import pct
from plan import HOSTS, PATHS
from procs import Procs, proc_cpu
from targets import Target, providers_toml, start_mock, urls

from addon.config import hash_token
from tests.support.fleet import Fleet
from tests.support.postgres import PostgresServer

USERS = tuple(f"bench{i}" for i in range(8))
KNOBS = Knobs(events=20, bytes=200)
FORMAT = "anthropic"


def config(upstream: str) -> str:
    users = "".join(f'[users.{u}]\ntoken = "{hash_token("aib_" + u)}"\ngroups = ["bench"]\n\n' for u in USERS)
    return (
        providers_toml(upstream)
        + users
        + "[budgets]\ngroups = { bench = 1000000 }\n\n"
        + "[rate_limits.groups.bench]\nrequests_per_minute = 100000000\ntokens_per_minute = 1000000000\n"
    )


def target(name: str, proxy_url: str, bundle: Path, user: str = USERS[0]) -> Target:
    return Target(
        name=name,
        urls={(fmt, stream): f"https://{HOSTS[fmt]}{path}" for (fmt, stream), path in PATHS.items()},
        ssl=ssl.create_default_context(cafile=str(bundle)),
        proxy=proxy_url,
        proxy_headers={"proxy-authorization": "Basic " + base64.b64encode(f"{user}:aib_{user}".encode()).decode()},
        bridged=True,
    )


def failed(name: str, results: list[Result], errors: dict[str, list[str]]) -> list[Result]:
    bad = [r.error for r in results if not r.ok]
    errors.setdefault(name, []).extend(bad)
    return [r for r in results if r.ok]


async def first_bytes(t: Target, n: int, errors: dict[str, list[str]]) -> list[float]:
    """Seconds to the first event of `n` sequential streams on one kept-alive connection."""
    async with client_session(t, 1) as session:
        await call(session, t, FORMAT, True, KNOBS)  # the connection, the tunnel, the proxy's first-call paths
        results = [await call(session, t, FORMAT, True, KNOBS) for _ in range(n)]
    return [r.ttfe for r in failed(t.name, results, errors)]


async def throughput(fleet: Fleet, name: str, concurrency: int, seconds: float, errors: dict[str, list[str]]) -> dict:
    """Streams per second from `concurrency` workers over as many connections through the balancer, each
    worker one user's; and the CPU the proxies and this load client used meanwhile."""
    targets = [target(name, fleet.url, fleet.bundle, USERS[i % len(USERS)]) for i in range(concurrency)]
    results: list[Result] = []
    async with client_session(targets[0], concurrency) as session:
        await asyncio.gather(*(call(session, t, FORMAT, True, KNOBS) for t in targets))  # open every connection
        pids = [p.pid for p in fleet.proxies]
        proxies0, client0 = sum(proc_cpu(pid) for pid in pids), time.process_time()
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(t: Target) -> None:
            while time.perf_counter() < deadline:
                results.append(await call(session, t, FORMAT, True, KNOBS))

        await asyncio.gather(*(worker(t) for t in targets))
        elapsed = time.perf_counter() - start
        proxies1, client1 = sum(proc_cpu(pid) for pid in pids), time.process_time()
    ok = failed(name, results, errors)
    return {
        "rps": len(ok) / elapsed,
        "total_p50": pct([r.total for r in ok], 50) * 1000,
        "total_p99": pct([r.total for r in ok], 99) * 1000,
        "proxy_cores": (proxies1 - proxies0) / elapsed,
        "client_cores": (client1 - client0) / elapsed,
        "sent": len(results),
    }


def interceptions(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM interceptions").fetchone()
    return row[0] if row else 0


def median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


async def run(args: argparse.Namespace, tmp: Path, server: PostgresServer) -> None:
    procs = Procs()
    fleets: list[Fleet] = []
    try:
        mock = await start_mock(procs, tmp)
        toml = config(mock.url)
        extra = ("--set", f"ssl_verify_upstream_trusted_ca={mock.ca}")
        conf = tmp / "conf"  # one CA for all
        dbs = {name: server.create_database(name) for name in ("single", "one", "two")}

        def fleet(name: str, db: str, n: int) -> Fleet:
            started = Fleet(tmp / name, db, n, config=toml, args=extra, confdir=conf, keep_lines=2000).start()
            fleets.append(started)
            return started

        duck = fleet("duckdb", str(tmp / "duckdb" / "audit.duckdb"), 1)
        single = fleet("single", dbs["single"], 1)
        one, two = fleet("one", dbs["one"], 1), fleet("two", dbs["two"], 2)
        direct = Target("direct", urls(mock.url), mock.ssl)
        by_store = {
            "DuckDB": target("DuckDB", duck.proxies[0].url, duck.bundle),
            "PostgreSQL": target("PostgreSQL", single.proxies[0].url, single.bundle),
        }
        errors: dict[str, list[str]] = {}
        ttfe: dict[str, list[float]] = {name: [] for name in ("direct", *by_store)}
        rates: dict[str, list[dict]] = {"1 proxy": [], "2 proxies": []}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
            ttfe["direct"] += await first_bytes(direct, args.requests, errors)
            for name, t in by_store.items() if round_ % 2 == 0 else reversed(by_store.items()):
                ttfe[name] += await first_bytes(t, args.requests, errors)
            pairs = [("1 proxy", one), ("2 proxies", two)]
            for name, f in pairs if round_ % 2 == 0 else reversed(pairs):
                rates[name].append(await throughput(f, name, args.concurrency, args.seconds, errors))
        while fleets:
            fleets.pop().stop()  # each writer commits what it holds on a clean shutdown
        warm = args.rounds * args.concurrency  # the warm-up calls are recorded too
        sent = {name: warm + sum(r["sent"] for r in rounds) for name, rounds in rates.items()}
        stored = {"1 proxy": interceptions(dbs["one"]), "2 proxies": interceptions(dbs["two"])}
    finally:
        for f in fleets:
            f.stop()
        procs.stop_all()

    base50, base99 = pct(ttfe["direct"], 50), pct(ttfe["direct"], 99)
    added = {name: (pct(v, 50) - base50, pct(v, 99) - base99) for name, v in ttfe.items() if name != "direct"}
    duck50, duck99 = added["DuckDB"]
    print(f"Anthropic streams of {KNOBS.events} events; first byte over {args.rounds} x {args.requests} sequential")
    print(f"calls each (direct to the mock: p50 {base50 * 1000:.2f} ms, p99 {base99 * 1000:.2f} ms).\n")
    print("| first byte, added by the proxy (ms) | bridge on DuckDB | bridge on PostgreSQL | PostgreSQL/DuckDB |")
    print("|---|---:|---:|---:|")
    pg50, pg99 = added["PostgreSQL"]
    print(f"| p50 | {duck50 * 1000:.2f} | {pg50 * 1000:.2f} | {pg50 / duck50:.2f} |")
    print(f"| p99 | {duck99 * 1000:.2f} | {pg99 * 1000:.2f} | {pg99 / duck99:.2f} |")
    print(
        f"\nThroughput at concurrency {args.concurrency}, through HAProxy, on PostgreSQL"
        f" ({args.rounds} x {args.seconds:g} s):\n"
    )
    print("| figure | 1 proxy | 2 proxies | 2/1 |")
    print("|---|---:|---:|---:|")
    for key, label in [
        ("rps", "streams/s"),
        ("total_p50", "stream time p50 (ms)"),
        ("total_p99", "stream time p99 (ms)"),
        ("proxy_cores", "proxies' CPU (cores)"),
        ("client_cores", "load client's CPU (cores)"),
    ]:
        a, b = median(rates["1 proxy"], key), median(rates["2 proxies"], key)
        print(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    print(
        f"| interceptions recorded / streams sent | {stored['1 proxy']} / {sent['1 proxy']}"
        f" | {stored['2 proxies']} / {sent['2 proxies']} | |"
    )
    for name, bad in errors.items():
        if bad:
            print(f"\n{name}: {len(bad)} failed, e.g. {bad[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--requests", type=int, default=200, help="sequential calls a store a round (default 200)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of load a fleet a round (default 10)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent streams (default 64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aibridge-fleet-bench-") as tmp, PostgresServer(Path(tmp) / "pg") as server:
        asyncio.run(run(args, Path(tmp), server))


if __name__ == "__main__":
    main()
