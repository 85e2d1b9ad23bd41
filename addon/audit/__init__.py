"""The audit file: a DuckDB database the proxy appends to through one writer thread."""

from addon.audit.events import (
    AuditEvent,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
)
from addon.audit.writer import AuditFileError, AuditFileLocked, AuditWriter

__all__ = [
    "AuditEvent",
    "AuditFileError",
    "AuditFileLocked",
    "AuditWriter",
    "InterceptionEnded",
    "InterceptionStarted",
    "PromptSubmitted",
    "ThoughtRecorded",
    "TokensUsed",
    "ToolCalled",
]
