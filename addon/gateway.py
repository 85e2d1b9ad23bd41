"""The front door: what the bridge does with a request (`decide`), and the bridge assembled once (`Gateway`).

A request for a provider host is passed through (forwarded as it came but for the credential rules, not
recorded), refused (a passed-through route whose credentials access control rejects), tapped (passed through
and recorded on the way: the Responses API, Bedrock, any SigV4-signed request) or bridged (the engine calls the
provider, injecting tools and running the loop). `Gateway` puts the engine together with the audit writer, the
MCP tools, the upstream transport and the observers, and applies a configuration to all of them. The proxy
(`addon.mitm`) and in-process callers (`addon.inprocess`) are thin adapters over it: each only moves bytes in its
own medium.
"""

import asyncio
import contextlib
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from addon.audit import AuditWriter
from addon.audit.lineage import Lineage
from addon.audit.store import StoreError, is_postgres
from addon.config import TOKEN_PREFIX, Config
from addon.engine.core import Engine
from addon.engine.job import Job
from addon.engine.ports import Observer, ToolSource
from addon.fleet.keys import SharedCooldowns
from addon.fleet.ledger import SharedLedger
from addon.fleet.ratelimits import SharedBuckets
from addon.fleet.state import SharedState
from addon.observe import NO_OBSERVER, ObservedRecorder, Observers
from addon.observe.dumps import Dumps
from addon.observe.jsonlog import JsonLog
from addon.observe.tracing import Tracing
from addon.policy.access import Access, Users, resolve
from addon.policy.breaker import Breakers
from addon.policy.budgets import Budget, Ledger, month_start
from addon.policy.identity import mask_secret
from addon.policy.keypool import KeyPools
from addon.policy.models import ModelPolicy
from addon.policy.pricing import PriceBook
from addon.policy.ratelimits import RateLimiter
from addon.policy.recording import Scrubber
from addon.policy.redaction import Redactor
from addon.policy.toolgate import ToolGate
from addon.providers.routing import Route, classify, query_keys, sealed
from addon.upstream.transport import Http1Transport

MAX_REQUEST_BODY = 32 * 1024 * 1024
"""Bytes a recorded request's body may have (the providers' own limit is 32 MB); larger ones get a
provider-shaped 413 and go nowhere."""

logger = logging.getLogger(__name__)


class Action(enum.Enum):
    PASS = "pass"
    """Forwarded unchanged but for the credential rules (`Access.headers`), not recorded."""
    REFUSE = "refuse"
    """A passed-through route access control refused: answered at once with `Decision.error()`."""
    TAP = "tap"
    """Passed through unchanged and recorded on the way."""
    BRIDGE = "bridge"
    """Run by the engine: the provider called by the bridge, tools injected, the loop run."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    route: Route
    access: Access
    path: str | None = None
    """The path and query to forward where they must change (a bridge token taken out of `?key=`), else None."""

    def error(self) -> tuple[int, bytes]:
        """A refusal's status and provider-shaped body."""
        assert self.access.refusal is not None
        refusal = self.access.refusal
        return refusal.status, self.route.error_body(refusal.status, refusal.message)


def decide(
    config: Config,
    users: Users,
    host: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    proxy_user: str | None,
    keys: KeyPools | None = None,
) -> Decision | None:
    """What to do with a request; None when `host` is no provider's. A refusal of a recorded route is the
    engine's to answer (`Engine.admit`), so that it is on record. Central keys come from `keys`' pools."""
    route = classify(config, host, method, path)
    if route is None:
        return None
    access, forwarded = _resolve(config, users, route, path, headers, proxy_user, keys)
    route = sealed(route, access.headers)  # where the bridge signs, the client's signature is gone
    if route.api is None:
        return Decision(Action.PASS if access.refusal is None else Action.REFUSE, route, access, forwarded)
    return Decision(Action.TAP if route.tapped else Action.BRIDGE, route, access, forwarded)


