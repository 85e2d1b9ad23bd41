"""What the guards cost a request: the bridge's CPU per request with secrets redacted from what is kept (the
default) and also from what leaves (`outbound = "redact"`), against the bridge with redaction off, measured in
the same run on the same machine.

    .venv/bin/python scripts/bench/guards.py [--requests 300] [--rounds 3]

Real mitmdump processes with the addon, the benchmarks' TLS mock provider, coding-client-like request bodies
(8 KB, the load client's), JSON and streamed answers in turn; the rounds interleave the three bridges. Prints a
markdown table of the medians over rounds and their ratios to redaction off.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from load import Knobs, call, client_session
from plan import MIXED
from procs import Procs
from targets import Target, start_mock, start_proxy

SCENARIOS = {
    "redaction off": "\n[redaction]\naudit = false\n",
    "audit redacted (default)": "",
    "audit and outbound redacted": '\n[redaction]\noutbound = "redact"\n',
}


async def cpu_per_request(target: Target, n: int) -> float:
    """Milliseconds of the proxy's CPU per request over `n` sequential requests (formats and streaming in turn)."""
    knobs = Knobs(events=20)
    async with client_session(target, 1) as session:
        for i in range(20):  # warm: connections, caches, the first-call paths
            await call(session, target, MIXED[i % 2], bool(i % 2), knobs)
        before = target.cpu()
        results = [await call(session, target, MIXED[i % 2], bool(i % 2), knobs) for i in range(n)]
        after = target.cpu()
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{target.name}: {len(failed)} of {n} failed, e.g. {failed[0]}")
    assert before is not None and after is not None
    return (after - before) / n * 1000


async def run(args: argparse.Namespace, tmp: Path) -> None:
    procs = Procs()
    try:
        mock = await start_mock(procs, tmp)
        targets = {}
        for i, (name, extra) in enumerate(SCENARIOS.items()):
            target = await start_proxy(procs, "bridge", mock, tmp, f"guards{i}", extra)
            target.name = name
            targets[name] = target
        figures: dict[str, list[float]] = {name: [] for name in targets}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
            order = list(targets.items())
            for name, target in order if round_ % 2 == 0 else reversed(order):
                figures[name].append(await cpu_per_request(target, args.requests))
    finally:
        procs.stop_all()
    base = statistics.median(figures["redaction off"])
    print(f"Proxy CPU per request, {args.rounds} rounds x {args.requests} requests (8 KB bodies, JSON and streams):\n")
    print("| bridge | CPU ms per request | ratio |")
    print("|---|---:|---:|")
    for name, values in figures.items():
        value = statistics.median(values)
        print(f"| {name} | {value:.2f} | {value / base:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests a bridge a round (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aibridge-guards-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
