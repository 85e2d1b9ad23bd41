"""Time the audit CLI's queries on an audit file (or PostgreSQL database), opened exactly as the CLI opens it
without a proxy.

    .venv/bin/python scripts/bench/cli_queries.py /tmp/audit-1m.duckdb [--runs 5] [--dump results.json]
    .venv/bin/python scripts/bench/cli_queries.py postgresql://aibridge@127.0.0.1:5432/audit

Each run of each query opens the audit afresh with `addon.cli.source.open_source` (for a file: an in-memory
DuckDB that ATTACHes it READ_ONLY; for PostgreSQL: a new connection), as every `aibridge ...` invocation does,
and times `queries.run` alone: "cold" is that first query on the new connection (DuckDB's own cache empty; the OS
page cache is warm after the first run), "warm" is the same query repeated on that connection. Prints a markdown
table of median and max milliseconds, with the floors from the product issue.
`--queries FILE` benchmarks another copy of queries.py (e.g. the committed one, from
`git show HEAD:addon/audit/queries.py`), and `--dump` writes every query's JSON result, to compare two versions.
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addon.audit import queries
from addon.audit.store import is_postgres
from addon.cli import source
from addon.cli.source import Direct, open_source

FLOORS_MS = {
    "sessions (first page)": 300.0,
    "usage --by model": 1000.0,
    "session <id>": 100.0,
    "actions": 100.0,
    "cache": 1000.0,
    "usage --by repo": 1000.0,
}


def load_queries(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_queries", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def opened(audit: str) -> Direct:
    found = open_source(audit)
    assert isinstance(found, Direct), "stop the proxy first: this times the queries without its endpoint"
    return found


def cases(audit: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, query, params) for every benchmarked query; picks the busiest user and the longest session (for
    `session` and `actions`: its tool calls are the actions)."""
    offline = opened(audit)
    db = offline._reader
    (user,) = db.fetch(
        "SELECT initiator FROM interception_starts GROUP BY 1 ORDER BY count(*) DESC, initiator LIMIT 1"
    )[1][0]
    (longest, size) = db.fetch(
        """SELECT session_id, count(*) FROM interceptions WHERE ended_at IS NOT NULL
           GROUP BY 1 ORDER BY count(*) DESC, session_id LIMIT 1"""
    )[1][0]
    (actions,) = db.fetch(
        "SELECT count(*) FROM tool_usages WHERE interception_id IN (SELECT id FROM interceptions WHERE session_id = ?)",
        [longest],
    )[1][0]
    first = offline.run("sessions", {"filters": {}, "limit": 50})
    back = db.fetch(
        "SELECT ended_at, interception_id FROM interception_ends ORDER BY ended_at DESC, interception_id DESC "
        "LIMIT 1 OFFSET 300"
    )[1]
    found = [
        ("sessions (first page)", "sessions", {"filters": {}, "limit": 50}),
        ("sessions (page 2)", "sessions", {"filters": {}, "after": first["next"], "limit": 50}),
        (f"sessions --user {user}", "sessions", {"filters": {"user": user}, "limit": 50}),
        ("usage --by model", "usage", {"by": "model", "filters": {}}),
        ("usage --by user", "usage", {"by": "user", "filters": {}}),
        ("usage --by day", "usage", {"by": "day", "filters": {}}),
        ("usage --by repo", "usage", {"by": "repo", "filters": {}}),
        ("usage --by agent", "usage", {"by": "agent", "filters": {}}),
        (f"session <id> ({size} interceptions)", "session", {"session_id": longest}),
        (f"actions <id> ({size} interceptions, {actions} actions)", "actions", {"session_id": longest}),
        ("cache --by session", "cache", {"by": "session", "filters": {}}),
        ("cache --by user", "cache", {"by": "user", "filters": {}}),
        ("interceptions (first page)", "interceptions", {"filters": {}, "limit": 50}),
        ("models", "models", {"filters": {}}),
        ("clients", "clients", {"filters": {}}),
    ]
    if back:  # what `aibridge tail` polls every second: the ends after its cursor
        after = queries.encode_cursor(back[0][0], str(back[0][1]))
        found.append(("tail (300 ends after a cursor)", "tail", {"after": after, "limit": 200}))
    offline._reader.close()  # type: ignore[attr-defined]
    return found


def floor_of(label: str) -> float | None:
    return next((ms for name, ms in FLOORS_MS.items() if label.startswith(name)), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audit", help="the audit file (no process may hold it read-write), or a postgresql:// URL")
    parser.add_argument("--runs", type=int, default=5, help="fresh opens per query (default 5)")
    parser.add_argument("--warm", type=int, default=3, help="repeats on each open connection (default 3)")
    parser.add_argument("--queries", help="benchmark this copy of queries.py instead of addon/audit/queries.py")
    parser.add_argument("--dump", type=Path, help="write each query's JSON result to this file")
    args = parser.parse_args()
    if not is_postgres(args.audit) and not Path(args.audit).exists():
        parser.error(f"no file {args.audit}")
    module = load_queries(args.queries) if args.queries else queries
    source.queries = module  # type: ignore[attr-defined]  # what Direct.run calls

    todo = cases(args.audit)
    opens: list[float] = []
    results: dict[str, Any] = {}
    rows = []
    for label, name, params in todo:
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(args.runs):
            began = time.perf_counter()
            offline = opened(args.audit)
            opens.append(time.perf_counter() - began)
            for i in range(1 + args.warm):
                began = time.perf_counter()
                result = offline.run(name, json.loads(json.dumps(params)))
                (cold if i == 0 else warm).append((time.perf_counter() - began) * 1000)
            offline._reader.close()  # type: ignore[attr-defined]
        results[label] = result
        rows.append((label, cold, warm))

    size = "PostgreSQL" if is_postgres(args.audit) else f"{Path(args.audit).stat().st_size / 1e6:.0f} MB"
    print(f"{args.audit} ({size}), queries from {module.__file__}")
    print(
        f"{args.runs} fresh opens per query (open: median {statistics.median(opens) * 1000:.1f} ms), "
        f"{args.warm} warm repeats each\n"
    )
    print("| query | cold median ms | cold max ms | warm median ms | floor ms | ok |")
    print("|---|---:|---:|---:|---:|---|")
    for label, cold, warm in rows:
        floor = floor_of(label)
        verdict = "" if floor is None else ("yes" if statistics.median(cold) <= floor else "**NO**")
        print(
            f"| {label} | {statistics.median(cold):.1f} | {max(cold):.1f} | "
            f"{statistics.median(warm) if warm else float('nan'):.1f} | {'' if floor is None else f'{floor:.0f}'} | "
            f"{verdict} |"
        )
    if args.dump:
        args.dump.write_text(json.dumps(results, indent=1, default=str))
        print(f"\nresults written to {args.dump}")


if __name__ == "__main__":
    main()
