"""A bounded soak of the bridge: a real mitmdump with the addon and an MCP server (stdio), the mock provider
from tests/support, and mixed traffic on 127.0.0.1 for `--minutes` (default 10): streaming and blocking, both
APIs, some injected tool loops. It samples the proxy's RSS, open file descriptors, threads and asyncio tasks,
then checks the audit file holds every interception, ended.

    .venv/bin/python scripts/soak/run.py              # 10 minutes
    .venv/bin/python scripts/soak/run.py --minutes 2 --concurrency 8

Prints a summary and exits 1 on any failed request, a missing or unended record, or more descriptors, tasks
or threads idle after the load than idle before it. The RSS slope after warm-up is reported in MB per minute,
with DuckDB's buffer pool apart: it caches the audit file's pages as the file grows, up to the writer's
`memory_limit` (bounded, not a leak). RSS less that pool fails past `--max-rss-slope`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
QUIET = 8.0
"""Seconds of idle before and after the load, when fds and tasks are compared."""
sys.path.insert(0, str(ROOT))

from tests.support.mock_upstream import Answer, MockUpstream, Seen  # noqa: E402
from tests.support.proxy import Proxy, provider_config  # noqa: E402
from tests.support.scenarios import anthropic_events, anthropic_message, chat_chunks, chat_completion  # noqa: E402

A_URL = "https://api.anthropic.com/v1/messages"
O_URL = "https://api.openai.com/v1/chat/completions"
TOOL_PROMPT = "use the echo tool"
KINDS = (  # (name, weight)
    ("anthropic stream", 35),
    ("anthropic blocking", 15),
    ("openai stream", 25),
    ("openai blocking", 10),
    ("tool loop", 15),
)


def respond(seen: Seen) -> Answer:
    """The mock provider's answer to each request, by what it asked."""
    body = seen.json()
    last = body["messages"][-1]
    stream = bool(body.get("stream"))
    if seen.path.startswith("/v1/chat/completions"):
        return Answer.sse(chat_chunks(["soak ", "chat ", "answer"])) if stream else Answer.json(chat_completion("ok"))
    if last.get("content") == TOOL_PROMPT:  # the first round of a loop: call the injected echo tool
        call = [("toolu_soak", "bmcp_soak_echo", {"message": "ping"})]
        return (
            Answer.sse(anthropic_events([""], tools=call)) if stream else Answer.json(anthropic_message("", tools=call))
        )
    parts = ["soak ", "anthropic ", "answer"]
    return Answer.sse(anthropic_events(parts)) if stream else Answer.json(anthropic_message("".join(parts)))


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)


async def one(client: httpx.AsyncClient, kind: str, tally: Tally) -> None:
    tally.sent += 1
    messages = [{"role": "user", "content": TOOL_PROMPT if kind == "tool loop" else "hello"}]
    if kind.startswith("openai"):
        url, body = O_URL, {"model": "gpt-4.1", "messages": messages, "stream": kind.endswith("stream")}
    else:
        url, body = A_URL, {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages}
        body["stream"] = kind != "anthropic blocking"
    try:
        async with client.stream("POST", url, json=body, headers={"x-api-key": "sk-ant-soak"}) as response:
            data = await response.aread()
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {data[:200]!r}")
        if body["stream"] and b"message_stop" not in data and b"[DONE]" not in data:
            raise RuntimeError(f"stream without its final event: {data[-200:]!r}")
        if b'"type": "error"' in data or b"event: error" in data:
            raise RuntimeError(f"error event: {data[-300:]!r}")
        tally.ok += 1
        tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
    except Exception as e:  # every failure counts and is reported
        tally.errors.append(f"{kind}: {e!r}"[:400])