def _resolve(
    config: Config,
    users: Users,
    route: Route,
    path: str,
    headers: list[tuple[str, str]],
    proxy_user: str | None,
    pools: KeyPools | None,
) -> tuple[Access, str | None]:
    """Access for the request, and the path to forward if it must change. A key in the query (Gemini's
    `?key=`) counts as the family's key header says: the client's own stays in its URL as it came; a bridge
    token never stays there, and the central key goes in the header."""
    family = route.family
    name = family.key_header
    keys, without = query_keys(path, family.key_param) if family.key_param and name else ([], path)
    tokens = [k for k in keys if k.startswith(TOKEN_PREFIX)]
    if not keys:
        return resolve(config, users, route.provider, headers, proxy_user, pools), None
    if any(n.lower() == name for n, _ in headers):  # the header is the credential; a token still leaves the URL
        return resolve(config, users, route.provider, headers, proxy_user, pools), without if tokens else None
    key = tokens[0] if tokens else keys[-1]
    access = resolve(config, users, route.provider, [*headers, (name, key)], proxy_user, pools)
    if access.credential_kind == "byok" and not tokens:
        return replace(access, headers=[(n, v) for n, v in access.headers if (n, v) != (name, key)]), None
    return access, without


def too_large(route: Route | None, size: int) -> tuple[int, bytes, str] | None:
    """A recorded route's body over the limit: the 413's status, provider-shaped body and message."""
    if size <= MAX_REQUEST_BODY or route is None or route.api is None:
        return None  # passthrough: the provider decides
    message = f"request body of {size} bytes exceeds the bridge's limit of {MAX_REQUEST_BODY} bytes"
    return 413, route.error_body(413, message), message


