"""Operating the bridge: the engine's one observer, fanned out to metrics, traces, dumps, logs (and the breaker).

`Observers` hands each upstream call and audit event to every observer (`addon.engine.ports.Observer`);
`ObservedRecorder` tees the engine's audit events off to them, so the engine records once and every observer
sees the same facts the audit file does. A failing observer is logged and never fails the request.
"""

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

import httpx

from addon.audit import AuditEvent
from addon.engine.ports import Headers, Observer, Recorder, UpstreamCall
from addon.policy import Refusal

if TYPE_CHECKING:
    from addon.engine.job import Job

logger = logging.getLogger(__name__)


class Observers(Observer):
    """Fans out to several observers; a failing observer is logged and never fails the request."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers = tuple(observers)

    def event(self, event: AuditEvent) -> None:
        for observer in self.observers:
            try:
                observer.event(event)
            except Exception:  # boundary: observation must never cost the client its request
                logger.exception("aibridge: observer %s failed on %s", type(observer).__name__, type(event).__name__)

    def upstream(self, job: "Job", url: str, headers: Headers, body: bytes) -> UpstreamCall:
        calls = []
        for observer in self.observers:
            try:
                if (call := observer.upstream(job, url, headers, body)) is not None:
                    calls.append(call)
            except Exception:  # boundary
                logger.exception("aibridge: observer %s failed on an upstream call", type(observer).__name__)
        return _Calls(calls)

    def refuse(self, job: "Job") -> Refusal | None:
        for observer in self.observers:
            try:
                if (refusal := observer.refuse(job)) is not None:
                    return refusal
            except Exception:  # boundary: a breaker bug lets the request through rather than failing it
                logger.exception("aibridge: observer %s failed deciding on a request", type(observer).__name__)
        return None

    def close(self) -> None:
        for observer in self.observers:
            try:
                observer.close()
            except Exception:  # boundary
                logger.exception("aibridge: observer %s failed to close", type(observer).__name__)


NO_OBSERVER = Observers()


class _Calls(UpstreamCall):
    def __init__(self, calls: list[UpstreamCall]) -> None:
        self.calls = calls
        self.done = False

    def _each(self, method: str, *args: object) -> None:
        for call in self.calls:
            try:
                getattr(call, method)(*args)
            except Exception:  # boundary
                logger.exception("aibridge: observer of an upstream call failed in %s", method)

    def responded(self, response: httpx.Response) -> None:
        if not self.calls:
            return
        self._each("responded", response)
        # Observe the body where the engine reads it: the stream is wrapped, not read ahead or copied.
        response.stream = _ObservedStream(response.stream, self)  # type: ignore[arg-type]

    def failed(self, status: int | None, error: BaseException) -> None:
        self.done = True
        self._each("failed", status, error)

    def chunk(self, data: bytes) -> None:  # per body chunk: the hot path, no getattr
        for call in self.calls:
            try:
                call.chunk(data)
            except Exception:  # boundary
                logger.exception("aibridge: observer of an upstream call failed on a chunk")

    def closed(self, error: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self._each("closed", error)


class _ObservedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, call: _Calls) -> None:
        self.inner = inner
        self.call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        error: BaseException | None = None
        try:
            async for chunk in self.inner:  # type: ignore[attr-defined]
                self.call.chunk(chunk)
                yield chunk
        except BaseException as e:
            error = e
            raise
        finally:
            if error is not None:
                self.call.closed(error)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.call.closed(None)


class ObservedRecorder:
    """The engine's recorder, teed: every audit event goes to the audit writer, then to the observers."""

    def __init__(
        self,
        inner: "Recorder",
        observer: Observer,
        keeps_text: Observer | None = None,
        scrub: Callable[[AuditEvent], AuditEvent | None] | None = None,
    ) -> None:
        self.inner = inner
        self.observer = observer
        self.keeps_text = keeps_text
        """Observers that keep text (the JSON log, spans): they get each event as the audit keeps it (`scrub`);
        the others (metrics, the breaker) count the events as they came. The writer scrubs its own copy in its
        thread."""
        self.scrub = scrub

    def emit(self, event: AuditEvent) -> None:
        self.inner.emit(event)
        self.observer.event(event)
        if self.keeps_text is None:
            return
        if self.scrub is None or (event := self.scrub(event)) is not None:  # type: ignore[assignment]
            self.keeps_text.event(event)

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        return self.inner.find_tool_call(tool_call_id)
