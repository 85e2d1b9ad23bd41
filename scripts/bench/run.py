"""The proxy benchmark: direct, the mitmdump floor, the bridge, and the bridge with injected MCP tools, interleaved.

    .venv/bin/python scripts/bench/run.py [--quick] [--litellm] [--audit-cost] [--floor-gc] [--worker] [--out FILE]
        [--rounds N] [--profile DIR]

Everything runs on 127.0.0.1 with public tools: `mock_provider.py` (an aiohttp provider over TLS, Anthropic,
OpenAI and Gemini wire formats, knobs for events, size, pacing and time to first event) in a subprocess; per
round, fresh mitmdump subprocesses (`floor_addon.py`, the do-nothing streaming addon; `addon/aibridge.py` without
MCP servers; the same with `tests/support/mcp_server.py` over stdio, so tools are injected but the mock never
calls them); and an aiohttp load client in this process speaking HTTPS through each proxy with CONNECT, trusting
the CA from the proxy's printed `export SSL_CERT_FILE=` line. Proxied requests go to api.anthropic.com,
api.openai.com and generativelanguage.googleapis.com, which each proxy sends to the mock; direct requests go to
the mock itself.
Formats: Anthropic Messages, OpenAI chat, Gemini `streamGenerateContent?alt=sse` / `generateContent`; the phases
that mix formats take Anthropic and OpenAI in turn (as they did before Gemini was added), and Gemini has the
per-format figures (warm TTFE, JSON, 20-event total, CPU per event).

Each round restarts the proxies and runs every phase for every scenario in a rotated order (phase by phase, so
slow drifts in machine load hit all scenarios alike); figures are medians over rounds, and "added" figures are
per-round differences from the direct scenario of that round. Phases:

- paced: N concurrent streams (100 and 300; events `pace_ms` apart, start phases spread over one interval) on
  connections opened and pooled beforehand (held at a mock gate until all N are in flight); measures the client's
  inter-event gaps (minus the pacing) and the proxy's peak RSS (VmRSS from /proc) over its RSS before the first
  paced phase. Run first in a round, on fresh processes, so the baseline is not inflated by earlier phases.
  Then the issue's dense pattern (50 events 20 ms apart, 100 and 150 streams). Each phase runs its batch of
  streams several times back to back (3, dense 5) and pools the gaps: a p99 over one second of load says only
  whether a pause the process takes every few seconds (a full garbage collection) happened to fall in it.
- sequential, keep-alive ("warm"): short streams (20 events) per format, blocking JSON per format, long streams
  (200 events, Anthropic and OpenAI alternating): time to first event, total time; proxy CPU (utime+stime from
  /proc) per request (Anthropic and OpenAI's mean); CPU per relayed event as the marginal cost (long minus short
  streams, per extra event). Then long streams per format, for each format's own marginal CPU per event (its
  long minus its short streams).
- sequential, new connection per request (CONNECT + TLS each time): time to first event and CPU per request.
- per-event cost: streams of 10 and 110 events 5 ms apart, 4 at a time: marginal CPU per event when each event
  is its own read and write (the fast-stream marginal above batches them).
- throughput: short streams (formats alternating) at concurrency 1, 16 and 64, bounded in time and count; req/s
  and proxy CPU in cores.
- the audit writer (in-process, after the proxies stop): `addon.audit.AuditWriter` on a temp file, a realistic mix
  of rows (start, prompt, tokens, end per interception) emitted at once; committed rows/s from `rows_written`.

`--quick` shrinks every phase (one round, fewer requests, 20/60 paced streams): a smoke run of under a minute.
`--audit-cost` adds the bridge with its recorder swapped for one that drops events (`null_audit_addon.py`), so
the two bridge columns show what recording costs the request path.
`--floor-gc` adds the floor with the bridge's garbage-collection policy (`addon/mitm/gc_policy.py`) and a second ratio
column, so what the bridge's data path costs shows apart from what that policy saves.
`--litellm` adds LiteLLM's proxy when `litellm` is installed (else it says so and skips): a base-URL gateway, so
plain HTTP without CONNECT, knobs in the body tag, and event counts unchecked (it re-encodes streams).
`--profile DIR` then samples the floor and the bridge with py-spy (`pip install py-spy`) under two loads, c=16 short
streams (per-request costs) and 16 streams with events 10 ms apart (per-event costs), and summarises where each
spends its CPU, with per-thread CPU from /proc.

The load client, the mock and the proxies share the machine: the "harness CPU" check says how much the client and
the mock used at the highest concurrency; req/s figures (direct's above all) are bounded by it on small machines.

This file holds the command line and the order of a run; the rest lives beside it: `plan.py` (formats, scenarios,
phase sizes), `procs.py` (subprocesses, CPU and RSS from /proc), `targets.py` (starting the mock, the proxies and
LiteLLM), `load.py` (knobs, request bodies, the timed HTTP call), `phases.py` (the phases and the audit writer),
`report.py` (the markdown report) and `profiling.py` (`--profile`).
"""

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from phases import Bench, audit_rows_per_second, phase
from plan import AUDIT_OFF, FLOOR_GC, FULL, QUICK, WORKER, Plan
from procs import Procs
from profiling import profile
from report import load_average, render
from targets import Target, litellm_command, start_litellm, start_mock, start_proxy, urls


