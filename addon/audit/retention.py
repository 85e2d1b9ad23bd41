"""Retention: interceptions older than `retention_days` leave the audit file, with every row that belongs to them.

The writer thread owns the connection, so it runs the purge itself, one small batch per turn between its
appends: traffic is never blocked and a purge never races a write. An interception's age is its id's: ids are
UUIDv7, time-ordered, so "older than the cutoff" is `id < boundary`, the same test on every table (children by
`interception_id`), which DuckDB's zone maps prune. A row of an interception still streaming across the cutoff
goes with it, never orphaned.
"""

from datetime import datetime
from typing import Final
from uuid import UUID

import duckdb

BATCH: Final = 2000
"""Interceptions per batch: each batch is one short transaction."""
INTERVAL: Final = 3600.0
"""Seconds between purges (the first runs at start-up)."""
CHILD_TABLES: Final = ("token_usages", "user_prompts", "tool_usages", "model_thoughts", "interception_ends")


def boundary(cutoff: datetime) -> UUID:
    """The smallest UUIDv7 of the cutoff's millisecond: every id below it was made before the cutoff."""
    ms = int(cutoff.timestamp() * 1000)
    return UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62))


def purge_batch(db: duckdb.DuckDBPyConnection, below: UUID, batch: int) -> int:
    """Delete up to `batch` of the oldest interceptions below `below`, in one transaction; how many went.

    The caller repeats while the count equals `batch`.
    """
    rows = db.execute(
        "SELECT id FROM interception_starts WHERE id < ? ORDER BY id LIMIT 1 OFFSET ?", [below, batch - 1]
    ).fetchall()
    upper = rows[0][0] if rows else below  # the batch's newest id (inclusive), or everything left
    inclusive = bool(rows)
    op = "<=" if inclusive else "<"
    db.begin()
    try:
        for table in CHILD_TABLES:
            db.execute(f"DELETE FROM {table} WHERE interception_id {op} ?", [upper])
        (count,) = db.execute(f"DELETE FROM interception_starts WHERE id {op} ?", [upper]).fetchone()  # type: ignore[misc]
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return int(count)
