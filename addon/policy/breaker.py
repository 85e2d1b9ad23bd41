"""A circuit breaker per provider and model: a provider that keeps answering "overloaded" is left alone a while.

Closed, consecutive failed upstream calls (the family's overload statuses: 429, 503, 504, and 529 for Anthropic;
or no answer at all) reaching `failure_threshold` open the breaker: for `timeout` seconds requests for that
provider and model are refused at once with a provider-shaped 503 and `retry-after`, without reaching the
provider. Then it is half-open: up to
`max_requests` requests go through as probes; one failure opens it again, `max_requests` successes close it.
In the closed state failures further apart than `interval` do not add up (the count restarts).

Every upstream call of the tool loop counts, not only the first; a stream that started at 200 is a success.
Refusals are recorded in the audit like any interception (`refused`, http_status 503).
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

import httpx

from addon.audit import AuditEvent, InterceptionEnded
from addon.config import CircuitBreakerConfig
from addon.engine.ports import Headers, Observer, UpstreamCall
from addon.policy import Refusal

if TYPE_CHECKING:
    from addon.engine.job import Job

logger = logging.getLogger(__name__)

OPEN_MESSAGE = "circuit breaker is open"

CLOSED, HALF_OPEN, OPEN = "closed", "half-open", "open"
STATE_VALUES = {CLOSED: 0.0, HALF_OPEN: 0.5, OPEN: 1.0}
"""The reference's gauge values."""


@dataclass
class Circuit:
    """One provider and model's breaker, kept while it has failures. `generation` changes with every state
    change, so the outcome of a call admitted under an older state does not count against the new one; 0 is a
    closed circuit's first generation, also for calls admitted while none was kept."""

    state: str = CLOSED
    failures: int = 0
    successes: int = 0
    window_start: float = 0.0
    opened_at: float = 0.0
    generation: int = 0
    probes: set[UUID] = field(default_factory=set)
    """Jobs admitted as half-open probes whose outcome is pending."""


class Breakers(Observer):
    def __init__(
        self,
        config: CircuitBreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.circuits: dict[tuple[str, str], Circuit] = {}
        self._admitted: dict[UUID, tuple[tuple[str, str], int]] = {}
        """Job → (its circuit, the generation it was admitted under)."""
        self.on_change = on_change or (lambda provider, model, state: None)
        """Told (provider, model, new state) on every state change: the metrics' gauge and trip counter."""
        self.on_reject: Callable[[str, str], None] = lambda provider, model: None

    # --- the engine's side -----------------------------------------------------------------------------------

    def refuse(self, job: "Job") -> Refusal | None:
        if not job.route.bridged:  # tapped passthrough (Responses): no call of ours to refuse or to learn from
            return None
        key = _key(job)
        circuit = self.circuits.get(key)
        if circuit is None:  # closed without failures: only failing models are kept (models are the client's)
            self._admitted[job.id] = (key, 0)
            return None
        now = self.clock()
        if circuit.state == OPEN and now >= circuit.opened_at + self.config.timeout:
            self._set(key, circuit, HALF_OPEN)
        if circuit.state == OPEN:
            return self._refusal(key, circuit.opened_at + self.config.timeout - now)
        if circuit.state == HALF_OPEN:
            if len(circuit.probes) + circuit.successes >= self.config.max_requests:
                return self._refusal(key, 1.0)  # enough probes out already: their outcome decides
            circuit.probes.add(job.id)
        self._admitted[job.id] = (key, circuit.generation)
        return None

    def upstream(self, job: "Job", url: str, headers: Headers, body: bytes) -> UpstreamCall | None:
        admitted = self._admitted.get(job.id)
        return None if admitted is None else _Call(self, job.id, job.route.family.overloaded, *admitted)

    def event(self, event: AuditEvent) -> None:
        if isinstance(event, InterceptionEnded) and (admitted := self._admitted.pop(event.interception_id, None)):
            # A probe that ended without an upstream answer (the client left, a budget refused) frees its slot.
            circuit = self.circuits.get(admitted[0])
            if circuit is not None:
                circuit.probes.discard(event.interception_id)

    # --- outcomes -------------------------------------------------------------------------------------------

    def record(self, job_id: UUID, key: tuple[str, str], generation: int, failed: bool) -> None:
        now = self.clock()
        circuit = self.circuits.get(key)
        if circuit is None:
            if not failed or generation != 0:
                return
            circuit = self.circuits[key] = Circuit(window_start=now)
        circuit.probes.discard(job_id)
        if generation != circuit.generation:
            return
        if circuit.state == CLOSED:
            if now - circuit.window_start >= self.config.interval:
                circuit.failures, circuit.window_start = 0, now
            if not failed:
                del self.circuits[key]  # healthy again: forget it
                return
            circuit.failures += 1
            if circuit.failures >= self.config.failure_threshold:
                circuit.opened_at = now
                self._set(key, circuit, OPEN)
        elif circuit.state == HALF_OPEN:
            if failed:
                circuit.opened_at = now
                self._set(key, circuit, OPEN)
                return
            circuit.successes += 1
            if circuit.successes >= self.config.max_requests:
                circuit.window_start = now
                self._set(key, circuit, CLOSED)

    def state(self, provider: str, model: str) -> str:
        circuit = self.circuits.get((provider, model))
        return CLOSED if circuit is None else circuit.state

    def _set(self, key: tuple[str, str], circuit: Circuit, state: str) -> None:
        circuit.state = state
        circuit.generation += 1
        circuit.failures = circuit.successes = 0
        circuit.probes.clear()
        log = logger.warning if state == OPEN else logger.info
        log("aibridge: circuit breaker for %s %s is %s", key[0], key[1], state)
        self.on_change(key[0], key[1], state)

    def _refusal(self, key: tuple[str, str], wait: float) -> Refusal:
        self.on_reject(*key)
        return Refusal(503, OPEN_MESSAGE, (("retry-after", str(max(1, math.ceil(wait)))),))


class _Call(UpstreamCall):
    def __init__(
        self, breakers: Breakers, job_id: UUID, failures: frozenset[int], key: tuple[str, str], generation: int
    ) -> None:
        self.breakers = breakers
        self.job_id = job_id
        self.failures = failures
        self.key = key
        self.generation = generation

    def responded(self, response: httpx.Response) -> None:
        self.breakers.record(self.job_id, self.key, self.generation, response.status_code in self.failures)

    def failed(self, status: int | None, error: BaseException) -> None:
        if status is not None:  # timed out or unreachable; None: the caller left, which says nothing of the provider
            self.breakers.record(self.job_id, self.key, self.generation, True)


def _key(job: "Job") -> tuple[str, str]:
    return job.route.provider.name, (job.info.model if job.info else None) or "unknown"
