"""Threads: a request that carries a tool result joins the interception that recorded the tool call."""

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Final
from uuid import UUID

Lookup = Callable[[str], tuple[UUID, UUID | None] | None]
CAPACITY: Final = 100_000
"""Recent tool calls kept in memory; older ones are looked up in the audit file."""


class Lineage:
    def __init__(self, lookup: Lookup, capacity: int = CAPACITY) -> None:
        self._lookup = lookup
        self._capacity = capacity
        self._recent: OrderedDict[str, tuple[UUID, UUID | None]] = OrderedDict()

    def remember(self, tool_call_id: str, interception_id: UUID, thread_root_id: UUID | None) -> None:
        self._recent[tool_call_id] = (interception_id, thread_root_id)
        self._recent.move_to_end(tool_call_id)
        if len(self._recent) > self._capacity:
            self._recent.popitem(last=False)

    async def resolve(self, tool_call_id: str | None) -> tuple[UUID | None, UUID | None]:
        """(thread parent, thread root) for a request correlating to `tool_call_id`."""
        if not tool_call_id:
            return None, None
        hit = self._recent.get(tool_call_id)
        if hit is None:
            hit = await asyncio.to_thread(self._lookup, tool_call_id)
        if hit is None:
            return None, None
        parent, parent_root = hit
        return parent, parent_root or parent