async def drive(proxy: Proxy, minutes: float, concurrency: int, tally: Tally, max_requests: int) -> None:
    verify = ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    kinds, weights = zip(*KINDS, strict=True)
    deadline = time.monotonic() + minutes * 60
    async with httpx.AsyncClient(proxy=proxy.url, verify=verify, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < deadline and tally.sent < max_requests:
                await one(client, random.choices(kinds, weights)[0], tally)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def proc_figures(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def probed(probe: Path) -> dict[str, float]:
    """The proxy's latest asyncio task count, Python object count and DuckDB memory, as its probe addon wrote
    them (-1 before it did)."""
    figures = {"tasks": -1.0, "py_objects": -1.0, "duckdb_mb": -1.0}
    for line in probe.read_text().splitlines() if probe.exists() else []:
        figures.update(json.loads(line))
    return figures


async def sample(pid: int, probe: Path, every: float, samples: list[dict[str, float]], stop: asyncio.Event) -> None:
    start = time.monotonic()
    while not stop.is_set():
        figures = proc_figures(pid)
        inside = probed(probe)
        figures |= {key: inside[key] for key in ("tasks", "py_objects", "duckdb_mb")}
        figures["rss_less_duckdb_mb"] = figures["rss_mb"] - max(inside["duckdb_mb"], 0)
        figures["t"] = time.monotonic() - start
        samples.append(figures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


async def soak(args: argparse.Namespace, work: Path) -> int:
    mock = MockUpstream()
    mock.keep_requests = False
    mock.responder = respond
    mock.start()
    server = (
        "[mcp_servers.soak]\n"
        f"command = {json.dumps(sys.executable)}\n"
        'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]\n'
        f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}\n'
        'allow = "^echo$"\n'
    )
    probe = work / "probe.jsonl"
    proxy = Proxy(
        work,
        provider_config(mock.url) + "\n" + server,
        args=("-s", str(ROOT / "scripts/soak/probe_addon.py")),
        env={"AIBRIDGE_SOAK_PROBE": str(probe)},
    )
    proxy.start()
    assert proxy.process is not None
    tally, samples, stop = Tally(), [], asyncio.Event()
    sampler = asyncio.create_task(sample(proxy.process.pid, probe, args.sample, samples, stop))
    await asyncio.sleep(QUIET)  # idle, MCP server connected: the baseline
    before = samples[-1]
    started = time.monotonic()
    try:
        await drive(proxy, args.minutes, args.concurrency, tally, args.max_requests)
    finally:
        await asyncio.sleep(QUIET)  # idle again: connections closed, tasks ended
        stop.set()
        await sampler
        elapsed = time.monotonic() - started
        proxy.stop()
        mock.stop()

    rows = proxy.rows("SELECT status, count(*) AS n, count(ended_at) AS ended FROM interceptions GROUP BY status")
    recorded = sum(r["n"] for r in rows)
    ended = sum(r["ended"] for r in rows)
    completed = sum(r["n"] for r in rows if r["status"] == "completed")
    after = samples[-1]
    loaded = [s for s in samples if before["t"] < s["t"] <= after["t"] - QUIET]
    warm = [s for s in loaded if s["t"] >= before["t"] + args.warmup * elapsed] or loaded or samples
    rss_slope = slope_per_minute([(s["t"], s["rss_mb"]) for s in warm])
    own_slope = slope_per_minute([(s["t"], s["rss_less_duckdb_mb"]) for s in warm])
    duckdb_slope = slope_per_minute([(s["t"], s["duckdb_mb"]) for s in warm])
    first, last = warm[0], warm[-1]
    peak = {k: max(s[k] for s in loaded or samples) for k in ("fds", "tasks", "threads")}
    print(
        f"soak: {elapsed / 60:.1f} min, concurrency {args.concurrency}, {tally.sent} requests, {tally.ok} ok, "
        f"{len(tally.errors)} errors ({tally.sent / elapsed:.1f} req/s)"
    )
    print("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.by_kind.items())))
    print(
        f"  audit: {recorded} interceptions recorded, {ended} ended, {completed} completed "
        f"({', '.join(f'{r["status"]} {r["n"]}' for r in rows)})"
    )
    print(
        f"  RSS after warm-up: {first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB, slope {rss_slope:+.2f} MB/min "
        f"(samples {len(warm)} of {len(samples)})"
    )
    print(
        f"  of which DuckDB's buffer pool (the audit file's pages, capped by its memory_limit): "
        f"{first['duckdb_mb']:.1f} -> {last['duckdb_mb']:.1f} MB, slope {duckdb_slope:+.2f} MB/min; "
        f"RSS less DuckDB: slope {own_slope:+.2f} MB/min"
    )
    print(f"  Python objects: {first['py_objects']:.0f} at warm-up, {last['py_objects']:.0f} at the end")
    for key in ("fds", "tasks", "threads"):
        print(f"  {key}: {before[key]:.0f} idle before, {after[key]:.0f} idle after, peak {peak[key]:.0f} under load")
    for error in tally.errors[:10]:
        print(f"  error: {error}")

    problems = []
    if tally.errors:
        problems.append(f"{len(tally.errors)} failed requests")
    if recorded != tally.sent or ended != recorded or completed != tally.ok:
        problems.append(f"audit mismatch: sent {tally.sent}, recorded {recorded}, ended {ended}, completed {completed}")
    pool = args.concurrency  # the bridge keeps up to one idle upstream connection per concurrent request
    if any(
        after[key] > before[key] + args.slack + (pool if key == "fds" else 0) for key in ("fds", "tasks", "threads")
    ):
        problems.append("descriptors, tasks or threads grew: idle after the load vs idle before")
    if own_slope > args.max_rss_slope:
        problems.append(f"RSS less DuckDB's buffer pool grows {own_slope:.2f} MB/min after warm-up")
    print("soak: " + ("FAILED: " + "; ".join(problems) if problems else "passed"))
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, default=0.25, help="share of the run counted as warm-up")
    parser.add_argument("--slack", type=int, default=4, help="fds/tasks/threads idle after may exceed idle before by")
    parser.add_argument(
        "--max-rss-slope", type=float, default=2.0, help="MB/min of RSS growth (less DuckDB's cache) that fails"
    )
    parser.add_argument("--keep", type=Path, help="work directory to keep (audit file, logs); default a temp dir")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        sys.exit(asyncio.run(soak(args, args.keep)))
    with tempfile.TemporaryDirectory(prefix="aibridge-soak-") as tmp:
        sys.exit(asyncio.run(soak(args, Path(tmp))))


if __name__ == "__main__":
    main()
