"""Retention: interceptions older than `retention_days` leave the audit, with every row that belongs to them.

The writer thread owns its connection, so it runs the purge itself, one small batch per turn between its
appends: traffic is never blocked and a purge never races a write. An interception's age is its id's: ids are
UUIDv7, time-ordered, so "older than the cutoff" is `id < boundary`, the same test on every table (children by
`interception_id`), which DuckDB's zone maps and PostgreSQL's indexes prune. A row of an interception still
streaming across the cutoff goes with it, never orphaned.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

BATCH: Final = 2000
"""Interceptions per batch: each batch is one short transaction."""
INTERVAL: Final = 3600.0
"""Seconds between purges (the first runs at start-up)."""
CHILD_TABLES: Final = (
    "token_usages",
    "user_prompts",
    "tool_usages",
    "model_thoughts",
    "tool_results",
    "cache_busts",
    "interception_ends",
)

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Runs one `?`-parameterised statement inside the store's transaction and returns its rows."""


def boundary(cutoff: datetime) -> UUID:
    """The smallest UUIDv7 of the cutoff's millisecond: every id below it was made before the cutoff."""
    ms = int(cutoff.timestamp() * 1000)
    return UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62))


def purge_batch(run: Run, below: UUID, batch: int) -> int:
    """Delete up to `batch` of the oldest interceptions below `below` (the caller holds one transaction around
    it); how many went. The caller repeats while the count equals `batch`."""
    rows = run("SELECT id FROM interception_starts WHERE id < ? ORDER BY id LIMIT 1 OFFSET ?", [below, batch - 1])
    upper = rows[0][0] if rows else below  # the batch's newest id (inclusive), or everything left
    op = "<=" if rows else "<"
    for table in CHILD_TABLES:
        run(f"DELETE FROM {table} WHERE interception_id {op} ?", [upper])
    return len(run(f"DELETE FROM interception_starts WHERE id {op} ? RETURNING id", [upper]))
