"""The proxy benchmark: direct, the mitmdump floor, the bridge, and the bridge with injected MCP tools, interleaved.

    .venv/bin/python scripts/bench/run.py [--quick] [--litellm] [--audit-cost] [--floor-gc] [--worker] [--out FILE]
        [--rounds N] [--profile DIR]

Everything runs on 127.0.0.1 with public tools: `mock_provider.py` (an aiohttp provider over TLS, Anthropic and
OpenAI wire formats, knobs for events, size, pacing and time to first event) in a subprocess; per round, fresh
mitmdump subprocesses (`floor_addon.py`, the do-nothing streaming addon; `addon/aibridge.py` without MCP servers;
the same with `tests/support/mcp_server.py` over stdio, so tools are injected but the mock never calls them); and
an aiohttp load client in this process speaking HTTPS through each proxy with CONNECT, trusting the CA from the
proxy's printed `export SSL_CERT_FILE=` line. Proxied requests go to api.anthropic.com / api.openai.com, which
each proxy sends to the mock; direct requests go to the mock itself.

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
  (200 events, formats alternating): time to first event, total time; proxy CPU (utime+stime from /proc) per
  request; CPU per relayed event as the marginal cost (long minus short streams, per extra event).
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
`--floor-gc` adds the floor with the bridge's garbage-collection policy (`addon/gc_policy.py`) and a second ratio
column, so what the bridge's data path costs shows apart from what that policy saves.
`--litellm` adds LiteLLM's proxy when `litellm` is installed (else it says so and skips): a base-URL gateway, so
plain HTTP without CONNECT, knobs in the body tag, and event counts unchecked (it re-encodes streams).
`--profile DIR` then samples the floor and the bridge with py-spy (`pip install py-spy`) under two loads, c=16 short
streams (per-request costs) and 16 streams with events 10 ms apart (per-event costs), and summarises where each
spends its CPU, with per-thread CPU from /proc.

The load client, the mock and the proxies share the machine: the "harness CPU" check says how much the client and
the mock used at the highest concurrency; req/s figures (direct's above all) are bounded by it on small machines.
"""

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERCEPTION_HEADER = "x-aibridge-interception-id"
FORMATS = ("anthropic", "openai")
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
HOSTS = {"anthropic": "api.anthropic.com", "openai": "api.openai.com"}
MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4.1"}
FRAME_EVENTS = {"anthropic": 5, "openai": 4}
"""Events a mock stream has besides its text deltas (OpenAI: with the usage chunk, which the client asks for)."""
AUDIT_OFF = "bridge, audit off"
WORKER = "bridge, worker"
FLOOR_GC = "floor, bridge's GC"
FLOORS = ("floor", FLOOR_GC)
"""The scenarios that run `floor_addon.py` (not bridged: no interception header)."""
_EXPORT = re.compile(r"^export (\w+)=(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Plan:
    rounds: int
    seq: int
    """Sequential requests per warm phase (per format)."""
    seq_new: int
    seq_long: int
    tput_seconds: float
    tput_max: int
    paced: tuple[int, ...]
    paced_events: int
    pace_ms: int
    audit_rows: int
    cost_streams: int
    """Streams per size in the paced per-event cost phase."""
    short_events: int = 20
    long_events: int = 200
    event_bytes: int = 200
    warmup: int = 5
    cost_concurrency: int = 4
    cost_pace_ms: int = 5
    cost_events: tuple[int, int] = (10, 110)
    concurrencies: tuple[int, ...] = (1, 16, 64)
    dense: tuple[int, ...] = (100, 150)
    """Stream counts for the issue's dense pattern (`dense_events` events `dense_pace_ms` apart): near one core."""
    dense_events: int = 50
    dense_pace_ms: int = 20
    paced_repeats: int = 3
    dense_repeats: int = 5
    """Batches of streams back to back per paced phase, their gaps pooled: a window of several seconds, so that
    pauses a process takes every few seconds (a full garbage collection) land in it as often as they do in
    steady use, not by the luck of one short batch."""


FULL = Plan(
    rounds=3,
    seq=120,
    seq_new=100,
    seq_long=50,
    tput_seconds=1.5,
    tput_max=5000,
    paced=(100, 300),
    paced_events=30,
    pace_ms=100,
    audit_rows=200_000,
    cost_streams=24,
)
QUICK = Plan(
    rounds=1,
    seq=20,
    seq_new=10,
    seq_long=10,
    tput_seconds=0.5,
    tput_max=500,
    paced=(20, 60),
    paced_events=10,
    pace_ms=50,
    audit_rows=20_000,
    cost_streams=8,
    warmup=3,
    dense=(40,),
    dense_events=20,
    paced_repeats=1,
    dense_repeats=1,
)


# --- processes ---------------------------------------------------------------------------------------------


def proc_cpu_path(stat_path: Path) -> float:
    """Seconds of CPU (user + system) from a /proc stat file: a process's (all threads) or one thread's."""
    stat = stat_path.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, all threads) a process has used."""
    return proc_cpu_path(Path(f"/proc/{pid}/stat"))


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of a process's descendants, from /proc/<pid>/task/*/children."""
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if (start := _start_time(int(child))) is not None:
                        found.append((int(child), start))
                        todo.append(int(child))
    return found


