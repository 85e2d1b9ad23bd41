"""Prompt-cache forensics: per conversation, what the last request cached; a *bust* when the next request, within
the cache's lifetime, reads less of it than was there.

A conversation is one user's session, agent and model (a sub-agent, or a title call on another model, caches a
prefix of its own). Only numbers are compared per request; the request bodies are kept (by reference, within a
byte budget) and parsed only when a bust is found, in the audit writer's thread, to say where the prefix first
changed: so the forensics cost nothing measurable per request (`scripts/bench/insights.py`).
"""

import json
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
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
"""Anthropic's two cache lifetimes, in seconds: 5 minutes, or 1 hour where the writes say so."""
MAX_CONVERSATIONS: Final = 20_000
MAX_BODY_BYTES: Final = 256 * 1024 * 1024
"""Request bodies kept to locate busts: past this, the oldest conversations' are let go (their busts are still
found and priced, but not located)."""
BILLING_HEADER: Final = "x-anthropic-billing-header:"
"""Claude Code's first system block, new with every prompt; the API leaves it out of the cache key."""


@dataclass(slots=True)
class _Last:
    interception_id: UUID
    cached: int
    """Tokens of the prefix it read or wrote: what the next request should read."""
    ended_at: datetime
    ttl: int
    body: bytes | None


class CacheWatch:
    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._last: OrderedDict[Hashable, _Last] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_body_bytes
        self._max_conversations = max_conversations

    def observe(
        self,
        conversation: Hashable,
        interception_id: UUID,
        started_at: datetime,
        usage: Usage,
        body: bytes,
        prices: Prices | None,
        now: datetime,
    ) -> CacheBust | None:
        """Take one upstream response's usage; a bust when it missed the cache its conversation's last response
        left. `started_at`: when its request arrived; `now`: when the response ended."""
        last = self._last.pop(conversation, None)
        if last is not None:
            self._bytes -= len(last.body or b"")
        bust = None
        gap = max((started_at - last.ended_at).total_seconds(), 0.0) if last is not None else 0.0
        alive = last is not None and gap <= last.ttl
        if last is not None and alive and last.cached >= MIN_TOKENS:
            lost = last.cached - usage.cache_read
            if lost >= MIN_TOKENS:
                bust = self._bust(last, interception_id, usage, lost, gap, body, prices)
        one_hour = isinstance(w := usage.extra.get("cache_write_1h"), int) and w > 0
        ttl = LONG_TTL if one_hour else last.ttl if last is not None and alive and not usage.cache_write else SHORT_TTL
        cached = usage.cache_read + usage.cache_write
        self._last[conversation] = _Last(interception_id, cached, now, ttl, body)
        self._bytes += len(body)
        self._trim()
        return bust

    def _bust(
        self,
        last: _Last,
        interception_id: UUID,
        usage: Usage,
        lost: int,
        gap: float,
        body: bytes,
        prices: Prices | None,
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
            gap_ms=int(gap * 1000),
            cost_micros=bust_cost(prices, usage, lost, rewritten, plain) if prices is not None else None,
            locate=(lambda: locate(before, body)) if before is not None else None,
        )

    def _trim(self) -> None:
        while self._last and (len(self._last) > self._max_conversations or self._bytes > self._max_bytes):
            _, oldest = self._last.popitem(last=False)
            self._bytes -= len(oldest.body or b"")

    def __len__(self) -> int:
        return len(self._last)


def bust_cost(prices: Prices, usage: Usage, lost: int, rewritten: int, plain: int) -> int:
    """Micro-dollars: the lost prefix as it was paid (written again at the write price, of the 1-hour writes' share
    at theirs; or sent as plain input), less what reading all of it would have cost."""
    one_hour = usage.extra.get("cache_write_1h")
    share = (
        Decimal(min(one_hour, usage.cache_write)) / usage.cache_write
        if isinstance(one_hour, int) and usage.cache_write
        else Decimal(0)
    )
    write_price = prices.cache_write * (1 - share) + prices.cache_write_1h * share
    paid = Decimal(rewritten) * write_price + Decimal(plain) * prices.input
    return int((paid - Decimal(lost) * prices.cache_read).to_integral_value())


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
    `before`'s parts are still there (the cache was evicted, not invalidated); None when either is not a JSON
    object."""
    try:
        old, new = parse(before), parse(after)
    except (ValueError, RecursionError):
        return None
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None
    new_parts = dict(prefix_parts(new))
    for label, value in prefix_parts(old):
        if _content(new_parts.get(label)) != _content(value):
            return label
    return "unchanged"


def _content(value: Any) -> Any:
    """A part without its `cache_control` markers: a breakpoint that moves (Claude Code marks its latest message)
    changes where the cache is written, not what the prefix holds."""
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value
