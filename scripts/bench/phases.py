"""The benchmark's phases: what each one sends to a target and which figures it keeps (`Bench`), one phase run
over every scenario in turn (`phase`), and the in-process audit writer's committed rows/s."""

import asyncio
import math
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from load import Knobs, Result, call, client_session
from plan import FORMATS, MIXED, MODELS, Plan
from procs import proc_cpu
from targets import Mock, Target


def pct(values: Iterable[float], q: float) -> float:
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


@dataclass
class Bench:
    plan: Plan
    mock: Mock
    metrics: dict[str, dict[str, list[float]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    """scenario: figure: one value per round"""
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    sent: Counter[str] = field(default_factory=Counter)
    checks: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    rss_base: dict[int, float] = field(default_factory=dict)
    """pid: VmRSS before its first paced phase (later phases reuse memory Python kept from earlier ones)"""

    def record(self, target: Target, results: list[Result]) -> list[Result]:
        self.sent[target.name] += len(results)
        for r in results:
            if not r.ok:
                self.errors[target.name] += 1
                if len(self.error_samples[target.name]) < 5:
                    self.error_samples[target.name].append(r.error)
        return [r for r in results if r.ok]

    def put(self, target: Target, figure: str, value: float | None) -> None:
        if value is not None and not math.isnan(value):
            self.metrics[target.name][figure].append(value)

    async def sequential(
        self, target: Target, fmts: list[str], stream: bool, knobs: Knobs, n: int, new: bool = False
    ) -> tuple[list[Result], float | None]:
        """n requests one after another (formats taken in turn); the proxy's CPU seconds over them."""
        async with client_session(target, 1, new) as s:
            for i in range(self.plan.warmup):
                await call(s, target, fmts[i % len(fmts)], stream, knobs)
            cpu0 = target.cpu()
            results = [await call(s, target, fmts[i % len(fmts)], stream, knobs) for i in range(n)]
            cpu1 = target.cpu()
        return self.record(target, results), (cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None)

    async def latency(self, target: Target) -> None:
        """Per format: short streams, then blocking JSON; then long streams, the mixed formats alternating (the
        fast marginal per event), then long streams per format (each format's own marginal)."""
        p = self.plan
        short, long = Knobs(p.short_events, p.event_bytes), Knobs(p.long_events, p.event_bytes)
        fmts = [fmt for fmt in FORMATS if fmt in target.formats]
        mixed = [fmt for fmt in MIXED if fmt in target.formats]
        cpu_short: dict[str, float] = {}
        for fmt in fmts:
            ok, cpu = await self.sequential(target, [fmt], True, short, p.seq)
            self.put(target, f"ttfe_warm_{fmt}_p50", pct((r.ttfe for r in ok), 50) * 1000)
            self.put(target, f"ttfe_warm_{fmt}_p99", pct((r.ttfe for r in ok), 99) * 1000)
            self.put(target, f"total_short_{fmt}_p50", pct((r.total for r in ok), 50) * 1000)
            if cpu is not None:
                cpu_short[fmt] = cpu / p.seq
        short_mixed = [cpu_short[fmt] for fmt in mixed if fmt in cpu_short]
        if short_mixed:
            self.put(target, "cpu_short_ms", statistics.mean(short_mixed) * 1000)
        cpu_json: list[float] = []
        for fmt in fmts:
            ok, cpu = await self.sequential(target, [fmt], False, short, p.seq)
            self.put(target, f"json_{fmt}_p50", pct((r.total for r in ok), 50) * 1000)
            self.put(target, f"json_{fmt}_p99", pct((r.total for r in ok), 99) * 1000)
            if cpu is not None and fmt in mixed:
                cpu_json.append(cpu / p.seq)
        if cpu_json:
            self.put(target, "cpu_json_ms", statistics.mean(cpu_json) * 1000)
        extra = p.long_events - p.short_events
        ok, cpu = await self.sequential(target, mixed, True, long, p.seq_long)
        self.put(target, "total_long_p50", pct((r.total for r in ok), 50) * 1000)
        self.put(target, "total_long_p99", pct((r.total for r in ok), 99) * 1000)
        if cpu is not None and short_mixed:
            per_long = cpu / p.seq_long
            self.put(target, "cpu_event_us", (per_long - statistics.mean(short_mixed)) / extra * 1e6)
        for fmt in fmts:
            _, cpu = await self.sequential(target, [fmt], True, long, p.seq_long)
            if cpu is not None and fmt in cpu_short:
                self.put(target, f"cpu_event_{fmt}_us", (cpu / p.seq_long - cpu_short[fmt]) / extra * 1e6)

    async def event_cost(self, target: Target) -> None:
        """Marginal proxy CPU per event when every event is its own write (as LLM tokens arrive): short and long
        streams paced `cost_pace_ms` apart, a few at a time (far from saturation, so events are not coalesced)."""
        p = self.plan
        per_stream: list[float] = []
        for events in p.cost_events:
            knobs = Knobs(events, p.event_bytes, p.cost_pace_ms)
            results: list[Result] = []
            async with client_session(target, p.cost_concurrency) as s:
                await asyncio.gather(*(call(s, target, "anthropic", True, knobs) for _ in range(p.cost_concurrency)))
                cpu0 = target.cpu()
                for wave in range(0, p.cost_streams, p.cost_concurrency):
                    size = min(p.cost_concurrency, p.cost_streams - wave)
                    batch = (call(s, target, MIXED[(wave + i) % len(MIXED)], True, knobs) for i in range(size))
                    results += await asyncio.gather(*batch)
                cpu1 = target.cpu()
            self.record(target, results)
            if cpu0 is None or cpu1 is None:
                return
            per_stream.append((cpu1 - cpu0) / p.cost_streams)
        extra = p.cost_events[1] - p.cost_events[0]
        self.put(target, "cpu_paced_event_us", (per_stream[1] - per_stream[0]) / extra * 1e6)

    async def new_connections(self, target: Target) -> None:
        p = self.plan
        ok, cpu = await self.sequential(
            target, ["anthropic"], True, Knobs(p.short_events, p.event_bytes), p.seq_new, True
        )
        self.put(target, "ttfe_new_p50", pct((r.ttfe for r in ok), 50) * 1000)
        self.put(target, "ttfe_new_p99", pct((r.ttfe for r in ok), 99) * 1000)
        if cpu is not None:
            self.put(target, "cpu_new_ms", cpu / p.seq_new * 1000)

    async def throughput(self, target: Target, concurrency: int) -> None:
        p = self.plan
        knobs = Knobs(p.short_events, p.event_bytes)
        results: list[Result] = []
        async with client_session(target, concurrency) as s:
            await asyncio.gather(*(call(s, target, MIXED[i % len(MIXED)], True, knobs) for i in range(concurrency)))
            issued = 0
            cpu0, harness0, mock0 = target.cpu(), time.process_time(), proc_cpu(self.mock.process.pid)
            start = time.perf_counter()
            deadline = start + p.tput_seconds

            async def worker() -> None:
                nonlocal issued
                while issued < p.tput_max and time.perf_counter() < deadline:
                    issued += 1
                    results.append(await call(s, target, MIXED[issued % len(MIXED)], True, knobs))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
            cpu1, harness1, mock1 = target.cpu(), time.process_time(), proc_cpu(self.mock.process.pid)
        ok = self.record(target, results)
        self.put(target, f"rps_c{concurrency}", len(ok) / elapsed)
        if cpu0 is not None and cpu1 is not None:
            self.put(target, f"cores_c{concurrency}", (cpu1 - cpu0) / elapsed)
        if concurrency == max(p.concurrencies):
            self.checks[target.name]["harness_cores_cmax"] = max(
                self.checks[target.name]["harness_cores_cmax"], (harness1 - harness0 + mock1 - mock0) / elapsed
            )

    async def paced(self, target: Target, n: int, tag: str, dense: bool = False) -> None:
        """n concurrent paced streams over n pooled connections: inter-event gaps and the proxy's RSS and CPU."""
        p = self.plan
        events, pace_ms = (p.dense_events, p.dense_pace_ms) if dense else (p.paced_events, p.pace_ms)
        repeats = p.dense_repeats if dense else p.paced_repeats
        key = f"dense_{n}" if dense else str(n)
        trace: Counter[str] = Counter()
        async with aiohttp.ClientSession() as control, client_session(target, n, trace=trace) as s:
            rss0 = target.rss()
            gate = f"{target.name}-{tag}-{key}"
            warm = [
                asyncio.ensure_future(call(s, target, MIXED[i % len(MIXED)], False, Knobs(1, 100, gate=gate)))
                for i in range(n)
            ]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until every request waits at the gate (or failed)
                waiting = (await self.mock.get(control, f"/gates/{gate}"))["waiting"]
                if waiting + sum(w.done() for w in warm) >= n:
                    break
                await asyncio.sleep(0.05)
            await self.mock.post(control, f"/gates/{gate}/open")
            self.record(target, list(await asyncio.gather(*warm)))
            opened = trace["connections"]
            cpu0 = target.cpu()
            start = time.perf_counter()
            peak = rss0 or 0.0
            results: list[Result] = []
            for _ in range(repeats):
                streams = [
                    asyncio.ensure_future(
                        call(
                            s,
                            target,
                            MIXED[i % len(MIXED)],
                            True,
                            Knobs(events, p.event_bytes, pace_ms, ttfe_ms=pace_ms * i // n),
                            gaps=True,
                        )
                    )
                    for i in range(n)
                ]
                hold_deadline = time.monotonic() + 120
                pending: set[asyncio.Future[Result]] = set(streams)
                while pending and time.monotonic() < hold_deadline:
                    _, pending = await asyncio.wait(pending, timeout=0.1)
                    if rss0 is not None and pending:
                        peak = max(peak, target.rss() or 0.0)
                for future in pending:
                    future.cancel()
                results += [f.result() if not f.cancelled() else Result(False, error="timed out") for f in streams]
            elapsed = time.perf_counter() - start
            cpu1 = target.cpu()
        self.checks[target.name]["paced_new_connections"] += trace["connections"] - opened
        self.checks[target.name]["paced_pooled_connections"] += opened
        ok = self.record(target, results)
        delays = [g * 1000 - pace_ms for r in ok for g in (r.gaps or [])]
        self.put(target, f"gap_{key}_p50", pct(delays, 50))
        self.put(target, f"gap_{key}_p99", pct(delays, 99))
        if rss0 is not None and target.process is not None and not dense:
            base = self.rss_base.setdefault(target.process.pid, rss0)
            self.put(target, f"rss_{key}_mb", (peak - base) / n)
        if cpu0 is not None and cpu1 is not None:
            self.put(target, f"cores_paced_{key}", (cpu1 - cpu0) / elapsed)
            relayed = sum(r.events for r in ok)
            self.put(target, f"cpu_per_event_{key}_us", (cpu1 - cpu0) / relayed * 1e6 if relayed else None)

    async def warm_up(self, target: Target) -> None:
        """First requests: the bridge waits for MCP servers, imports and allocates what it needs once."""
        async with client_session(target, 4) as s:
            for fmt in target.formats:
                for stream in (True, False):
                    results = [await call(s, target, fmt, stream, Knobs(5)) for _ in range(self.plan.warmup)]
                    self.record(target, results)


async def phase(bench: Bench, label: str, order: list[Target], run: Callable[[Target], Awaitable[None]]) -> None:
    for target in order:
        started = time.monotonic()
        try:
            await asyncio.wait_for(run(target), 300)
        except TimeoutError:
            bench.errors[target.name] += 1
            bench.error_samples[target.name].append(f"phase {label} timed out")
        print(f"  {label:<22} {target.name:<11} {time.monotonic() - started:5.1f} s", file=sys.stderr, flush=True)
        await asyncio.sleep(0.3)  # let the last phase's connections close


# --- the audit writer ----------------------------------------------------------------------------------------


def audit_rows_per_second(rows: int, directory: Path) -> float:
    """Committed rows/s of the audit writer, fed a realistic mix as fast as it takes it."""
    from addon.audit import AuditWriter, InterceptionEnded, InterceptionStarted, PromptSubmitted, TokensUsed
    from addon.ids import uuid7

    path = directory / f"audit-bench-{time.monotonic_ns()}.duckdb"
    now = datetime.now(UTC)
    events: list[Any] = []
    for i in range(rows // 4):
        iid = uuid7()
        events += [
            InterceptionStarted(
                id=iid, initiator="alice", provider="anthropic", provider_name="anthropic", model=MODELS["anthropic"],
                client="claude-code", user_agent="claude-cli/2.0.0 (external, cli)", client_session_id=f"s{i // 50}",
                thread_parent_id=None, thread_root_id=iid, correlating_tool_call_id=None, credential_kind="byok",
                credential_hint="sk-ant-...6789", streaming=True, route="/v1/messages", started_at=now,
            ),
            PromptSubmitted(interception_id=iid, provider_response_id=f"msg_{i}", prompt="Fix the failing test. " * 8),
            TokensUsed(
                interception_id=iid, provider_response_id=f"msg_{i}", input_tokens=1200, output_tokens=300,
                cache_read_input_tokens=20000, cache_write_input_tokens=500, cost_micros=12345, input_cost_micros=3600,
                output_cost_micros=4500, cache_read_cost_micros=6000, cache_write_cost_micros=1875,
                prices={"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75, "source": "genai-prices"},
            ),
            InterceptionEnded(
                interception_id=iid, status="completed", http_status=200, response_model=MODELS["anthropic"]
            ),
        ]  # fmt: skip
    writer = AuditWriter(str(path))
    writer.start()
    try:
        for event in events:
            writer.emit(event)
        commits: list[tuple[float, int]] = []
        deadline = time.monotonic() + 120
        while writer.rows_written < len(events) and time.monotonic() < deadline:
            written = writer.rows_written
            if not commits or written != commits[-1][1]:
                commits.append((time.perf_counter(), written))
            time.sleep(0.002)
        commits.append((time.perf_counter(), writer.rows_written))
    finally:
        writer.close()
        for leftover in directory.glob(path.name + "*"):
            leftover.unlink()
    first = next(((t, r) for t, r in commits if r > 0), None)
    if first is None or commits[-1][1] <= first[1]:
        return math.nan
    return (commits[-1][1] - first[1]) / (commits[-1][0] - first[0])