class Procs:
    """Every process this run starts; `stop_all` ends them (and what they started), whatever happened."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
        with log.open("wb") as out:
            process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True,
            )  # fmt: skip
        self.items.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
        if process.poll() is None:
            children = descendants(process.pid)
            process.terminate()  # mitmdump shuts down cleanly: MCP servers stopped, audit flushed
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            for pid, started in children:  # anything it left behind, checked against pid reuse
                if _start_time(pid) == started:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ValueError):
            self.items.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.items)):
            self.stop(process, timeout=10)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def wait_for_line(process: subprocess.Popen[bytes], log: Path, pattern: str, within: float) -> re.Match[str]:
    """The first match of `pattern` in a process's log, waiting at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if match := re.search(pattern, read_log(log), re.MULTILINE):
            return match
        if process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    tail = "\n".join(read_log(log).splitlines()[-30:])
    raise RuntimeError(f"{' '.join(process.args[:4])}... not ready (exit code {process.poll()}):\n{tail}")  # type: ignore[index]


# --- scenarios -----------------------------------------------------------------------------------------------


@dataclass
class Target:
    """How the load client reaches one scenario."""

    name: str
    urls: dict[str, str]
    ssl: ssl.SSLContext | bool
    proxy: str | None = None
    process: subprocess.Popen[bytes] | None = None
    bridged: bool = False
    """Responses must carry the bridge's interception header."""
    strict: bool = True
    """The event count must be the mock's (false for gateways that re-encode streams)."""
    knobs_in_body_only: bool = False
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Processes of this scenario besides the proxy (the worker prototype's worker): counted with it."""

    def cpu(self) -> float | None:
        if self.process is None:
            return None
        return sum(proc_cpu(p.pid) for p in (self.process, *self.helpers))

    def rss(self) -> float | None:
        if self.process is None:
            return None
        return sum(proc_rss_mb(p.pid) for p in (self.process, *self.helpers))


@dataclass
class Mock:
    process: subprocess.Popen[bytes]
    url: str
    ca: Path
    ssl: ssl.SSLContext

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(self.url + path, ssl=self.ssl) as response:
            return await response.json()

    async def post(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.post(self.url + path, ssl=self.ssl) as response:
            return await response.json()


async def start_mock(procs: Procs, tmp: Path) -> Mock:
    log = tmp / "mock.log"
    process = procs.start([sys.executable, str(HERE / "mock_provider.py"), "--dir", str(tmp)], log, env=clean_env())
    match = await wait_for_line(process, log, r"^READY (\S+) CA=(\S+)$", 30)
    ca = Path(match.group(2))
    return Mock(process, match.group(1), ca, ssl.create_default_context(cafile=str(ca)))


def mcp_server_toml() -> str:
    return "\n".join(
        [
            "[mcp_servers.bench]",
            f"command = {json.dumps(sys.executable)}",
            'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]',
            f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}',
            "",
        ]
    )


async def start_proxy(procs: Procs, name: str, mock: Mock, tmp: Path, tag: str) -> Target:
    """A mitmdump subprocess: the floor, or the bridge (with MCP tools when the name says so)."""
    work = tmp / f"{name}-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "mitmdump"),
        "--listen-host", "127.0.0.1",
        "--listen-port", "0",
        "--set", f"confdir={tmp / ('conf-' + name)}",
        "--set", "connection_strategy=lazy",
        "--set", "flow_detail=0",
        "--set", f"ssl_verify_upstream_trusted_ca={mock.ca}",
    ]  # fmt: skip
    helpers = []
    if name in FLOORS:
        cmd += ["-s", str(HERE / "floor_addon.py"), "--set", f"floor_upstream={mock.url}"]
        cmd += ["--set", "floor_gc_policy=true"] if name == FLOOR_GC else []
    elif name == WORKER:
        config = f'[providers.anthropic]\nupstream = "{mock.url}"\n\n[providers.openai]\nupstream = "{mock.url}"\n'
        (work / "aibridge.toml").write_text(config)
        worker_cmd = [sys.executable, str(HERE / "worker_prototype.py"), "--config", str(work / "aibridge.toml")]
        worker_cmd += ["--db", str(work / "audit.duckdb"), "--ca", str(mock.ca)]
        worker_log = work / "worker.log"
        helpers.append(procs.start(worker_cmd, worker_log, env=clean_env(), cwd=work))
        hop = (await wait_for_line(helpers[0], worker_log, r"^READY (\S+)$", 60)).group(1)
        cmd += ["-s", str(HERE / "worker_prototype.py"), "--set", f"worker_hop={hop}"]
    else:
        config = f'[providers.anthropic]\nupstream = "{mock.url}"\n\n[providers.openai]\nupstream = "{mock.url}"\n\n'
        if name == "bridge+MCP":
            config += mcp_server_toml()
        (work / "aibridge.toml").write_text(config)
        cmd += ["-s", str(ROOT / "addon/aibridge.py")]
        if name == AUDIT_OFF:
            cmd += ["-s", str(HERE / "null_audit_addon.py")]
        cmd += [
            "--set", f"aibridge_config={work / 'aibridge.toml'}",
            "--set", f"aibridge_db={work / 'audit.duckdb'}",
        ]  # fmt: skip
    log = work / "mitmdump.log"
    process = procs.start(cmd, log, env=clean_env(), cwd=work)
    await wait_for_line(process, log, r"^export CURL_CA_BUNDLE=", 60)
    exports = dict(_EXPORT.findall(log.read_text(errors="replace")))
    return Target(
        name=name,
        urls={fmt: f"https://{HOSTS[fmt]}{PATHS[fmt]}" for fmt in FORMATS},
        ssl=ssl.create_default_context(cafile=exports["SSL_CERT_FILE"]),
        proxy=exports["HTTPS_PROXY"],
        process=process,
        bridged=name not in FLOORS,
        helpers=helpers,
    )


