"""Threads: tool call id -> (parent interception, thread root)."""

from uuid import UUID

from addon.audit.lineage import Lineage

A = UUID("01900000-0000-7000-8000-00000000000a")
B = UUID("01900000-0000-7000-8000-00000000000b")
R = UUID("01900000-0000-7000-8000-0000000000ff")


class Lookup:
    def __init__(self, answers: dict[str, tuple[UUID, UUID | None]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[str] = []

    def __call__(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        self.calls.append(tool_call_id)
        return self.answers.get(tool_call_id)


async def test_no_tool_call_id_means_no_thread() -> None:
    lookup = Lookup()
    lineage = Lineage(lookup)
    assert await lineage.resolve(None) == (None, None)
    assert await lineage.resolve("") == (None, None)
    assert lookup.calls == []


async def test_remembered_call_resolves_without_lookup() -> None:
    lookup = Lookup()
    lineage = Lineage(lookup)
    lineage.remember("toolu_1", A, None)
    lineage.remember("toolu_2", B, R)
    assert await lineage.resolve("toolu_1") == (A, A)  # a parent without a root is the root
    assert await lineage.resolve("toolu_2") == (B, R)  # the root propagates
    assert lookup.calls == []


async def test_fallback_lookup_on_a_miss_only() -> None:
    lookup = Lookup({"old_call": (B, R), "older_call": (A, None)})
    lineage = Lineage(lookup)
    lineage.remember("hot", A, None)
    assert await lineage.resolve("old_call") == (B, R)
    assert await lineage.resolve("older_call") == (A, A)
    assert await lineage.resolve("unknown") == (None, None)
    assert await lineage.resolve("hot") == (A, A)
    assert lookup.calls == ["old_call", "older_call", "unknown"]


async def test_capacity_evicts_the_oldest() -> None:
    lookup = Lookup()
    lineage = Lineage(lookup, capacity=2)
    lineage.remember("a", A, None)
    lineage.remember("b", B, None)
    lineage.remember("a", A, R)  # remembering again refreshes it
    lineage.remember("c", B, R)
    assert await lineage.resolve("a") == (A, R)
    assert await lineage.resolve("c") == (B, R)
    assert lookup.calls == []
    assert await lineage.resolve("b") == (None, None)
    assert lookup.calls == ["b"]
