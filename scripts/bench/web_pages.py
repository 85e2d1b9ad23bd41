"""Time the web view's pages (`aibridge web`) on a large audit file, rendered server-side.

    .venv/bin/python scripts/gen_audit.py /tmp/audit-1m.duckdb --interceptions 1000000 --seed 1
    .venv/bin/python scripts/bench/web_pages.py /tmp/audit-1m.duckdb [--runs 5]

Each page is fetched through Starlette's TestClient from the app `aibridge web` serves (no proxy: the file is
opened read-only for each request, as the view does), so a time is the whole request: opening the audit, the
queries, the template and the response. The session page is the longest session's (about 400 interceptions on
a generated 1M file). Prints a markdown table of median and max milliseconds against the targets.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from starlette.testclient import TestClient

from addon.cli.source import Direct, open_source
from addon.web.app import create_app

TARGETS_MS = {"sessions": 500.0, "session": 500.0, "spend": 1500.0}


def longest_session(audit: str) -> tuple[str, int]:
    source = open_source(audit)
    assert isinstance(source, Direct), "stop the proxy first: this times the pages without its endpoint"
    try:
        (found,) = source._reader.fetch(
            """SELECT session_id, count(*) FROM interceptions WHERE ended_at IS NOT NULL
               GROUP BY 1 ORDER BY count(*) DESC, session_id LIMIT 1"""
        )[1]
    finally:
        source.close()
    return found[0], found[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audit", help="the audit file (no process may hold it read-write), or a postgresql:// URL")
    parser.add_argument("--runs", type=int, default=5, help="fetches per page (default 5), after one warm-up")
    args = parser.parse_args()
    if not args.audit.startswith("postgresql://") and not Path(args.audit).exists():
        parser.error(f"no file {args.audit}")

    session_id, size = longest_session(args.audit)
    client = TestClient(create_app(args.audit))
    first = client.get("/sessions?format=json").json()
    pages = [
        ("sessions", "sessions (first page)", "/sessions"),
        (None, "sessions (page 2)", f"/sessions?after={quote(first['next'] or '')}"),
        (None, "sessions --user", f"/sessions?user={quote(first['sessions'][0]['user'])}"),
        (None, "sessions by cost", "/sessions?sort=cost"),
        (None, "sessions by tokens", "/sessions?sort=tokens"),
        (None, "sessions, prompt search", "/sessions?q=backoff"),
        ("session", f"session ({size} interceptions)", f"/sessions/{quote(session_id, safe='')}"),
        ("spend", "spend", "/spend"),
        (None, "live", "/live"),
        (None, "sessions CSV", "/sessions?format=csv"),
    ]
    rows = []
    for target, label, url in pages:
        times, length = [], 0
        for n in range(args.runs + 1):
            began = time.perf_counter()
            answer = client.get(url)
            elapsed = (time.perf_counter() - began) * 1000
            assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
            length = len(answer.content)
            if n:  # the first fetch warms the OS page cache
                times.append(elapsed)
        rows.append((target, label, times, length))

    size_mb = (
        "PostgreSQL" if args.audit.startswith("postgresql://") else f"{Path(args.audit).stat().st_size / 1e6:.0f} MB"
    )
    print(f"{args.audit} ({size_mb}); {args.runs} fetches per page after a warm-up\n")
    print("| page | median ms | max ms | KB | target ms | ok |")
    print("|---|---:|---:|---:|---:|---|")
    for target, label, times, length in rows:
        floor = TARGETS_MS.get(target or "")
        median = statistics.median(times)
        verdict = "" if floor is None else ("yes" if median <= floor else "**NO**")
        print(
            f"| {label} | {median:.0f} | {max(times):.0f} | {length / 1024:.0f} | "
            f"{'' if floor is None else f'{floor:.0f}'} | {verdict} |"
        )


if __name__ == "__main__":
    main()