def litellm_command() -> list[str] | None:
    exe = BIN / "litellm"
    if exe.exists():
        return [str(exe)]
    if found := shutil.which("litellm"):
        return [found]
    if importlib.util.find_spec("litellm") is not None:
        return [sys.executable, "-m", "litellm"]
    return None


async def start_litellm(procs: Procs, mock: Mock, tmp: Path, tag: str) -> Target:
    """LiteLLM's proxy as a base-URL gateway (no CONNECT): clients talk plain HTTP to it, it calls the mock."""
    command = litellm_command()
    assert command is not None
    work = tmp / f"litellm-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(
        "model_list:\n"
        f"  - model_name: {MODELS['anthropic']}\n"
        f"    litellm_params: {{model: anthropic/{MODELS['anthropic']}, api_base: '{mock.url}', api_key: sk-ant-b}}\n"
        f"  - model_name: {MODELS['openai']}\n"
        f"    litellm_params: {{model: openai/{MODELS['openai']}, api_base: '{mock.url}/v1', api_key: sk-b}}\n"
        "litellm_settings:\n  drop_params: true\n"
    )
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # No master key: a benchmark on 127.0.0.1, and LiteLLM then skips its own key checks (in its favour).
    env = clean_env() | {
        "SSL_CERT_FILE": str(mock.ca),
        "SSL_VERIFY": str(mock.ca),
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        "LITELLM_LOG": "ERROR",
    }
    log = work / "litellm.log"
    process = procs.start(
        [*command, "--config", str(work / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)], log, env, work
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(base + "/health/liveliness") as response:
                    if response.status == 200:
                        return Target(
                            name="litellm",
                            urls={fmt: base + PATHS[fmt] for fmt in FORMATS},
                            ssl=False,
                            process=process,
                            strict=False,
                            knobs_in_body_only=True,
                        )
            await asyncio.sleep(0.5)
    tail = "\n".join(read_log(log).splitlines()[-30:])
    raise RuntimeError(f"litellm did not become ready:\n{tail}")


# --- the load client -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    events: int
    bytes: int = 200
    pace_ms: int = 0
    ttfe_ms: int = 0
    gate: str | None = None

    def tag(self) -> str:
        gate = f" gate={self.gate}" if self.gate else ""
        return f"[mock events={self.events} bytes={self.bytes} pace_ms={self.pace_ms} ttfe_ms={self.ttfe_ms}{gate}]"

    def headers(self) -> dict[str, str]:
        headers = {
            "x-mock-events": str(self.events),
            "x-mock-bytes": str(self.bytes),
            "x-mock-pace-ms": str(self.pace_ms),
            "x-mock-ttfe-ms": str(self.ttfe_ms),
        }
        if self.gate:
            headers["x-mock-gate"] = self.gate
        return headers


BODY_KB = 8


@lru_cache(maxsize=4096)
def request_body(fmt: str, stream: bool, knobs: Knobs) -> bytes:
    """A coding-client-like request: some history (about BODY_KB KB), then a short prompt carrying the knob tag."""
    history = ("def f(x):\n    return x * 2\n" * (BODY_KB * 1024 // 32 + 1))[: BODY_KB * 1024]
    messages = [
        {"role": "user", "content": history},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": f"Say hello. {knobs.tag()}"},
    ]
    if fmt == "anthropic":
        body: dict[str, Any] = {
            "model": MODELS[fmt],
            "max_tokens": 1024,
            "system": "You are a benchmark.",
            "messages": messages,
        }
    else:
        body = {"model": MODELS[fmt], "messages": [{"role": "system", "content": "You are a benchmark."}, *messages]}
    if stream:
        body["stream"] = True
        if fmt == "openai":
            body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def request_headers(target: Target, fmt: str, knobs: Knobs) -> dict[str, str]:
    headers = {"content-type": "application/json", "x-bench-scenario": target.name, "user-agent": "aibridge-bench/1"}
    if fmt == "anthropic":
        headers |= {"x-api-key": "sk-ant-api03-bench-0123456789", "anthropic-version": "2023-06-01"}
    else:
        headers["authorization"] = "Bearer sk-proj-bench-0123456789"
    if not target.knobs_in_body_only:
        headers |= knobs.headers()
    return headers


@dataclass
class Result:
    ok: bool
    ttfe: float = math.nan
    total: float = math.nan
    events: int = 0
    gaps: list[float] | None = None
    error: str = ""


async def call(
    session: aiohttp.ClientSession, target: Target, fmt: str, stream: bool, knobs: Knobs, gaps: bool = False
) -> Result:
    """One request; times are seconds from just before sending to the first complete event / the end."""
    body = request_body(fmt, stream, knobs)
    headers = request_headers(target, fmt, knobs)
    start = time.perf_counter()
    try:
        async with session.post(target.urls[fmt], data=body, headers=headers, proxy=target.proxy) as response:
            if response.status != 200:
                text = await response.text(errors="replace")
                return Result(False, error=f"HTTP {response.status}: {text[:200]}")
            if target.bridged and INTERCEPTION_HEADER not in response.headers:
                return Result(False, error="not bridged: no interception header")
            if not stream:
                await response.read()
                end = time.perf_counter()
                return Result(True, end - start, end - start)
            count, first, last, previous = 0, math.nan, 0.0, b""
            gap_list: list[float] | None = [] if gaps else None
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                completed = (previous + chunk).count(b"\n\n")
                previous = chunk[-1:]
                for _ in range(completed):
                    if count == 0:
                        first = now
                    elif gap_list is not None:
                        gap_list.append(now - last)
                    last = now
                    count += 1
            end = time.perf_counter()
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return Result(False, error=f"{type(e).__name__}: {e}")
    expected = knobs.events + FRAME_EVENTS[fmt]
    if target.strict and count != expected:
        return Result(False, first - start, end - start, count, gap_list, f"{count} events, expected {expected}")
    return Result(count > 0, first - start, end - start, count, gap_list, "" if count else "no events")


def client_session(target: Target, limit: int, new_connections: bool = False, trace: Counter[str] | None = None):  # type: ignore[no-untyped-def]
    keepalive: dict[str, Any] = {"force_close": True} if new_connections else {"keepalive_timeout": 120}
    connector = aiohttp.TCPConnector(ssl=target.ssl, limit=limit, limit_per_host=limit, **keepalive)
    traces = []
    if trace is not None:
        config = aiohttp.TraceConfig()

        async def created(*_: Any) -> None:
            trace["connections"] += 1

        config.on_connection_create_end.append(created)
        traces.append(config)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=180, sock_connect=30),
        trace_configs=traces,
        auto_decompress=False,
    )


def pct(values: Iterable[float], q: float) -> float:
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


# --- phases ------------------------------------------------------------------------------------------------


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
        p = self.plan
        short, long = Knobs(p.short_events, p.event_bytes), Knobs(p.long_events, p.event_bytes)
        cpu_short: list[float] = []
        for fmt in FORMATS:
            ok, cpu = await self.sequential(target, [fmt], True, short, p.seq)
            self.put(target, f"ttfe_warm_{fmt}_p50", pct((r.ttfe for r in ok), 50) * 1000)
            self.put(target, f"ttfe_warm_{fmt}_p99", pct((r.ttfe for r in ok), 99) * 1000)
            self.put(target, f"total_short_{fmt}_p50", pct((r.total for r in ok), 50) * 1000)
            if cpu is not None:
                cpu_short.append(cpu / p.seq)
        if cpu_short:
            self.put(target, "cpu_short_ms", statistics.mean(cpu_short) * 1000)
        cpu_json: list[float] = []
        for fmt in FORMATS:
            ok, cpu = await self.sequential(target, [fmt], False, short, p.seq)
            self.put(target, f"json_{fmt}_p50", pct((r.total for r in ok), 50) * 1000)
            self.put(target, f"json_{fmt}_p99", pct((r.total for r in ok), 99) * 1000)
            if cpu is not None:
                cpu_json.append(cpu / p.seq)
        if cpu_json:
            self.put(target, "cpu_json_ms", statistics.mean(cpu_json) * 1000)
        ok, cpu = await self.sequential(target, list(FORMATS), True, long, p.seq_long)
        self.put(target, "total_long_p50", pct((r.total for r in ok), 50) * 1000)
        self.put(target, "total_long_p99", pct((r.total for r in ok), 99) * 1000)
        if cpu is not None and cpu_short:
            per_long = cpu / p.seq_long
            self.put(
                target, "cpu_event_us", (per_long - statistics.mean(cpu_short)) / (p.long_events - p.short_events) * 1e6
            )

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
                    batch = (call(s, target, FORMATS[(wave + i) % 2], True, knobs) for i in range(size))
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
            await asyncio.gather(*(call(s, target, FORMATS[i % 2], True, knobs) for i in range(concurrency)))
            issued = 0
            cpu0, harness0, mock0 = target.cpu(), time.process_time(), proc_cpu(self.mock.process.pid)
            start = time.perf_counter()
            deadline = start + p.tput_seconds

            async def worker() -> None:
                nonlocal issued
                while issued < p.tput_max and time.perf_counter() < deadline:
                    issued += 1
                    results.append(await call(s, target, FORMATS[issued % 2], True, knobs))

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
                asyncio.ensure_future(call(s, target, FORMATS[i % 2], False, Knobs(1, 100, gate=gate)))
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
                            FORMATS[i % 2],
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
            for fmt in FORMATS:
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
    sys.path.insert(0, str(ROOT))
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


# --- the report -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    kind: str
    """added: proxies show the excess over direct (direct shows its own value in parentheses);
    abs: every column its own value; proxy: proxies only; bridge: one figure, in the bridge column."""
    digits: int = 2


def rows(plan: Plan) -> list[Row]:
    out = [
        Row("TTFE p50, warm, Anthropic stream (ms, added)", "ttfe_warm_anthropic_p50", "added"),
        Row("TTFE p99, warm, Anthropic stream (ms, added)", "ttfe_warm_anthropic_p99", "added"),
        Row("TTFE p50, warm, OpenAI stream (ms, added)", "ttfe_warm_openai_p50", "added"),
        Row("TTFE p99, warm, OpenAI stream (ms, added)", "ttfe_warm_openai_p99", "added"),
        Row("TTFE p50, new connection per request (ms, added)", "ttfe_new_p50", "added"),
        Row("TTFE p99, new connection per request (ms, added)", "ttfe_new_p99", "added"),
        Row("JSON response p50, Anthropic (ms, added)", "json_anthropic_p50", "added"),
        Row("JSON response p99, Anthropic (ms, added)", "json_anthropic_p99", "added"),
        Row("JSON response p50, OpenAI (ms, added)", "json_openai_p50", "added"),
        Row("JSON response p99, OpenAI (ms, added)", "json_openai_p99", "added"),
        Row(f"total stream time p50, {plan.short_events} events, Anthropic (ms)", "total_short_anthropic_p50", "abs"),
        Row(f"total stream time p50, {plan.short_events} events, OpenAI (ms)", "total_short_openai_p50", "abs"),
        Row(f"total stream time p50, {plan.long_events} events (ms)", "total_long_p50", "abs"),
        Row(f"total stream time p99, {plan.long_events} events (ms)", "total_long_p99", "abs"),
        Row("proxy CPU per JSON request, warm (ms)", "cpu_json_ms", "proxy"),
        Row(f"proxy CPU per {plan.short_events}-event stream, warm (ms)", "cpu_short_ms", "proxy"),
        Row(f"proxy CPU per {plan.short_events}-event stream, new connection (ms)", "cpu_new_ms", "proxy"),
        Row("proxy CPU per relayed event, fast stream, marginal (µs)", "cpu_event_us", "proxy", 0),
        Row(
            f"proxy CPU per relayed event, {plan.cost_pace_ms} ms apart, marginal (µs)",
            "cpu_paced_event_us",
            "proxy",
            0,
        ),
    ]
    for c in plan.concurrencies:
        out.append(Row(f"req/s, {plan.short_events}-event streams, c={c}", f"rps_c{c}", "abs", 0))
    out.append(Row(f"proxy CPU at c={max(plan.concurrencies)} (cores)", f"cores_c{max(plan.concurrencies)}", "proxy"))
    for n in plan.paced:
        out += [
            Row(f"inter-event delay p50, {n} paced streams (ms, added)", f"gap_{n}_p50", "added"),
            Row(f"inter-event delay p99, {n} paced streams (ms, added)", f"gap_{n}_p99", "added"),
            Row(f"RSS per stream, {n} paced streams (MB)", f"rss_{n}_mb", "proxy", 3),
            Row(f"proxy CPU, {n} paced streams (cores)", f"cores_paced_{n}", "proxy"),
        ]
    for n in plan.dense:
        pattern = f"{n} streams × {plan.dense_events} events {plan.dense_pace_ms} ms apart"
        out += [
            Row(f"inter-event delay p50, {pattern} (ms, added)", f"gap_dense_{n}_p50", "added"),
            Row(f"inter-event delay p99, {pattern} (ms, added)", f"gap_dense_{n}_p99", "added"),
            Row(f"proxy CPU per relayed event, {pattern} (µs)", f"cpu_per_event_dense_{n}_us", "proxy", 0),
            Row(f"proxy CPU, {pattern} (cores)", f"cores_paced_dense_{n}", "proxy"),
        ]
    out.append(Row("audit writer, sustained committed rows/s", "audit_rows_s", "bridge", 0))
    return out


def fmt_number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:,.{digits}f}"


