"""Time what the insights (the action ledger's tool results, attribution, prompt-cache forensics) add to each
request the proxy admits, as ratios measured in the same run; no proxy needed.

    .venv/bin/python scripts/bench/insights.py [--rounds 9] [--min-ms 20] [--long-kb 400]

The bodies: every real client's request captured in tests/fixtures/clients/ (Claude Code, Codex, opencode), sent
as the clients send them (compact JSON), and a long Claude Code conversation: claude-code-main-3.json with its
tool-call turns repeated (fresh call ids) to about --long-kb KB. Per request, each body:

(a) the baseline, what the proxy paid before the insights: `json.loads` of the raw body and the wire format's
    `parse_request` with its tool-result extraction switched off;
(b) all of it now: the same `parse_request` extracting the tool results (the `tool_results` column alone), then
    `attribution.attribute` (the client from `clients.detect_client`), per response the price lookup and
    `CacheWatch.observe` of one growing conversation (as `Engine.record_turn` does them; no bust), and the tool
    results' audit rows (`record.tool_result`).

Each round times (a), (b) and each part in turn on every body, each for at least --min-ms from a collected heap;
the table gives medians over the rounds, in µs per request, and of each round's own (b) − (a) and (b)/(a). Then
`cache.locate`, which runs in the audit writer's thread only when a bust was found, on the long body against the
request before it.
"""

import argparse
import copy
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addon.config import DEFAULT_TOOL_RESULT_EXCERPT
from addon.engine import record
from addon.engine.attribution import agent_thread, attribute
from addon.engine.cache import CacheWatch, locate
from addon.engine.clients import client_session_id, detect_client
from addon.policy.pricing import PriceBook, load_book
from addon.wire import (
    AnthropicMessages,
    OpenAIChat,
    OpenAIResponses,
    Usage,
    WireReader,
    anthropic_messages,
    openai_chat,
    openai_responses,
)

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "clients"
EXCERPT = DEFAULT_TOOL_RESULT_EXCERPT
GROWTH = 1500  # tokens each turn adds to the conversation's cached prefix
WIRE_MODULES = (anthropic_messages, openai_chat, openai_responses)


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def wire_of(path: str) -> tuple[WireReader, ModuleType, str]:
    """The wire format of a request path, its module, and the price book's vendor."""
    if path.startswith("/v1/messages"):
        return AnthropicMessages(), anthropic_messages, "anthropic"
    if path.startswith("/v1/responses"):
        return OpenAIResponses(), openai_responses, "openai"
    return OpenAIChat(), openai_chat, "openai"


def long_conversation(fixture: dict[str, Any], size: int) -> dict[str, Any]:
    """The fixture with its tool-call turns (after the first user message and the environment) repeated until
    the body is about `size` bytes; the original turns stay last, so the request still brings back its results."""
    body = copy.deepcopy(fixture["body"])
    head, turns = body["messages"][:2], body["messages"][2:]
    middle: list[Any] = []
    n = 0
    while len(dumps({**body, "messages": [*head, *middle, *turns]})) < size:
        n += 1
        for message in copy.deepcopy(turns):
            for part in message["content"] if isinstance(message["content"], list) else []:
                for key in ("id", "tool_use_id"):
                    if key in part:
                        part[key] = f"{part[key]}_{n}"
            middle.append(message)
    body["messages"] = [*head, *middle, *turns]
    return {**fixture, "name": f"claude-code-main-3 ×{n + 1} turns", "body": body}


def bodies(long_kb: int) -> list[dict[str, Any]]:
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        fixture = json.loads(path.read_text())
        fixture["name"] = path.stem
        found.append(fixture)
    main = next(f for f in found if f["name"] == "claude-code-main-3")
    found.append(long_conversation(main, long_kb * 1000))
    return found


@contextmanager
def without_tool_results() -> Iterator[None]:
    """`parse_request` as it was before the action ledger: no tool results extracted."""
    saved = [m.tool_results for m in WIRE_MODULES]
    for m in WIRE_MODULES:
        m.tool_results = lambda body: ()  # type: ignore[assignment]
    try:
        yield
    finally:
        for m, fn in zip(WIRE_MODULES, saved, strict=True):
            m.tool_results = fn  # type: ignore[assignment]


