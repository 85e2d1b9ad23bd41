"""`--profile DIR`: py-spy on the floor and the bridge under two loads, and a summary of where each one's event
loop spends its CPU (by owner, by the component that asked for the work, and by function)."""

import asyncio
import contextlib
import math
import shutil
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path

from load import Knobs, call, client_session
from phases import Bench
from plan import BIN, MIXED, Plan
from procs import Procs, thread_cpu
from targets import Target, start_proxy


def py_spy() -> str | None:
    exe = BIN / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


_AREAS = {
    "mitmproxy": "mitmproxy",
    "OpenSSL": "TLS (pyOpenSSL/OpenSSL)",
    "ssl.py": "TLS (ssl module)",
    "asyncio": "asyncio",
    "httptools": "httptools (HTTP parsing)",
    "httpx": "httpx (upstream client)",
    "httpcore": "httpx/httpcore (upstream client)",
    "h11": "h11 (HTTP/1 parsing)",
    "anyio": "httpx/httpcore (upstream client)",
    "logging": "logging",
    "duckdb": "duckdb",
}


def area(frame: str) -> str:
    """A coarse owner for a py-spy frame `function (path/of/module.py:line)`."""
    path = frame[frame.rfind("(") + 1 :].removesuffix(")").rsplit(":", 1)[0]
    first = path.split("/", 1)[0]
    if first == "addon":
        return "bridge: " + path.split("/", 1)[1].removesuffix(".py")
    return _AREAS.get(first, first.removesuffix(".py") or "other")


_GENERIC = ("asyncio", "TLS (", "h11", "contextlib", "dataclasses", "typing", "<", "functools", "selectors", "socket")


def component(frames: list[str]) -> str:
    """The innermost specific owner of a stack: generic frames (asyncio, TLS, contextlib, ...) count for the
    component that called them, so the bridge's own share includes the work it asks for."""
    for frame in reversed(frames):
        owner = area(frame)
        if not owner.startswith(_GENERIC):
            return owner
    return "event loop (asyncio)"


def summarise_profile(path: Path, threads: dict[str, float], top: int = 12) -> list[str]:
    """Where the main thread (the event loop) spends its samples; other threads only as a share."""
    leaf: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    main = other = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if "(" in f]
        if not frames or not count.isdigit():
            continue
        n = int(count)
        if "_bootstrap (threading.py" in frames[0]:
            other += n
            continue
        main += n
        leaf[frames[-1]] += n
        self_area[area(frames[-1])] += n
        charged[component(frames)] += n
        for owner in {area(f) for f in frames}:
            inclusive[owner] += n
    if not main:
        return ["(no samples)"]
    cpu = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in threads.items())
    out = [
        f"CPU by thread over the load (/proc): {cpu}",
        f"{main} samples of the main thread (event loop), {other} of other threads (py-spy also samples threads "
        "waiting for the GIL; trust /proc for their CPU).",
        "Main thread, self time by owner (C code counts for its Python caller):",
    ]
    out += [f"  {100 * n / main:5.1f}%  {name}" for name, n in self_area.most_common(top)]
    out.append("Main thread, charged to the component that asked for it (asyncio, TLS etc. count for their caller):")
    out += [f"  {100 * n / main:5.1f}%  {name}" for name, n in charged.most_common(top)]
    out.append("Main thread, inclusive (on the stack), below 90%:")
    out += [f"  {100 * n / main:5.1f}%  {name}" for name, n in inclusive.most_common() if n < 0.9 * main][:top]
    out.append("Main thread, top functions (self):")
    out += [f"  {100 * n / main:5.1f}%  {name}" for name, n in leaf.most_common(top)]
    return out


async def profile_load(bench: Bench, target: Target, workload: str, seconds: int) -> str:
    """Load for a profile, a little longer than the recording; returns what it did."""
    plan = bench.plan
    if workload == "requests":
        runner = Bench(Plan(**{**plan.__dict__, "tput_seconds": seconds + 1.5, "tput_max": 1_000_000}), bench.mock)
        await asyncio.wait_for(runner.throughput(target, 16), seconds + 60)
        rps = statistics.median(runner.metrics[target.name]["rps_c16"] or [math.nan])
        cores = statistics.median(runner.metrics[target.name]["cores_c16"] or [math.nan])
        return f"{rps:.0f} req/s at {cores:.2f} cores"
    streams, pace_ms = 16, 10
    knobs = Knobs((seconds * 1000 + 1500) // pace_ms, plan.event_bytes, pace_ms)
    async with client_session(target, streams) as s:
        cpu0, start = target.cpu() or 0.0, time.perf_counter()
        calls = (call(s, target, MIXED[i % len(MIXED)], True, knobs) for i in range(streams))
        results = bench.record(target, list(await asyncio.wait_for(asyncio.gather(*calls), seconds + 60)))
        cpu1, elapsed = target.cpu() or 0.0, time.perf_counter() - start
    events = sum(r.events for r in results)
    per_event = (cpu1 - cpu0) / events * 1e6 if events else math.nan
    return (
        f"{events / elapsed:.0f} events/s at {(cpu1 - cpu0) / elapsed:.2f} cores, {per_event:.0f} µs per event all-in"
    )


async def profile(bench: Bench, procs: Procs, tmp: Path, outdir: Path, seconds: int = 10) -> list[str]:
    """py-spy on the floor and the bridge under two loads: many short streams (per-request costs) and 16 long
    streams with events 10 ms apart (per-event costs)."""
    spy = py_spy()
    if spy is None:
        return ["py-spy not found (`.venv/bin/pip install py-spy`); no profile."]
    await asyncio.to_thread(outdir.mkdir, parents=True, exist_ok=True)
    lines = [f"## Profiles (py-spy, {seconds} s per load, 200 samples/s)", ""]
    loads = {
        "requests": f"c=16 {bench.plan.short_events}-event streams, formats alternating",
        "events": "16 streams, events 10 ms apart, formats alternating",
    }
    for name in ("floor", "bridge"):
        target = await start_proxy(procs, name, bench.mock, tmp, "profile")
        assert target.process is not None
        try:
            await bench.warm_up(target)
            for workload, description in loads.items():
                out = outdir / f"{name}-{workload}.txt"
                cmd = [spy, "record", "-p", str(target.process.pid), "-d", str(seconds), "-r", "200", "--nonblocking"]
                recorder = procs.start([*cmd, "--format", "raw", "-o", str(out)], outdir / f"{name}-{workload}.log")
                await asyncio.sleep(1.0)  # py-spy attaches
                before = thread_cpu(target.process.pid)
                did = await profile_load(bench, target, workload, seconds)
                after = thread_cpu(target.process.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(recorder.wait, seconds + 30)
                procs.stop(recorder)
                used = {
                    ("main" if tid == str(target.process.pid) else f"thread {tid}"): after[tid] - before.get(tid, 0.0)
                    for tid in after
                }
                threads = dict(sorted(((k, v) for k, v in used.items() if v >= 0.01), key=lambda kv: -kv[1]))
                lines += [f"### {name}, {description}: {did}", f"raw stacks: {out}", "", "```"]
                lines += summarise_profile(out, threads) if out.exists() else ["(py-spy wrote nothing; see its log)"]
                lines += ["```", ""]
        finally:
            procs.stop(target.process)
    return lines
