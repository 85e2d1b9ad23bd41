"""Prompt-cache forensics on recorded sequences: when a request is a bust (and when it is not: the first request,
a lapsed lifetime, a small cache), what it cost, and where its prefix first changed."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from addon.engine.cache import BILLING_HEADER, CacheWatch, bust_cost, locate
from addon.policy.pricing import Prices
from addon.wire import Usage

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PRICES = Prices(Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75"), Decimal(6), "test")
BODY = json.dumps({"system": "s", "messages": [{"role": "user", "content": "hi"}]}).encode()


def run(watch: CacheWatch, steps: list[tuple[float, Usage]], conversation: Any = "c") -> list[Any]:
    """Each step: (seconds after T0 its request arrived, its usage)."""
    found = []
    for n, (at, usage) in enumerate(steps):
        found.append(watch.observe(conversation, UUID(int=n), T0 + timedelta(seconds=at), usage, BODY, PRICES))
    return found


def test_a_write_where_a_read_was_due_is_a_bust_priced_against_a_read() -> None:
    first, second = run(CacheWatch(), [(0, Usage(10, 5, 0, 8000)), (30, Usage(10, 5, 0, 8200))])
    assert first is None  # the first request of a conversation busts nothing
    assert (second.previous_interception_id, second.expected_tokens, second.read_tokens) == (UUID(int=0), 8000, 0)
    assert (second.lost_tokens, second.rewritten_tokens, second.ttl_seconds, second.gap_ms) == (8000, 8000, 300, 30000)
    assert second.cost_micros == round(8000 * 3.75 - 8000 * 0.3)


def test_reads_that_follow_the_cache_are_no_bust_and_keep_it_alive() -> None:
    steps = [(0, Usage(10, 5, 0, 5000)), (200, Usage(10, 5, 5000, 300)), (400, Usage(10, 5, 5300, 100))]
    assert run(CacheWatch(), steps) == [None, None, None]  # 400 s after the first, but 200 s after the last use


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ([(0, Usage(10, 5, 0, 5000)), (301, Usage(10, 5, 0, 5000))], "the 5-minute lifetime lapsed"),
        ([(0, Usage(10, 5, 0, 900)), (10, Usage(10, 5, 0, 900))], "too small a cache to matter"),
        ([(0, Usage(10, 5, 0, 5000)), (10, Usage(10, 5, 4500, 600))], "a shortfall under 1024 tokens"),
    ],
)
def test_no_bust(steps: list[tuple[float, Usage]], why: str) -> None:
    assert run(CacheWatch(), steps)[-1] is None, why


def test_the_lifetime_counts_from_the_request_that_used_the_cache_not_from_its_answer() -> None:
    """A long answer does not stretch the cache's life: the provider renewed it when it read the prompt."""
    assert run(CacheWatch(), [(0, Usage(10, 5, 0, 5000)), (299, Usage(10, 5, 0, 5000))])[-1] is not None
    assert run(CacheWatch(), [(0, Usage(10, 5, 0, 5000)), (420, Usage(10, 5, 0, 5000))])[-1] is None


def test_a_one_hour_write_lives_an_hour() -> None:
    one_hour = Usage(10, 5, 0, 5000, {"cache_write_1h": 5000})
    assert run(CacheWatch(), [(0, one_hour), (1800, Usage(10, 5, 5000, 0))]) == [None, None]
    bust = run(CacheWatch(), [(0, one_hour), (1800, Usage(10, 5, 5000, 0)), (3000, Usage(4000, 5, 0, 1000))])[-1]
    assert bust.ttl_seconds == 3600  # a read keeps the lifetime the write gave
    # of the 5000 due, 1000 written again and 4000 sent uncached, instead of all read
    assert (bust.rewritten_tokens, bust.lost_tokens) == (1000, 5000)
    assert bust.cost_micros == round(1000 * (3.75 - 0.3) + 4000 * (3 - 0.3))


def test_a_shorter_request_costs_only_what_it_sent_again() -> None:
    """Compacted: of 100,000 tokens due, 20,000 read, 3,000 written, 5 sent plain; the rest it never sent."""
    bust = run(CacheWatch(), [(0, Usage(10, 5, 0, 100_000)), (10, Usage(5, 5, 20_000, 3000))])[-1]
    assert (bust.lost_tokens, bust.rewritten_tokens) == (80_000, 3000)
    assert bust.cost_micros == round(3000 * (3.75 - 0.3) + 5 * (3 - 0.3))  # never below zero


def test_conversations_are_apart() -> None:
    watch = CacheWatch()
    run(watch, [(0, Usage(10, 5, 0, 5000))], "main")
    assert run(watch, [(5, Usage(10, 5, 0, 5000))], "sub-agent") == [None]
    assert run(watch, [(10, Usage(10, 5, 0, 5000))], "main")[0] is not None


def test_an_unpriced_bust_is_still_found() -> None:
    watch = CacheWatch()
    watch.observe("c", UUID(int=1), T0, Usage(0, 0, 0, 5000), BODY, None)
    bust = watch.observe("c", UUID(int=2), T0, Usage(0, 0, 0, 5000), BODY, None)
    assert bust is not None and bust.cost_micros is None