async def run(args: argparse.Namespace, procs: Procs) -> str:
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    started = datetime.now(UTC)
    load_before = load_average()
    notes: list[str] = []
    with_litellm = False
    if args.litellm:
        if litellm_command() is None:
            message = "--litellm: LiteLLM is not installed (pip install 'litellm[proxy]'); skipping it."
            print(message, file=sys.stderr)
            notes.append(message)
        else:
            with_litellm = True
            notes.append("litellm: Anthropic and OpenAI only (its Gemini cells are –: not set up through it).")
    tmp = Path(tempfile.mkdtemp(prefix="aibridge-bench-"))
    try:
        mock = await start_mock(procs, tmp)
        bench = Bench(plan, mock)
        direct = Target("direct", urls(mock.url), mock.ssl)
        proxy_names = ["floor"] + ([FLOOR_GC] if args.floor_gc else []) + ["bridge", "bridge+MCP"]
        proxy_names += [AUDIT_OFF] if args.audit_cost else []
        proxy_names += [WORKER] if args.worker else []
        names = ["direct", *proxy_names] + (["litellm"] if with_litellm else [])
        injected: Counter[str] = Counter()
        upstream_requests: Counter[str] = Counter()
        audit: list[float] = []
        for round_no in range(plan.rounds):
            print(f"round {round_no + 1}/{plan.rounds}", file=sys.stderr, flush=True)
            tag = f"r{round_no}"
            proxies = await asyncio.gather(*(start_proxy(procs, n, mock, tmp, tag) for n in proxy_names))
            targets = [direct, *proxies]
            if with_litellm:
                targets.append(await start_litellm(procs, mock, tmp, tag))
            try:
                for target in targets:
                    await bench.warm_up(target)
                shift = round_no % len(targets)
                order = targets[shift:] + targets[:shift]
                for n in plan.paced:
                    await phase(bench, f"paced x{n}", order, lambda t, n=n, tag=tag: bench.paced(t, n, tag))
                for n in plan.dense:
                    await phase(bench, f"dense x{n}", order, lambda t, n=n, tag=tag: bench.paced(t, n, tag, True))
                await phase(bench, "sequential warm", order, bench.latency)
                await phase(bench, "sequential new conn", order, bench.new_connections)
                await phase(bench, "per-event cost", order, bench.event_cost)
                for c in plan.concurrencies:
                    await phase(bench, f"throughput c={c}", order, lambda t, c=c: bench.throughput(t, c))
                async with aiohttp.ClientSession() as control:
                    stats = await mock.get(control, "/stats")
                    await mock.post(control, "/stats/reset")
                for name, s in stats.items():
                    injected[name] += s["injected"]
                    upstream_requests[name] += s["requests"]
            finally:
                for target in targets:
                    if target.process is not None:
                        procs.stop(target.process)
                    for helper in target.helpers:
                        procs.stop(helper)
            audit.append(await asyncio.to_thread(audit_rows_per_second, plan.audit_rows, tmp))
        bench.metrics["bridge"]["audit_rows_s"] = audit
        seconds = args.profile_seconds or (5 if args.quick else 10)
        profile_lines = await profile(bench, procs, tmp, args.profile, seconds) if args.profile else []
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    return render(bench, names, args.quick, started, load_before, injected, upstream_requests, notes, profile_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one small round (under a minute)")
    parser.add_argument("--litellm", action="store_true", help="include LiteLLM's proxy when installed")
    parser.add_argument(
        "--audit-cost", action="store_true", help="add the bridge with recording off, to show what recording costs"
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="add the bridge with its work after the hop in a second process (scripts/bench/worker_prototype.py)",
    )
    parser.add_argument(
        "--floor-gc",
        action="store_true",
        help="add the floor with the bridge's garbage-collection policy, and the bridge's ratio to it",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown report to this file")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default: 3, quick: 1)")
    parser.add_argument("--profile", type=Path, help="then profile floor and bridge with py-spy into this directory")
    parser.add_argument("--profile-seconds", type=int, default=0, help="seconds per profiled load (5 quick, else 10)")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    procs = Procs()

    async def main_task() -> str:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args, procs)

    try:
        report = asyncio.run(main_task())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; processes stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        procs.stop_all()
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
