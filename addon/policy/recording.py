"""What the audit keeps of each event: everything, with secrets redacted (`record = "full"`, the default), or
metadata only (`record = "metadata"`: ids, users, models, tokens, costs, tool names and statuses; no prompt
text, tool arguments, tool results or thinking). The audit writer applies it in its own thread, off the event
loop; observers that keep text (the JSON log, spans with content) get the same scrubbed event."""

from dataclasses import replace
from typing import Any

from addon.audit import (
    AuditEvent,
    InterceptionEnded,
    PromptSubmitted,
    ThoughtRecorded,
    ToolCalled,
    ToolResultReturned,
)
from addon.policy.redaction import Redactor


class Scrubber:
    def __init__(self, redactor: Redactor | None, level: str = "full") -> None:
        self.redactor = redactor
        self.metadata_only = level == "metadata"
        self.redacted = 0
        """Events with at least one secret replaced."""

    @property
    def needed(self) -> bool:
        """Whether it changes anything: secrets to redact, or text to drop."""
        return self.redactor is not None or self.metadata_only

    def __call__(self, event: AuditEvent) -> AuditEvent | None:
        """The event as it may be kept; None: not at all."""
        match event:
            case PromptSubmitted() | ThoughtRecorded() if self.metadata_only:
                return None
            case ToolCalled() if self.metadata_only:
                return replace(event, input=None, invocation_error=None)
            case ToolResultReturned() if self.metadata_only:
                return replace(event, excerpt=None) if event.excerpt is not None else event
            case ToolResultReturned():
                return self._scrubbed(event, "excerpt")
            case PromptSubmitted():
                return self._scrubbed(event, "prompt")
            case ThoughtRecorded():
                return self._scrubbed(event, "content")
            case ToolCalled():
                return self._scrubbed(event, "input", "invocation_error")
            case InterceptionEnded():
                return self._scrubbed(event, "error")
        return event

    def _scrubbed(self, event: Any, *names: str) -> AuditEvent:
        if self.redactor is None:
            return event
        changes: dict[str, Any] = {}
        kinds: set[str] = set()
        for name in names:
            text = getattr(event, name)
            if not text:
                continue
            clean, found = self.redactor.redact(text)
            if found:
                changes[name] = clean
                kinds.update(found)
        if not changes:
            return event
        self.redacted += 1
        metadata = {**event.metadata, "redacted": sorted(kinds | set(event.metadata.get("redacted", ())))}
        return replace(event, **changes, metadata=metadata)
