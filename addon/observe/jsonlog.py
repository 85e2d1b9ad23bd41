"""Structured logs: one JSON line per interception start and one per end, with the audit's fields (for a SIEM).

The end line repeats the start's identifying fields and adds the outcome, duration, summed tokens, cost and
tool-call counts, so each line stands alone. Credentials appear only as the audit has them: kind and masked hint.
Logged at INFO on the `aibridge.interceptions` logger (mitmdump prints it as the line itself).
"""

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from addon.audit import AuditEvent, InterceptionEnded, InterceptionStarted, TokensUsed, ToolCalled
from addon.engine.ports import Observer

logger = logging.getLogger("aibridge.interceptions")

_START_FIELDS = (
    "id",
    "initiator",
    "provider",
    "provider_name",
    "model",
    "client",
    "user_agent",
    "client_session_id",
    "thread_parent_id",
    "thread_root_id",
    "correlating_tool_call_id",
    "credential_kind",
    "credential_hint",
    "streaming",
    "route",
    "started_at",
    "metadata",
)
_SUMS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")


@dataclass
class _Live:
    start: dict[str, Any]
    started: float
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SUMS, 0))
    cost_micros: int | None = None
    injected_calls: int = 0
    client_tool_calls: int = 0


class JsonLog(Observer):
    def __init__(self, log: logging.Logger = logger) -> None:
        self.log = log
        self._live: dict[UUID, _Live] = {}

    def event(self, event: AuditEvent) -> None:
        match event:
            case InterceptionStarted():
                start = {name: getattr(event, name) for name in _START_FIELDS}
                self._live[event.id] = _Live(start, time.monotonic())
                self._emit("interception_start", start)
            case TokensUsed():
                if (live := self._live.get(event.interception_id)) is not None:
                    for name in _SUMS:
                        live.sums[name] += getattr(event, name)
                    if event.cost_micros is not None:
                        live.cost_micros = (live.cost_micros or 0) + event.cost_micros
            case ToolCalled():
                if (live := self._live.get(event.interception_id)) is not None:
                    if event.injected:
                        live.injected_calls += 1
                    else:
                        live.client_tool_calls += 1
            case InterceptionEnded():
                live = self._live.pop(event.interception_id, None)
                record: dict[str, Any] = dict(live.start) if live else {"id": event.interception_id}
                record.update(
                    status=event.status,
                    error=event.error,
                    http_status=event.http_status,
                    response_model=event.response_model,
                    ended_at=event.ended_at,
                )
                if live is not None:
                    record.update(
                        duration_ms=round((time.monotonic() - live.started) * 1000, 3),
                        **live.sums,
                        cost_micros=live.cost_micros,
                        injected_tool_calls=live.injected_calls,
                        client_tool_calls=live.client_tool_calls,
                    )
                self._emit("interception_end", record)

    def _emit(self, record_type: str, fields: dict[str, Any]) -> None:
        line = {"msg": "interception log", "record_type": record_type, **fields}
        self.log.info(json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":")))
