"""Prompt-cache forensics: per conversation, what the last request cached; a *bust* when the next request, within
the cache's lifetime, reads less of it than was there.

A conversation is one user's session, agent thread and model (a sub-agent, or a title call on another model,
caches a prefix of its own; two sub-agents of one type running side by side are two threads). Only numbers are
compared per request, and only a request's first upstream round takes part (the rounds of the bridge's own tool
loop hold calls the client never sees). The request bodies are kept by reference, within a byte budget, and
parsed only when a bust is found, in the audit writer's thread, to say where the prefix first changed: a few
milliseconds there for a large body, once per bust, instead of a hash of every request
(`scripts/bench/insights.py`).
"""

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final
from uuid import UUID

from addon.audit import CacheBust
from addon.policy.pricing import Prices
from addon.wire import Usage

MIN_TOKENS: Final = 1024
"""The smallest prefix Anthropic caches (Sonnet, Opus): a cache smaller than this is not worth a bust, and a
shortfall smaller than this is noise."""
SHORT_TTL: Final = 300
LONG_TTL: Final = 3600
"""Anthropic's two cache lifetimes, in seconds: 5 minutes, or 1 hour where the writes say so. Each use renews
it, counted from the request (the provider reads or writes the prefix before it generates)."""
MAX_CONVERSATIONS: Final = 20_000
MAX_BODY_BYTES: Final = 256 * 1024 * 1024
"""Request bodies kept to locate busts: past this, the oldest conversations' bodies are let go (their busts are
still found and priced, but not located)."""
BILLING_HEADER: Final = "x-anthropic-billing-header:"
"""Claude Code's first system block, new with every prompt; the API leaves it out of the cache key."""


@dataclass(slots=True)
class _Last:
    interception_id: UUID
    cached: int
    """Tokens of the prefix it read or wrote: what the next request should read."""
    started_at: datetime
    ttl: int
    body: bytes | None

    def alive(self, at: datetime) -> bool:
        return at - self.started_at <= timedelta(seconds=self.ttl)


class CacheWatch:
    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._last: OrderedDict[Hashable, _Last] = OrderedDict()
        """By conversation, least recently used first (so also the oldest request first)."""
        self._bytes = 0
        self._max_bytes = max_body_bytes
        self._max_conversations = max_conversations
        self._pending = _Pending(max_body_bytes)
        """Bodies held by busts the writer has not located yet (it may be waiting for a store that is down)."""

    def observe(
        self,
        conversation: Hashable,
        interception_id: UUID,
        started_at: datetime,
        usage: Usage,
        body: bytes,
        prices: Prices | None,
    ) -> CacheBust | None:
        """Take a request's usage (its first upstream round's); a bust when it missed the cache its conversation's
        last request left. `started_at`: when the request arrived."""
        self._expire(started_at)
        last = self._last.pop(conversation, None)
        if last is not None:
            self._bytes -= len(last.body or b"")
        alive = last is not None and last.alive(started_at)
        bust = None
        if last is not None and alive and last.cached >= MIN_TOKENS:
            lost = last.cached - usage.cache_read
            if lost >= MIN_TOKENS:
                bust = _bust(last, interception_id, started_at, usage, lost, body, prices, self._pending)
        one_hour = isinstance(w := usage.extra.get("cache_write_1h"), int) and w > 0
        ttl = LONG_TTL if one_hour else last.ttl if last is not None and alive and not usage.cache_write else SHORT_TTL
        self._last[conversation] = _Last(interception_id, usage.cache_read + usage.cache_write, started_at, ttl, body)
        self._bytes += len(body)
        self._trim()
        return bust

    def _expire(self, now: datetime) -> None:
        """Conversations whose cache lapsed can bust no more (the oldest come first)."""
        while self._last and not next(iter(self._last.values())).alive(now):
            _, gone = self._last.popitem(last=False)
            self._bytes -= len(gone.body or b"")

    def _trim(self) -> None:
        while len(self._last) > self._max_conversations:
            _, gone = self._last.popitem(last=False)
            self._bytes -= len(gone.body or b"")
        for last in self._last.values():  # over the byte budget: the oldest bodies go, their numbers stay
            if self._bytes <= self._max_bytes:
                break
            self._bytes -= len(last.body or b"")
            last.body = None

    def __len__(self) -> int:
        return len(self._last)


