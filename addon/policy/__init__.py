"""Who may call what, at what cost: access and identity, budgets, pricing, the circuit breaker."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    """A policy's answer instead of the upstream's: the client gets a provider-shaped error with this status,
    message and headers, and the interception is recorded `refused`."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()
