"""Pools of central keys: a provider may list several; a key the provider answers 429 or 401 cools down
(for its `retry-after`, else a default) and the next is used, round robin. When every key is cooling, the
client gets a provider-shaped 429 with `retry-after` (until the first is back) and nothing goes upstream.

Cooldowns are this process's and, in a fleet, everyone's: `addon.fleet.keys` publishes each one and merges
the others' every second. A provider with a single key has no pool: its 429s reach the client as they came.
Keys are known by a fingerprint (a truncated SHA-256, never the key) and shown by their masked hint.
"""

import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Final

from addon.config import Provider
from addon.policy import Refusal
from addon.policy.identity import mask_secret

COOLING_STATUSES: Final = frozenset({429, 401})
DEFAULT_COOLDOWN: Final = {429: 60.0, 401: 300.0}
"""Seconds a key cools without a `retry-after`: a 401 (revoked, not yet valid) is not over soon."""
MAX_COOLDOWN: Final = 3600.0


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def cooldown(status: int, headers: Mapping[str, str], now: float | None = None) -> float:
    """Seconds to cool a key after this answer: `retry-after-ms`, `retry-after` (seconds or a date), else the
    status's default; at most MAX_COOLDOWN."""
    now = time.time() if now is None else now
    seconds: float | None = None
    if (ms := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            seconds = float(ms) / 1000
    if seconds is None and (after := headers.get("retry-after")) is not None:
        try:
            seconds = float(after)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(after).timestamp() - now
            except (TypeError, ValueError):
                seconds = None
    if seconds is None or seconds != seconds or seconds <= 0:  # NaN, past dates
        seconds = DEFAULT_COOLDOWN.get(status, 60.0)
    return min(seconds, MAX_COOLDOWN)


class KeyPools:
    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}
        self._turn: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        """Picks per (provider, key hint)."""
        self.cooldowns: Counter[tuple[str, str]] = Counter()
        """Cooldowns per (provider, key hint) this process saw start."""
        self.on_cool: Callable[[str, str, float, int], None] | None = None
        """Told of each cooldown this process starts: (provider, fingerprint, seconds, status); a fleet shares it."""

    @staticmethod
    def pooled(provider: Provider) -> bool:
        return len(provider.keys) > 1

    def pick(self, provider: Provider, now: float | None = None) -> str | Refusal:
        """The key to use now, or the 429 when every key of the pool is cooling."""
        if not self.pooled(provider):
            assert provider.key is not None
            return provider.key
        now = time.time() if now is None else now
        keys = provider.keys
        start = self._turn[provider.name]
        for i in range(len(keys)):
            key = keys[(start + i) % len(keys)]
            if self._until.get((provider.name, fingerprint(key)), 0) <= now:
                self._turn[provider.name] = (start + i + 1) % len(keys)
                self.requests[(provider.name, mask_secret(key))] += 1
                return key
        wait = min(self._until[(provider.name, fingerprint(k))] for k in keys) - now
        seconds = max(1, int(wait + 0.999))
        return Refusal(
            429,
            f"every central key of provider {provider.name} is cooling down after rate-limit or authentication "
            f"errors; retry in {seconds} s",
            (("retry-after", str(seconds)),),
        )

    def cool(self, provider: Provider, key: str, status: int, seconds: float, now: float | None = None) -> None:
        """The key answered `status`: unused for `seconds` by this process, and (via `on_cool`) the fleet."""
        if not self.pooled(provider):
            return
        now = time.time() if now is None else now
        slot = (provider.name, fingerprint(key))
        self._until[slot] = max(self._until.get(slot, 0), now + seconds)
        self.cooldowns[(provider.name, mask_secret(key))] += 1
        if self.on_cool is not None:
            self.on_cool(provider.name, slot[1], seconds, status)

    def merge(self, cooling: list[tuple[str, str, float]], now: float | None = None) -> None:
        """Cooldowns the fleet knows of: (provider, fingerprint, seconds left)."""
        now = time.time() if now is None else now
        for provider, print_, left in cooling:
            slot = (provider, print_)
            self._until[slot] = max(self._until.get(slot, 0), now + left)