def table(bench: Bench, names: list[str], plan: Plan) -> list[str]:
    median = statistics.median
    bases = ["floor"] + ([FLOOR_GC] if FLOOR_GC in names else [])
    lines = [
        "| figure | " + " | ".join(names) + " | " + " | ".join(f"bridge/{b}" for b in bases) + " |",
        "|---|" + "---:|" * (len(names) + len(bases)),
    ]
    for row in rows(plan):
        cells: dict[str, float | None] = {}
        shown: dict[str, str] = {}
        for name in names:
            values = bench.metrics[name].get(row.key, [])
            if row.kind == "bridge" and name != "bridge":
                values = []
            if row.kind == "proxy" and name == "direct":
                values = []
            if row.kind == "added" and name != "direct":
                base = bench.metrics["direct"].get(row.key, [])
                values = [v - b for v, b in zip(values, base, strict=False)]
            cells[name] = median(values) if values else None
            text = fmt_number(cells[name], row.digits)
            shown[name] = f"({text})" if row.kind == "added" and name == "direct" and values else text
        ratios = [_ratio(cells.get("bridge"), cells.get(base)) for base in bases]
        lines.append(f"| {row.label} | " + " | ".join(shown[n] for n in names) + " | " + " | ".join(ratios) + " |")
    errors = " | ".join(str(bench.errors.get(n, 0)) + f" of {bench.sent.get(n, 0)}" for n in names)
    lines.append(f"| failed requests (all phases, all rounds) | {errors} |" + " |" * len(bases))
    return lines