def _bust(
    last: _Last,
    interception_id: UUID,
    started_at: datetime,
    usage: Usage,
    lost: int,
    body: bytes,
    prices: Prices | None,
    pending: "_Pending",
) -> CacheBust:
    rewritten = min(lost, usage.cache_write)
    plain = min(lost - rewritten, usage.input)
    before = last.body
    return CacheBust(
        interception_id=interception_id,
        previous_interception_id=last.interception_id,
        expected_tokens=last.cached,
        read_tokens=usage.cache_read,
        lost_tokens=lost,
        rewritten_tokens=rewritten,
        ttl_seconds=last.ttl,
        gap_ms=int((started_at - last.started_at).total_seconds() * 1000),
        cost_micros=bust_cost(prices, usage, rewritten, plain) if prices is not None else None,
        locate=pending.hold(before, body) if before is not None else None,
    )


class _Pending:
    """The bytes of the bodies busts hold until the writer's thread locates them, within a budget: past it a bust
    goes unlocated rather than keep more memory (many busts while the audit store is down)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self._lock = threading.Lock()

    def hold(self, before: bytes, after: bytes) -> Callable[[], str | None] | None:
        size = len(before) + len(after)
        with self._lock:
            if self.held + size > self.budget:
                return None
            self.held += size

        def located() -> str | None:
            try:
                return locate(before, after)
            finally:
                with self._lock:
                    self.held -= size

        return located


def bust_cost(prices: Prices, usage: Usage, rewritten: int, plain: int) -> int:
    """Micro-dollars: what the lost prefix cost over a cache read of it, for the tokens this request did send:
    those written again (at the write price, the 1-hour writes' share at theirs) and those sent as plain input.
    Lost tokens it no longer sent (a shorter, compacted request) cost nothing more."""
    one_hour = usage.extra.get("cache_write_1h")
    share = Decimal(0)
    if isinstance(one_hour, int) and usage.cache_write:
        share = Decimal(min(one_hour, usage.cache_write)) / usage.cache_write
    write_price = prices.cache_write * (1 - share) + prices.cache_write_1h * share
    extra = Decimal(rewritten) * (write_price - prices.cache_read) + Decimal(plain) * (prices.input - prices.cache_read)
    return max(int(extra.quantize(Decimal(1), rounding=ROUND_HALF_UP)), 0)


# --- where the prefix changed ----------------------------------------------------------------------------------


def prefix_parts(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """A request's parts in the order a prompt cache keys them (tools, system, then the conversation), each as its
    label and value, for any API: Messages (`system`, `messages`), Chat (`messages`), Responses (`instructions`,
    `input`), Gemini (`systemInstruction`, `contents`)."""
    parts: list[tuple[str, Any]] = [("tools", body.get("tools"))]
    system = body.get("system")
    if isinstance(system, list):  # Claude Code's billing block changes every prompt and is not part of the key
        system = [b for b in system if not (isinstance(b, dict) and str(b.get("text", "")).startswith(BILLING_HEADER))]
    parts += [
        ("system", system),
        ("instructions", body.get("instructions")),
        ("systemInstruction", body.get("systemInstruction")),
        ("tool_choice", body.get("tool_choice")),
        ("thinking", body.get("thinking")),
    ]
    for key in ("messages", "input", "contents"):
        items = body.get(key)
        if isinstance(items, list):
            parts += [(f"{key}[{n}]", item) for n, item in enumerate(items)]
        elif items is not None:
            parts.append((key, items))
    return parts


def locate(before: bytes, after: bytes, parse: Callable[[bytes], Any] = json.loads) -> str | None:
    """The label of the first part of `after`'s prefix that is not as it was in `before`; `unchanged` when all of
    `before`'s parts are still there (the cache was evicted, not invalidated); None when they cannot be compared
    (not JSON objects, or nested deeper than Python recurses)."""
    try:
        old, new = parse(before), parse(after)
        if not isinstance(old, dict) or not isinstance(new, dict):
            return None
        new_parts = dict(prefix_parts(new))
        for label, value in prefix_parts(old):
            if _content(new_parts.get(label)) != _content(value):
                return label
    except (ValueError, RecursionError):
        return None
    return "unchanged"


def _content(value: Any) -> Any:
    """A part without its `cache_control` markers: a breakpoint that moves (Claude Code marks its latest message)
    changes where the cache is written, not what the prefix holds."""
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value
