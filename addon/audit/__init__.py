"""The audit: a DuckDB file or a PostgreSQL database the proxy appends to through one writer thread."""

from addon.audit.events import (
    AuditEvent,
    CacheBust,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
    ToolResultReturned,
)
from addon.audit.store import AuditFileError, AuditFileLocked
from addon.audit.writer import AuditWriter

__all__ = [
    "AuditEvent",
    "AuditFileError",
    "AuditFileLocked",
    "AuditWriter",
    "CacheBust",
    "InterceptionEnded",
    "InterceptionStarted",
    "PromptSubmitted",
    "ThoughtRecorded",
    "TokensUsed",
    "ToolCalled",
    "ToolResultReturned",
]
