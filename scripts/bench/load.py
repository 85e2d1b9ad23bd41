"""The load client: the mock's knobs, coding-client-like request bodies and headers, and one timed HTTP call
through a target (or straight to the mock), over a pooled or a fresh-connection session."""

import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
from plan import MODELS
from targets import Target

from addon.engine.job import INTERCEPTION_HEADER

FRAME_EVENTS = {"anthropic": 5, "openai": 4, "gemini": 0}
"""Events a mock stream has besides its text deltas (OpenAI: with the usage chunk, which the client asks for;
Gemini: none, its last text chunk carries the finish reason and the usage, as the service sends it)."""
_EVENT_END = re.compile(rb"[^\n]\n\n")
"""The end of an SSE event once CRs are dropped: a blank line after a line (`\n\n`, or Gemini's `\r\n\r\n`).
Further blank lines (a keep-alive's `\r\n`) end nothing."""


def stream_events(fmt: str, events: int) -> int:
    """Events in a mock stream of `events` text deltas (a Gemini stream has at least its one final chunk)."""
    return (max(events, 1) if fmt == "gemini" else events) + FRAME_EVENTS[fmt]


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
    if fmt == "gemini":  # the model and whether it streams are the path's
        contents = [
            {"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
            for m in messages
        ]
        gemini = {"contents": contents, "systemInstruction": {"parts": [{"text": "You are a benchmark."}]}}
        return json.dumps(gemini).encode()
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
    elif fmt == "gemini":
        headers["x-goog-api-key"] = "AIzaSy-bench-0123456789"
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
        async with session.post(
            target.urls[fmt, stream], data=body, headers=headers, proxy=target.proxy, proxy_headers=target.proxy_headers
        ) as response:
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
                data = previous + chunk.replace(b"\r", b"")
                completed = len(_EVENT_END.findall(data))
                previous = data[-2:]
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
    expected = stream_events(fmt, knobs.events)
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