def _ratio(bridge: float | None, base: float | None) -> str:
    if bridge is None or base is None or bridge <= 0 or base < 0.05:
        return "–"
    return f"{bridge / base:.2f}"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc {os.cpu_count()}, {model}, Linux {platform.release()}"


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def versions() -> str:
    import importlib.metadata as md

    found = []
    for package in ("mitmproxy", "aiohttp", "httpx", "httptools", "duckdb"):
        with contextlib.suppress(md.PackageNotFoundError):
            found.append(f"{package} {md.version(package)}")
    return f"Python {platform.python_version()}, " + ", ".join(found)


# --- profiling ---------------------------------------------------------------------------------------------------


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


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread id of a process."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            out[task.name] = proc_cpu_path(task / "stat")
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
        calls = (call(s, target, FORMATS[i % 2], True, knobs) for i in range(streams))
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


# --- main ----------------------------------------------------------------------------------------------------


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
    tmp = Path(tempfile.mkdtemp(prefix="aibridge-bench-"))
    try:
        mock = await start_mock(procs, tmp)
        bench = Bench(plan, mock)
        direct = Target("direct", {fmt: mock.url + PATHS[fmt] for fmt in FORMATS}, mock.ssl)
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

    elapsed = (datetime.now(UTC) - started).total_seconds()
    lines = [
        f"# aibridge proxy benchmark ({'quick' if args.quick else 'full'})",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s; load average before: {load_before}, "
        f"after: {load_average()}",
        f"- machine: {machine()}; {versions()}",
        f"- {plan.rounds} interleaved round(s), medians over rounds; request bodies ~{BODY_KB} KB; text events "
        f"{plan.event_bytes} B; sequential phases {plan.seq} requests per format ({plan.seq_long} long, "
        f"{plan.seq_new} new-connection); throughput {plan.tput_seconds:g} s per level; paced streams "
        f"{plan.paced_events} text events {plan.pace_ms} ms apart, {plan.paced_repeats} batches back to back "
        f"({plan.dense_repeats} of the dense pattern)",
        "",
        *table(bench, names, plan),
        "",
        "Figures marked *added* are the per-round difference from direct (direct's own value in parentheses): "
        "TTFE is the time from sending to the first complete SSE event; inter-event delay is the client-side gap "
        "between events minus the mock's pacing. Proxy CPU is the proxy process's utime+stime (all threads: the "
        "bridge's audit writer and local server included) over the phase. CPU per relayed event is a marginal cost: "
        f"fast: (CPU per {plan.long_events}-event stream − per {plan.short_events}-event stream) / "
        f"{plan.long_events - plan.short_events}, events written back to back (so read and written in batches); "
        f"paced: streams of {plan.cost_events[0]} and {plan.cost_events[1]} events {plan.cost_pace_ms} ms apart, "
        f"{plan.cost_concurrency} at a time, per extra event: one read and one write per event, as LLM tokens "
        "arrive. RSS per stream: peak VmRSS with all streams open minus VmRSS of the fresh process before its "
        "first paced phase (connections included), per stream. Audit rows/s: one writer thread, in-process, a mix "
        "of start/prompt/tokens/end rows.",
        "",
        "Checks:",
    ]
    for name in names:
        c = bench.checks.get(name, {})
        sent = bench.sent.get(name, 0)
        lines.append(
            f"- {name}: {sent} measured requests; the mock saw {upstream_requests.get(name, 0)} requests from it "
            f"(warm-ups included), {injected.get(name, 0)} with injected MCP tools; paced phases opened "
            f"{int(c.get('paced_new_connections', 0))} connections beyond the "
            f"{int(c.get('paced_pooled_connections', 0))} pooled beforehand; harness (client + mock) CPU at "
            f"c={max(plan.concurrencies)}: {c.get('harness_cores_cmax', math.nan):.2f} cores"
        )
        for sample in bench.error_samples.get(name, [])[:3]:
            lines.append(f"  - error: {sample}")
    if injected.get("bridge+MCP", 0) == 0:
        lines.append("- WARNING: no request of bridge+MCP carried injected tools: the MCP figures are not meaningful")
    lines += [f"- {note}" for note in notes]
    if profile_lines:
        lines += ["", *profile_lines]
    return "\n".join(lines) + "\n"


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