class Case:
    """One body, and each operation timed on it."""

    def __init__(self, fixture: dict[str, Any]) -> None:
        self.name = fixture["name"]
        self.headers = {k.lower(): v for k, v in fixture["headers"].items()}
        self.raw = dumps(fixture["body"])
        self.wire, self.module, self.vendor = wire_of(fixture["path"].split("?")[0])
        self.client = detect_client(self.headers)
        self.body = body = json.loads(self.raw)
        self.info = self.wire.parse_request(body)
        self.attribution = attribute(self.client, self.headers, body)
        self.session = client_session_id(self.client, self.headers, body) or "thread-root"
        self.prices = PriceBook()
        self.watch = CacheWatch()
        self.turn = 0
        self.job = SimpleNamespace(id=UUID(int=1), started_at=datetime.now(UTC))
        self.started_at = self.job.started_at

    def baseline(self) -> None:
        body = json.loads(self.raw)
        self.wire.parse_request(body)

    def full(self) -> None:
        body = json.loads(self.raw)
        info = self.wire.parse_request(body)
        where = attribute(self.client, self.headers, body)
        conversation = ("dev@example.com", self.session, where.agent, agent_thread(self.headers), info.model)
        self.observe(conversation, info.model)
        for result in info.tool_results:
            record.tool_result(self.job, result, EXCERPT)  # type: ignore[arg-type]

    def tool_results(self) -> None:
        self.module.tool_results(self.body)

    def attribute(self) -> None:
        attribute(self.client, self.headers, self.body)

    def observe_alone(self) -> None:
        conversation = ("dev@example.com", self.session, self.attribution.agent, None, self.info.model)
        self.observe(conversation, self.info.model)

    def rows(self) -> None:
        for result in self.info.tool_results:
            record.tool_result(self.job, result, EXCERPT)  # type: ignore[arg-type]

    def observe(self, conversation: tuple[Any, ...], model: str | None) -> None:
        """A response's usage, a turn on: it reads all the last one cached (no bust), and caches a bit more."""
        self.turn += 1
        written = GROWTH if self.vendor == "anthropic" else 0
        usage = Usage(input=40, output=350, cache_read=20000 + self.turn * GROWTH, cache_write=written)
        prices = (
            self.prices.prices(self.vendor, model, usage.input + usage.cache_read + usage.cache_write)
            if model
            else None
        )
        bust = self.watch.observe(conversation, self.job.id, self.started_at, usage, self.raw, prices)
        assert bust is None or self.turn == 1


OPERATIONS = ("baseline", "tool_results", "attribute", "observe_alone", "rows", "full")


def batch(fn: Callable[[], None], n: int, baseline: bool) -> float:
    """µs per call of n calls, from a collected heap (a large body's objects would trigger a full collection in
    some batches only; the collector stays on)."""
    gc.collect()
    with without_tool_results() if baseline else _nothing():
        began = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - began) / n * 1e6


def calls_for(fn: Callable[[], None], baseline: bool, min_ms: float) -> int:
    """How many calls take about min_ms."""
    n = 1
    while (spent := batch(fn, n, baseline) * n) < 2000:
        n *= 2
    return max(1, math.ceil(min_ms * 1000 / (spent / n)))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds, each timing everything once (default 9)")
    parser.add_argument("--min-ms", type=float, default=20.0, help="time each operation at least this long per round")
    parser.add_argument("--long-kb", type=int, default=400, help="size of the long conversation's body (KB)")
    args = parser.parse_args()

    load_book()
    cases = sorted((Case(f) for f in bodies(args.long_kb)), key=lambda c: len(c.raw))
    for case in cases:
        for op in OPERATIONS:
            getattr(case, op)()  # the first lookup of a model's price reads the book
    gc.collect()
    gc.freeze()  # the bodies, the price book and the rest of the setup: each batch's collection skips them
    calls = {(c.name, op): calls_for(getattr(c, op), op == "baseline", args.min_ms) for c in cases for op in OPERATIONS}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for _ in range(args.rounds):
        for case in cases:
            for op in OPERATIONS:
                times[case.name, op].append(batch(getattr(case, op), calls[case.name, op], op == "baseline"))

    print(f"{args.rounds} rounds, each operation ≥ {args.min_ms:g} ms per round; medians, µs per request\n")
    print(
        "| body | client | agent | KB | results | (a) baseline | tool_results | attribute | price + observe "
        "| rows | (b) all | (b) − (a) | (b)/(a) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        m = {op: statistics.median(times[case.name, op]) for op in OPERATIONS}
        pairs = list(zip(times[case.name, "baseline"], times[case.name, "full"], strict=True))
        more = statistics.median(b - a for a, b in pairs)
        ratio = statistics.median(b / a for a, b in pairs)  # of each round's own pair: drift cancels
        print(
            f"| {case.name} | {case.client} | {case.attribution.agent or '-'} | {len(case.raw) / 1000:.1f} "
            f"| {len(case.info.tool_results)} | {m['baseline']:.1f} | {m['tool_results']:.1f} "
            f"| {m['attribute']:.1f} | {m['observe_alone']:.1f} | {m['rows']:.1f} | {m['full']:.1f} | {more:.1f} "
            f"| {ratio:.2f} |"
        )

    long = cases[-1]
    messages = long.body["messages"]
    before = dumps({**long.body, "messages": messages[:-2]})  # the request before: one turn less
    system = copy.deepcopy(long.body)
    system["system"][-1]["text"] += "\nThe user changed a setting."
    located = (
        ("the request before it (one turn less)", before, long.raw),
        ("the same, with a changed system prompt", before, dumps(system)),
    )
    print(f"\n| `cache.locate`, {len(long.raw) / 1000:.0f} KB body against | location | median µs | best µs |")
    print("|---|---|---:|---:|")
    for label, old, new in located:
        where = locate(old, new)
        spent = []
        for _ in range(args.rounds):
            began = time.perf_counter()
            locate(old, new)
            spent.append((time.perf_counter() - began) * 1e6)
        print(f"| {label} | {where} | {statistics.median(spent):.0f} | {min(spent):.0f} |")


if __name__ == "__main__":
    main()