def test_past_the_byte_budget_the_oldest_bodies_go_and_their_busts_are_found_unlocated() -> None:
    watch = CacheWatch(max_body_bytes=len(BODY) * 2)
    for n in range(5):
        watch.observe(f"c{n}", UUID(int=n), T0, Usage(0, 0, 0, 5000), BODY, PRICES)
    assert len(watch) == 5  # every conversation's numbers stay
    bust = watch.observe("c0", UUID(int=9), T0, Usage(0, 0, 0, 5000), BODY, PRICES)
    assert bust is not None and bust.locate is None and bust.prepared().location is None
    kept = watch.observe("c4", UUID(int=10), T0, Usage(0, 0, 0, 5000), BODY, PRICES)
    assert kept.prepared().location == "unchanged"


def test_conversations_whose_cache_lapsed_are_let_go() -> None:
    watch = CacheWatch(max_conversations=3)
    for n in range(3):
        watch.observe(f"c{n}", UUID(int=n), T0, Usage(0, 0, 0, 5000), BODY, PRICES)
    watch.observe("late", UUID(int=7), T0 + timedelta(minutes=6), Usage(0, 0, 0, 5000), BODY, PRICES)
    assert len(watch) == 1
    for n in range(4):  # the count bound: the least recently used go
        watch.observe(f"d{n}", UUID(int=20 + n), T0 + timedelta(minutes=7), Usage(0, 0, 0, 5000), BODY, PRICES)
    assert len(watch) == 3


def test_a_bust_cost_is_what_was_paid_less_a_read() -> None:
    assert bust_cost(PRICES, Usage(0, 0, 0, 2000), 2000, 0) == round(2000 * (3.75 - 0.3))
    half = Usage(0, 0, 0, 2000, {"cache_write_1h": 1000})
    assert bust_cost(PRICES, half, 2000, 0) == round(1000 * (3.75 - 0.3) + 1000 * (6 - 0.3))
    assert bust_cost(PRICES, Usage(1, 0, 0, 0), 0, 1) == 3  # 2.7 µ$, rounded half up as the price book does


# --- where the prefix changed ---------------------------------------------------------------------------------


def body(**kw: Any) -> bytes:
    base = {
        "model": "claude-sonnet-4-5",
        "tools": [{"name": "Bash"}],
        "system": [{"type": "text", "text": f"{BILLING_HEADER} cc_prompt_id=1;"}, {"type": "text", "text": "You."}],
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    }
    return json.dumps({**base, **kw}).encode()


@pytest.mark.parametrize(
    ("after", "where"),
    [
        (body(tools=[{"name": "Bash"}, {"name": "Read"}]), "tools"),
        (body(system=[{"type": "text", "text": "You, briefly."}]), "system"),
        (body(thinking={"type": "enabled"}), "thinking"),
        (body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]), "messages[1]"),
        (body(messages=[{"role": "user", "content": "a"}]), "messages[1]"),  # the history was cut (compacted)
        (
            body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user"}]),
            "unchanged",
        ),  # it only grew: the cache was evicted, not invalidated
        (
            body(
                system=[{"type": "text", "text": f"{BILLING_HEADER} cc_prompt_id=2;"}, {"type": "text", "text": "You."}]
            ),
            "unchanged",
        ),  # Claude Code's billing block is not part of the cache key
        (body(max_tokens=5, metadata={"user_id": "x"}), "unchanged"),
        (b"not json", None),
        (b"[1]", None),
    ],
)
def test_locate_names_the_first_part_that_changed(after: bytes, where: str | None) -> None:
    assert locate(body(), after) == where


def test_locate_reads_responses_and_chat_shapes() -> None:
    before = json.dumps({"instructions": "i", "input": [{"role": "user", "content": "a"}]}).encode()
    after = json.dumps({"instructions": "j", "input": [{"role": "user", "content": "a"}]}).encode()
    assert locate(before, after) == "instructions"
    chat = json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}).encode()
    changed = json.dumps({"messages": [{"role": "system", "content": "t"}, {"role": "user", "content": "u"}]}).encode()
    assert locate(chat, changed) == "messages[0]"


def test_locate_gives_up_on_a_body_nested_deeper_than_python_recurses() -> None:
    deep = b'{"system": "s", "messages": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    assert locate(deep, deep) is None
    assert locate(b'{"system": "s", "messages": []}', deep) == "unchanged"  # nothing of the old prefix is deep
    assert locate(b'{"system": "s", "messages": [1]}', deep) is None  # comparing its first message would recurse


def test_busts_waiting_to_be_located_hold_no_more_than_the_budget() -> None:
    watch = CacheWatch(max_body_bytes=len(BODY) * 5)
    busts = []
    for n in range(6):
        busts.append(watch.observe("c", UUID(int=n), T0 + timedelta(seconds=n), Usage(0, 0, 0, 5000), BODY, PRICES))
    located = [b for b in busts[1:] if b.locate is not None]
    assert len(located) == 2  # each holds two bodies: the third would pass the budget, so it goes unlocated
    assert [b.prepared().location for b in located] == ["unchanged", "unchanged"]
    later = watch.observe("c", UUID(int=9), T0 + timedelta(seconds=9), Usage(0, 0, 0, 5000), BODY, PRICES)
    assert later.locate is not None  # located busts gave their bytes back