class Gateway:
    """The bridge put together: an engine with its audit writer, MCP tools, upstream transport, observers and
    the policies a configuration sets (users, budgets, prices, tool-loop limits, retention, the breaker)."""

    def __init__(self, writer: AuditWriter, transport: Http1Transport, tools: ToolSource | None = None) -> None:
        self.config = Config()
        self.users = Users(())
        self.writer = writer
        self.engine = Engine(writer, transport, tools)
        self.breakers: Breakers | None = None
        self.shared: SharedState | None = None
        """The fleet's shared state, where the audit is in PostgreSQL: budgets, rate limits and key cooldowns."""
        self._cooldowns: SharedCooldowns | None = None
        self._observers: tuple[Observer, ...] = ()
        self.scrubber = Scrubber(None)
        """What every audit event goes through first: secrets redacted, or text dropped (`record`)."""

    def apply(self, config: Config) -> None:
        """Use `config`. A new circuit-breaker configuration starts every circuit closed; budgets start from
        this month's spend as the audit file has it."""
        if config.circuit_breaker != self.config.circuit_breaker:
            self.breakers = Breakers(config.circuit_breaker) if config.circuit_breaker is not None else None
        self.config = config
        self.users = Users(config.users)
        self.engine.max_tool_rounds = config.max_tool_rounds
        self.engine.keepalive_interval = config.keepalive_interval
        self.engine.prices = PriceBook(config.prices)
        allowed = config.allowed_models
        self.engine.models = ModelPolicy(allowed, config.users) if allowed.users or allowed.groups else None
        redaction = config.redaction
        redactor = Redactor(redaction.patterns) if redaction.audit or redaction.outbound != "off" else None
        self.engine.outbound = (redaction.outbound, redactor) if redactor and redaction.outbound != "off" else None
        self.scrubber = Scrubber(redactor if redaction.audit else None, config.record)
        self.engine.gate = ToolGate(config.tool_gate) if config.tool_gate else None
        self.engine.excerpt_chars = 0 if config.record == "metadata" else config.tool_result_excerpt
        self._settle_store()

    def use_writer(self, writer: AuditWriter) -> None:
        """Record to another audit file from now on (its budgets' spend and retention with it)."""
        self.writer = writer
        self.engine.lineage = Lineage(writer.find_tool_call)
        self._settle_store()

    def _settle_store(self) -> None:
        self.writer.set_retention(self.config.retention_days)
        self._share()
        self.engine.ledger = self._ledger()
        self.engine.rate_limits = self._rate_limits()
        self._wire()

    def _share(self) -> None:
        """Limits are shared through the audit's database when it is PostgreSQL."""
        if not is_postgres(self.writer.path):
            self.shared, self._cooldowns, self.engine.keys.on_cool = None, None, None
            return
        if self.shared is None or self.shared.url != self.writer.path:
            self.shared = SharedState(self.writer.path)
            self._cooldowns = SharedCooldowns(self.engine.keys, self.shared)
            with contextlib.suppress(RuntimeError):  # no loop yet: `start` begins it
                asyncio.get_running_loop()
                self._cooldowns.start()

    async def start(self) -> None:
        """Begin what runs in the background (the fleet's key cooldowns)."""
        if self._cooldowns is not None:
            self._cooldowns.start()

    async def aclose(self) -> None:
        """Settle what the shared ledger still owes and leave the fleet (bounded)."""
        if isinstance(self.engine.ledger, SharedLedger):
            await self.engine.ledger.close()
        if self._cooldowns is not None:
            await self._cooldowns.close()
        if self.shared is not None:
            await self.shared.close()

    def _ledger(self) -> Budget | None:
        budgets = self.config.budgets
        if not budgets.users and not budgets.groups:
            return None
        ledger = Ledger(budgets, self.config.users)
        if self.shared is not None:  # the fleet's books; this process's are the fallback
            return SharedLedger(ledger, self.shared, budgets.on_store_down)
        try:
            ledger.load(self.writer.spend_since(month_start(datetime.now(UTC))))
        except StoreError as e:
            logger.error(
                "aibridge: budgets start without this month's spend: %s cannot answer (%s)", self.writer.target, e
            )
        return ledger

    def _rate_limits(self) -> RateLimiter | None:
        limits = self.config.rate_limits
        if not limits.users and not limits.groups:
            return None
        shared = SharedBuckets(self.shared) if self.shared is not None else None
        return RateLimiter(limits, self.config.users, shared)

    def observe(self, observers: Sequence[Observer]) -> None:
        """The operations' observers (metrics, traces, dumps, logs), seen after the breaker."""
        self._observers = tuple(observers)
        self._wire()

    def _wire(self) -> None:
        """Point the engine at the observers in use (none: the engine pays nothing)."""
        parts = [o for o in (self.breakers, *self._observers) if o is not None]
        observer = Observers(parts) if parts else NO_OBSERVER
        self.engine.observer = observer
        scrub = self.scrubber if self.scrubber.needed else None
        self.writer.scrub = scrub  # in the writer's thread, off the event loop
        for o in self._observers:
            if isinstance(o, Dumps):  # whole bodies: redacted in the dump thread
                o.writer.redactor = self.scrubber.redactor
        texty = [o for o in self._observers if isinstance(o, (JsonLog, Tracing))]  # errors in spans too
        counting = Observers([o for o in parts if o not in texty])
        keeps_text = Observers(texty) if texty else None
        observed = ObservedRecorder(self.writer, counting, keeps_text, scrub) if parts else None
        self.engine.recorder = observed or self.writer

    def decide(
        self, host: str, method: str, path: str, headers: list[tuple[str, str]], user: str | None
    ) -> Decision | None:
        return decide(self.config, self.users, host, method, path, headers, user, self.engine.keys)

    def route(self, host: str, method: str, path: str) -> Route | None:
        return classify(self.config, host, method, path)

    @staticmethod
    def job(decision: Decision, path: str, body: bytes, **metadata: Any) -> Job:
        """The interception of a tapped or bridged request (with the client's account as a masked hint, where
        the family names one: ChatGPT's; and why a bridged API was only tapped)."""
        if decision.route.sealed:
            metadata = {"tapped": "the body is SigV4-signed", **metadata}
        if (header := decision.route.family.account_header) is not None:
            account = next((v for n, v in decision.access.headers if n.lower() == header), None)
            if account:
                metadata = {"account_hint": mask_secret(account), **metadata}
        return Job.of(decision.route, path, body, decision.access, **metadata)
