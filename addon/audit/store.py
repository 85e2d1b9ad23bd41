"""Where the audit is kept: a DuckDB file (one process) or PostgreSQL (a fleet), behind one small interface.

`writer.open_store` picks the store by the target's form: a `postgresql://` (or `postgres://`) URL, else a file
path. The writer thread is the only caller of `append` and `purge_batch`; `fetch` and `reader` may be called from
any thread, each on a connection or cursor of its own.
"""

from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from addon.audit.queries import Reader


class StoreError(Exception):
    """A read or write the store could not do now; the writer keeps its rows and retries."""


class AuditFileError(Exception):
    """The audit store cannot be opened; the message says why."""


class AuditFileLocked(AuditFileError):
    """Another process has the audit file open: `holder` names it."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class Store(Protocol):
    path: str
    """The target as configured (a file path or a URL): what identifies the store."""
    target: str
    """What messages name: the path, or the URL without its password."""

    def append(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        """Write rows per table in one transaction, or raise StoreError and write none."""
        ...

    def purge_batch(self, below: UUID, batch: int) -> int: ...

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def reader(self) -> Reader: ...

    def close(self) -> None: ...


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def masked(url: str) -> str:
    """A URL for messages: its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
