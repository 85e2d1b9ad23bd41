"""The bridge's configuration: a TOML file (option `aibridge_config`) parsed into a frozen `Config`.

Every key, with an example and its meaning, is in README.md under "### The TOML file" (tests/test_readme.py
checks that it documents each key here). Providers `anthropic` and `openai` exist unless a table of the same
name overrides or disables them. Parsers raise `ValueError` naming the key; the addon turns that into
`OptionsError`.
"""

import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from addon.providers import FAMILIES, Api
from addon.providers.base import host_matches
from addon.providers.sigv4 import AwsCredentials, region_in

ProviderType = str
"""A provider family's type: a key of `addon.providers.FAMILIES`."""
PROVIDER_TYPES: tuple[ProviderType, ...] = tuple(FAMILIES)
DEFAULT_HOSTS: dict[ProviderType, str] = {name: family.host for name, family in FAMILIES.items()}
PRICE_VENDORS = tuple(dict.fromkeys([*(api.vendor for api in Api), *(f.prices for f in FAMILIES.values() if f.prices)]))
"""Whose models the price book prices (`[prices."<vendor>/<model>"]`): the API's, whoever hosts it, or the
family's own (`aws` for Bedrock's model ids)."""

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_AWS_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_profile", "aws_region")
_PROVIDER_KEYS = {"type", "host", "upstream", "extra_headers", "key", "allow_byok", "enabled", *_AWS_KEYS}
_USER_KEYS = {"token", "groups"}
_BUDGET_KEYS = {"users", "groups", "on_store_down"}
_RATE_KEYS = {"users", "groups", "on_store_down"}
_RATE_LIMIT_KEYS = ("requests_per_minute", "tokens_per_minute")
ON_STORE_DOWN = ("admit", "refuse")
"""What a shared limit does while its database does not answer: decide with the proxy's own books, or refuse."""
_REDACTION_KEYS = {"audit", "outbound", "patterns"}
OUTBOUND = ("off", "redact", "block")
"""What a bridged or tapped request holding a secret does: leaves as it is, leaves with the secret replaced, or is
refused (400)."""
RECORD_LEVELS = ("full", "metadata")
_ALLOWED_MODEL_KEYS = {"users", "groups"}
_GATE_KEYS = {"rules"}
_GATE_RULE_KEYS = {"tool", "arguments", "action"}
GATE_ACTIONS = ("block", "audit")
_KIND = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_PRICE_KEYS = {"input", "output", "cache_read", "cache_write", "cache_write_1h"}
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
TOKEN_PREFIX = "aib_"
"""Bridge tokens start with this, so a client's API key can be told apart from a provider key."""
_MCP_KEYS = {"url", "headers", "command", "args", "env", "allow", "deny", "tool_timeout", "enabled"}
_MCP_NAME = re.compile(r"^[A-Za-z0-9]+([_-][A-Za-z0-9]+)*$")
_TOP_LEVEL_KEYS = {
    "providers",
    "mcp_servers",
    "max_tool_rounds",
    "keepalive_interval",
    "allow_byok",
    "send_actor_headers",
    "users",
    "budgets",
    "rate_limits",
    "prices",
    "retention_days",
    "circuit_breaker",
    "redaction",
    "record",
    "allowed_models",
    "tool_gate",
    "tool_result_excerpt",
}
_BREAKER_KEYS = {"failure_threshold", "interval", "timeout", "max_requests", "enabled"}
DEFAULT_TOOL_TIMEOUT = 60.0
DEFAULT_MAX_TOOL_ROUNDS = 16
DEFAULT_TOOL_RESULT_EXCERPT = 200
"""Characters of each client tool result the action ledger keeps."""
DEFAULT_KEEPALIVE_INTERVAL = 10.0


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """Where a provider's requests go: `https://api.anthropic.com`, or `http://127.0.0.1:9000/base`."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    path: str
    """Prefix put before the request path; '' or '/something' without a trailing slash."""

    @property
    def authority(self) -> str:
        """`host[:port]` as a URL and a Host header spell it: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"

    def url(self, path_and_query: str) -> str:
        return f"{self.scheme}://{self.authority}{self.path}{path_and_query}"


@dataclass(frozen=True, kw_only=True)
class Provider:
    name: str
    type: ProviderType
    host: str
    """The host its clients call, or a pattern of them where `*` stands for any characters (`*.openai.azure.com`)."""
    upstream: Upstream | None
    """Where its requests go; None: to the host the client called (over HTTPS)."""
    extra_headers: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = field(default=(), repr=False)
    """The central keys (a pool: one is used, the next when it is cooling down after a 429 or 401), substituted
    upstream for requests authenticated by a bridge token."""
    aws: AwsCredentials | None = None
    """AWS credentials that sign such requests instead (Bedrock): each upstream call, the loop's too."""
    allow_byok: bool | None = None
    """None: the global setting."""

    @property
    def key(self) -> str | None:
        """The first central key: whether there is one at all."""
        return self.keys[0] if self.keys else None


@dataclass(frozen=True, kw_only=True)
class McpServer:
    """An MCP server whose tools are injected: streamable HTTP (`url`) or stdio (`command`)."""

    name: str
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT

    @property
    def location(self) -> str:
        """What the audit records as the tool's server: the URL, or `stdio:<command>`."""
        return self.url if self.url else f"stdio:{self.command}"

    def permits(self, tool: str) -> bool:
        if self.deny is not None and self.deny.search(tool):
            return False
        return self.allow is None or bool(self.allow.search(tool))


@dataclass(frozen=True, kw_only=True)
class User:
    name: str
    token_hash: str = field(repr=False)
    """`sha256:<hex>` of the user's bridge token."""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PriceOverride:
    """US$ per million tokens, for a `provider/model` the price book lacks or prices differently."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None


@dataclass(frozen=True, kw_only=True)
class Budgets:
    """Monthly spend limits in micro-dollars (US$ 1 = 1,000,000)."""

    users: tuple[tuple[str, int], ...] = ()
    groups: tuple[tuple[str, int], ...] = ()
    on_store_down: str = "admit"


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, kw_only=True)
class RateLimits:
    """Per-user limits: a user's own, else (each of the two separately) the highest among their groups."""

    users: tuple[tuple[str, RateLimit], ...] = ()
    groups: tuple[tuple[str, RateLimit], ...] = ()
    on_store_down: str = "admit"


@dataclass(frozen=True, kw_only=True)
class Redaction:
    audit: bool = True
    """Secrets in what is kept (the audit, logs, dumps, spans) are replaced by `[REDACTED:<kind>]`."""
    outbound: str = "off"
    patterns: tuple[tuple[str, str], ...] = ()
    """The operator's own (kind, regex), over the detector's."""


@dataclass(frozen=True, kw_only=True)
class ModelAllowlists:
    """Glob patterns of the models a user may call: a user's own list, else the union of their groups' lists;
    a user with neither may call any."""

    users: tuple[tuple[str, tuple[str, ...]], ...] = ()
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, kw_only=True)
class GateRule:
    """A rule on the client's own tool calls: both regexes (searched; None: any) match, then `action`."""

    name: str
    tool: str | None = None
    arguments: str | None = None
    action: str = "block"


@dataclass(frozen=True, kw_only=True)
class CircuitBreakerConfig:
    """The reference's defaults: {5, 10 s, 30 s, 3}."""

    failure_threshold: int = 5
    interval: float = 10.0
    timeout: float = 30.0
    max_requests: int = 3


@dataclass(frozen=True, kw_only=True)
class Config:
    providers: tuple[Provider, ...] = field(default_factory=tuple)
    mcp_servers: tuple[McpServer, ...] = ()
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    allow_byok: bool = True
    send_actor_headers: bool = False
    users: tuple[User, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    prices: tuple[tuple[str, PriceOverride], ...] = ()
    retention_days: int | None = None
    """Audit rows of interceptions older than this are purged; None keeps everything."""
    circuit_breaker: CircuitBreakerConfig | None = None
    redaction: Redaction = field(default_factory=Redaction)
    record: str = "full"
    """`metadata`: the audit keeps ids, users, models, tokens, costs, tool names and statuses, no text."""
    allowed_models: ModelAllowlists = field(default_factory=ModelAllowlists)
    tool_gate: tuple[GateRule, ...] = ()
    tool_result_excerpt: int = DEFAULT_TOOL_RESULT_EXCERPT
    """Characters of each client tool result the action ledger keeps (redacted like all text); 0 keeps none."""

    def provider_for_host(self, host: str) -> Provider | None:
        """The provider for `host`: the one naming it exactly, else the longest pattern that matches it."""
        host = host.lower().rstrip(".")
        matching = [p for p in self.providers if host_matches(p.host, host)]
        return max(matching, key=lambda p: ("*" not in p.host, len(p.host)), default=None)


def parse_upstream(url: str) -> Upstream:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"upstream {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"upstream {url!r}: no host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"upstream {url!r}: must not carry a query, fragment or credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"upstream {url!r}: {e}") from None
    return Upstream(scheme=parts.scheme, host=parts.hostname, port=port, path=parts.path.rstrip("/"))


# --- value checks: `what` is the dotted path a message starts with -----------------------------------------


def _table(value: Any, what: str, must: str = "be a table") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must {must}")
    return value


def _tables(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A top-level table of named tables (`[users.alice]`, ...); absent: none."""
    return _table(data.get(key, {}), key, "be a table of tables")


def _known(table: dict[str, Any], keys: set[str], what: str) -> None:
    """Unknown keys are errors, so a misspelt key cannot silently fall back to a default. '' is the top level."""
    if unknown := set(table) - keys:
        names = ", ".join(sorted(unknown))
        raise ValueError(f"{what}: unknown key(s) {names}" if what else f"unknown top-level key(s) {names}")


def _flag(value: Any, what: str) -> bool:
    # Strict: `enabled = "false"` must not count as true.
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false")
    return value


def _enabled(table: dict[str, Any], where: str) -> bool:
    return _flag(table.get("enabled", True), f"{where}: enabled")


def _whole(value: Any, what: str, lo: int, hi: int, unit: str = "") -> int:
    # bool is a subclass of int: `true` is no count.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        of = f" of {unit}" if unit else ""
        raise ValueError(f"{what} must be a whole number{of} from {lo} to {hi}")
    return value


def _number(
    value: Any, what: str, lo: float, hi: float, must: str, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """An int or float (not a bool) within the bounds, each inclusive unless open; NaN is within none."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (lo < value if lo_open else lo <= value) or not (value < hi if hi_open else value <= hi):
        raise ValueError(f"{what} must be {must}")
    return float(value)


def _secret(value: Any, what: str) -> str:
    """A literal, or `env:VAR` read from the proxy's environment (keeps secrets out of the file)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string (or env:VAR)")
    if value.startswith("env:"):
        var = value[4:]
        if not (secret := os.environ.get(var, "").strip()):
            raise ValueError(f"{what}: environment variable {var} is not set")
        return secret
    return value


def _string_pairs(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{what} must map names to strings")
    return tuple(value.items())


def _regex(value: Any, what: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a regular expression string")
    try:
        return re.compile(value)
    except re.error as e:
        raise ValueError(f"{what}: invalid regular expression: {e}") from None


# --- the tables ------------------------------------------------------------------------------------------
# The order of checks within each parser decides which message a config with several errors gets: keep it.


def _parse_provider(name: str, value: Any) -> Provider | None:
    where = f"providers.{name}"
    table = _table(value, where)
    if not _NAME.match(name):
        raise ValueError(f"provider name {name!r} must be lower-case words joined by '-' (e.g. 'openai-eu')")
    _known(table, _PROVIDER_KEYS, where)
    if not _enabled(table, where):
        return None  # a disabled provider's other keys are not checked
    ptype = table.get("type", name if name in PROVIDER_TYPES else None)
    if ptype not in PROVIDER_TYPES:
        raise ValueError(f"{where}: type must be one of {', '.join(PROVIDER_TYPES)}")
    host = table.get("host", DEFAULT_HOSTS[ptype] if name == ptype else None)
    if not isinstance(host, str) or not _HOST.match(host.lower().replace("*", "x")):
        raise ValueError(f"{where}: host must be a host name such as {DEFAULT_HOSTS[ptype]!r}")
    host = host.lower()
    upstream = table.get("upstream", None if "*" in host else f"https://{host}")
    if upstream is not None and not isinstance(upstream, str):
        raise ValueError(f"{where}: upstream must be a URL string")
    headers = table.get("extra_headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and _HEADER_NAME.match(k) and isinstance(v, str) and not any(c in v for c in "\r\n\0")
        for k, v in headers.items()
    ):
        raise ValueError(f"{where}: extra_headers must map header names to strings")
    try:
        parsed_upstream = parse_upstream(upstream) if upstream is not None else None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if "key" in table and not FAMILIES[ptype].central_keys:
        if FAMILIES[ptype].sigv4_service:
            raise ValueError(
                f"{where}: {ptype} takes no central key: give it AWS credentials to sign with "
                "(aws_access_key_id and aws_secret_access_key, or aws_profile)"
            )
        raise ValueError(f"{where}: {ptype} takes no central key (each user's own token goes upstream)")
    aws = _parse_aws(table, ptype, host, parsed_upstream, where)
    keys = _keys(table["key"], f"{where}.key") if "key" in table else ()
    allow_byok = table.get("allow_byok")  # None: the global setting
    if allow_byok is not None:
        allow_byok = _flag(allow_byok, f"{where}: allow_byok")
    return Provider(
        name=name,
        type=ptype,
        host=host,
        upstream=parsed_upstream,
        extra_headers=tuple(headers.items()),
        keys=keys,
        aws=aws,
        allow_byok=allow_byok,
    )


def _parse_aws(
    table: dict[str, Any], ptype: ProviderType, host: str, upstream: Upstream | None, where: str
) -> AwsCredentials | None:
    """The AWS credentials a SigV4 provider signs bridged calls with: keys (literal or env:VAR), or a profile."""
    given = [k for k in _AWS_KEYS if k in table]
    if not given:
        return None
    family = FAMILIES[ptype]
    if family.sigv4_service is None:
        raise ValueError(f"{where}: {ptype} takes no AWS credentials ({given[0]}): only SigV4 providers do")
    region = table.get("aws_region")
    if region is not None and (not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", region)):
        raise ValueError(f"{where}: aws_region must be an AWS region such as 'us-east-1'")
    named = host == family.host or region_in(family.host, host) or (upstream and region_in(family.host, upstream.host))
    if region is None and not named:
        raise ValueError(f"{where}: aws_region is required: the host {host!r} does not name the region to sign for")
    if "aws_profile" in table:
        if keys := [k for k in given if k not in ("aws_profile", "aws_region")]:
            raise ValueError(f"{where}: aws_profile and {keys[0]} exclude each other: give keys or a profile")
        profile = table["aws_profile"]
        if not isinstance(profile, str) or not profile.strip():
            raise ValueError(f"{where}: aws_profile must be the name of a profile in the AWS config files")
        try:
            return AwsCredentials.from_profile(profile, region)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    for needed in ("aws_access_key_id", "aws_secret_access_key"):
        if needed not in table:
            raise ValueError(f"{where}: {needed} is missing: AWS credentials need both keys (or aws_profile)")
    key_id = _secret(table["aws_access_key_id"], f"{where}.aws_access_key_id")
    secret = _secret(table["aws_secret_access_key"], f"{where}.aws_secret_access_key")
    token = _secret(table["aws_session_token"], f"{where}.aws_session_token") if "aws_session_token" in table else None
    return AwsCredentials.from_keys(key_id, secret, token, region)


def hash_token(token: str) -> str:
    # surrogateescape: header bytes that are not UTF-8 reach us as lone surrogates (mitmproxy decodes that way)
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _parse_user(name: str, value: Any) -> User:
    where = f"users.{name}"
    if not USER_NAME.match(name):
        raise ValueError(f"user name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    table = _table(value, where)
    _known(table, _USER_KEYS, where)
    token = table.get("token")
    if isinstance(token, str) and _TOKEN_HASH.match(token):
        token_hash = token
    elif isinstance(token, str) and token.startswith("env:"):
        token_hash = hash_token(_secret(token, f"{where}.token"))
    else:
        raise ValueError(f"{where}: token must be sha256:<64 hex digits> (scripts/add-user prints one) or env:VAR")
    groups = table.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise ValueError(f"{where}: groups must be a list of names")
    return User(name=name, token_hash=token_hash, groups=tuple(groups))


def _micro_dollars(value: Any, what: str) -> int:
    return round(_number(value, what, 0, 1_000_000, "an amount of US$ from 0 to 1000000") * 1_000_000)


def _keys(value: Any, what: str) -> tuple[str, ...]:
    """One key, or a pool of them (a list), each literal or env:VAR."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{what}: an empty list: give one key or several")
        keys = tuple(_secret(v, f"{what}[{i}]") for i, v in enumerate(value))
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what}: a key is listed twice")
        return keys
    return (_secret(value, what),)


def _on_store_down(table: dict[str, Any], what: str) -> str:
    value = table.get("on_store_down", "admit")
    if value not in ON_STORE_DOWN:
        raise ValueError(f"{what}.on_store_down must be one of {', '.join(repr(v) for v in ON_STORE_DOWN)}")
    return value


def _parse_budgets(value: Any) -> Budgets:
    table = _table(value, "budgets")
    _known(table, _BUDGET_KEYS, "budgets")
    parts: dict[str, Any] = {}
    for kind in ("users", "groups"):  # not the set _BUDGET_KEYS: its order, so the message, varies with the hash seed
        limits = _table(table.get(kind, {}), f"budgets.{kind}", "map names to US$ amounts")
        parts[kind] = tuple(sorted((n, _micro_dollars(v, f"budgets.{kind}.{n}")) for n, v in limits.items()))
    return Budgets(**parts, on_store_down=_on_store_down(table, "budgets"))


def _parse_rate_limits(value: Any) -> RateLimits:
    table = _table(value, "rate_limits")
    _known(table, _RATE_KEYS, "rate_limits")
    parts: dict[str, Any] = {}
    for kind in ("users", "groups"):
        subjects = _table(table.get(kind, {}), f"rate_limits.{kind}", "be a table of tables")
        limits = []
        for name, limit in sorted(subjects.items()):
            where = f"rate_limits.{kind}.{name}"
            limit = _table(limit, where, "be a table: requests_per_minute and/or tokens_per_minute")
            _known(limit, set(_RATE_LIMIT_KEYS), where)
            if not limit:
                raise ValueError(f"{where}: give requests_per_minute, tokens_per_minute or both")
            values = {k: _whole(limit[k], f"{where}.{k}", 1, 1_000_000_000) for k in _RATE_LIMIT_KEYS if k in limit}
            limits.append((name, RateLimit(**values)))
        parts[kind] = tuple(limits)
    return RateLimits(**parts, on_store_down=_on_store_down(table, "rate_limits"))


def _pattern(value: Any, where: str) -> str:
    """A regex kept as its text, checked now; an empty one would match everything."""
    if value == "":
        raise ValueError(f"{where} must be a regular expression string, not empty")
    _regex(value, where)
    return value


def _parse_redaction(value: Any) -> Redaction:
    table = _table(value, "redaction")
    _known(table, _REDACTION_KEYS, "redaction")
    audit = _flag(table.get("audit", True), "redaction.audit")
    outbound = table.get("outbound", "off")
    if outbound not in OUTBOUND:
        raise ValueError(f"redaction.outbound must be one of {', '.join(repr(v) for v in OUTBOUND)}")
    patterns = _table(table.get("patterns", {}), "redaction.patterns", "map kinds to regular expressions")
    for kind, pattern in patterns.items():
        where = f"redaction.patterns.{kind}"
        if not _KIND.match(kind):
            raise ValueError(f"{where}: a kind is lower-case words joined by '-', e.g. internal-token")
        _pattern(pattern, where)
    return Redaction(audit=audit, outbound=outbound, patterns=tuple(sorted(patterns.items())))


def _parse_allowed_models(value: Any) -> ModelAllowlists:
    table = _table(value, "allowed_models")
    _known(table, _ALLOWED_MODEL_KEYS, "allowed_models")
    parts: dict[str, Any] = {}
    for kind in ("users", "groups"):
        lists = _table(table.get(kind, {}), f"allowed_models.{kind}", "map names to lists of model patterns")
        checked = []
        for name, patterns in sorted(lists.items()):
            where = f"allowed_models.{kind}.{name}"
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
                raise ValueError(f'{where} must be a list of model patterns, e.g. ["claude-sonnet-*", "gpt-4.1*"]')
            checked.append((name, tuple(patterns)))
        parts[kind] = tuple(checked)
    return ModelAllowlists(**parts)


def _parse_tool_gate(value: Any) -> tuple[GateRule, ...]:
    table = _table(value, "tool_gate")
    _known(table, _GATE_KEYS, "tool_gate")
    rules = []
    for name, rule in sorted(_table(table.get("rules", {}), "tool_gate.rules", "be a table of tables").items()):
        where = f"tool_gate.rules.{name}"
        if not _KIND.match(name):
            raise ValueError(f"{where}: a rule's name is lower-case words joined by '-', e.g. no-rm-rf")
        rule = _table(rule, where, "be a table: tool, arguments, action")
        _known(rule, _GATE_RULE_KEYS, where)
        patterns: dict[str, str | None] = {}
        for key in ("tool", "arguments"):
            pattern = rule.get(key)
            patterns[key] = _pattern(pattern, f"{where}.{key}") if pattern is not None else None
        if patterns["tool"] is None and patterns["arguments"] is None:
            raise ValueError(f"{where}: give tool, arguments or both (regular expressions)")
        action = rule.get("action", "block")
        if action not in GATE_ACTIONS:
            raise ValueError(f"{where}.action must be one of {', '.join(repr(a) for a in GATE_ACTIONS)}")
        rules.append(GateRule(name=name, tool=patterns["tool"], arguments=patterns["arguments"], action=action))
    return tuple(rules)


def _parse_record(value: Any) -> str:
    if value not in RECORD_LEVELS:
        raise ValueError(f"record must be one of {', '.join(repr(v) for v in RECORD_LEVELS)}")
    return value


def _parse_price(name: str, value: Any) -> PriceOverride:
    where = f'prices."{name}"'
    vendor, _, model = name.partition("/")
    if vendor not in PRICE_VENDORS or not model:
        raise ValueError(
            f"{where}: the name must be <{' or '.join(PRICE_VENDORS)}>/<model>, e.g. anthropic/claude-sonnet-4-5"
        )
    table = _table(value, where)
    _known(table, _PRICE_KEYS, where)
    if "input" not in table or "output" not in table:
        raise ValueError(f"{where}: input and output prices are required")
    must = "a non-negative number of US$ per million tokens"
    return PriceOverride(**{k: _number(v, f"{where}.{k}", 0, math.inf, must, hi_open=True) for k, v in table.items()})


def _parse_breaker(value: Any) -> CircuitBreakerConfig | None:
    table = _table(value, "circuit_breaker")
    _known(table, _BREAKER_KEYS, "circuit_breaker")
    if not _enabled(table, "circuit_breaker"):
        return None
    default = CircuitBreakerConfig()

    def count(key: str) -> int:
        return _whole(table.get(key, getattr(default, key)), f"circuit_breaker.{key}", 1, 10_000)

    def seconds(key: str) -> float:
        must = "a number of seconds above 0, at most 86400"
        return _number(table.get(key, getattr(default, key)), f"circuit_breaker.{key}", 0, 86_400, must, lo_open=True)

    return CircuitBreakerConfig(
        failure_threshold=count("failure_threshold"),
        max_requests=count("max_requests"),
        interval=seconds("interval"),
        timeout=seconds("timeout"),
    )


def _parse_retention(value: Any, budgets: Budgets) -> int | None:
    if value is None:
        return None
    days = _whole(value, "retention_days", 1, 36_500, "days")
    if days < 32 and (budgets.users or budgets.groups):
        # Budgets are rebuilt from this month's rows on start: purging them would forgive spend.
        raise ValueError("retention_days must be at least 32 while budgets are configured")
    return days


def _parse_mcp_server(name: str, value: Any) -> McpServer | None:
    where = f"mcp_servers.{name}"
    table = _table(value, where)
    if not _MCP_NAME.match(name):
        raise ValueError(f"MCP server name {name!r} must be letters and digits, optionally joined by '-' or '_'")
    _known(table, _MCP_KEYS, where)
    if not _enabled(table, where):
        return None
    url, command = table.get("url"), table.get("command")
    if (url is None) == (command is None):
        raise ValueError(f"{where}: give either url (streamable HTTP) or command (stdio)")
    if url is not None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError(f"{where}: url must be an http(s) URL")
        if {"args", "env"} & set(table):
            raise ValueError(f"{where}: args and env belong to stdio servers (command)")
    else:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"{where}: command must be a non-empty string")
        if "headers" in table:
            raise ValueError(f"{where}: headers belong to HTTP servers (url)")
    args = table.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError(f"{where}: args must be a list of strings")
    timeout = table.get("tool_timeout", DEFAULT_TOOL_TIMEOUT)
    # NaN has always been accepted here (`nan <= 0` is false); refusing it is a behaviour change for its own commit.
    if not (isinstance(timeout, float) and math.isnan(timeout)):
        timeout = _number(timeout, f"{where}: tool_timeout", 0, math.inf, "a positive number of seconds", lo_open=True)
    return McpServer(
        name=name,
        url=url,
        headers=_string_pairs(table.get("headers", {}), f"{where}.headers"),
        command=command,
        args=tuple(args),
        env=_string_pairs(table.get("env", {}), f"{where}.env"),
        allow=_regex(table.get("allow"), f"{where}.allow"),
        deny=_regex(table.get("deny"), f"{where}.deny"),
        tool_timeout=timeout,
    )


def _parse_providers(configured: dict[str, Any]) -> list[Provider]:
    """The configured providers, and the default ones (one per family) they leave in place: a table of a
    default's name overrides (or disables) it, and a configured provider on a default's host takes the host over.
    Two configured providers on one host are an error."""
    tables: dict[str, Any] = {name: {} for name in PROVIDER_TYPES} | configured  # defaults first, overridden in place
    providers = [p for name, table in tables.items() if (p := _parse_provider(name, table))]
    owners: dict[str, str] = {}
    for provider in (p for p in providers if p.name in configured):
        if (other := owners.setdefault(provider.host, provider.name)) != provider.name:
            raise ValueError(
                f"providers.{other} and providers.{provider.name} both claim host {provider.host}: give one of "
                "them another host, or disable one (enabled = false)"
            )
    return [p for p in providers if p.name in configured or p.host not in owners]


def parse_config(data: dict[str, Any]) -> Config:
    _known(data, _TOP_LEVEL_KEYS, "")
    providers = _parse_providers(_tables(data, "providers"))
    servers_table = _tables(data, "mcp_servers")
    servers = [s for name, table in sorted(servers_table.items()) if (s := _parse_mcp_server(name, table))]
    max_tool_rounds = _whole(data.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS), "max_tool_rounds", 1, 1000)
    keepalive = data.get("keepalive_interval", DEFAULT_KEEPALIVE_INTERVAL)
    keepalive = _number(keepalive, "keepalive_interval", 0, 600, "a number of seconds from 0 to 600", lo_open=True)
    allow_byok = _flag(data.get("allow_byok", True), "allow_byok")
    send_actor_headers = _flag(data.get("send_actor_headers", False), "send_actor_headers")
    users = tuple(_parse_user(name, table) for name, table in sorted(_tables(data, "users").items()))
    prices_table = _tables(data, "prices")
    budgets = _parse_budgets(data.get("budgets", {}))
    rate_limits = _parse_rate_limits(data.get("rate_limits", {}))
    prices = tuple((name, _parse_price(name, table)) for name, table in sorted(prices_table.items()))
    retention_days = _parse_retention(data.get("retention_days"), budgets)
    breaker = _parse_breaker(data["circuit_breaker"]) if "circuit_breaker" in data else None
    redaction = _parse_redaction(data.get("redaction", {}))
    record = _parse_record(data.get("record", "full"))
    allowed_models = _parse_allowed_models(data.get("allowed_models", {}))
    tool_gate = _parse_tool_gate(data.get("tool_gate", {}))
    excerpt = _whole(data.get("tool_result_excerpt", DEFAULT_TOOL_RESULT_EXCERPT), "tool_result_excerpt", 0, 4000)
    return Config(
        providers=tuple(providers),
        mcp_servers=tuple(servers),
        max_tool_rounds=max_tool_rounds,
        keepalive_interval=keepalive,
        allow_byok=allow_byok,
        send_actor_headers=send_actor_headers,
        users=users,
        budgets=budgets,
        rate_limits=rate_limits,
        prices=prices,
        retention_days=retention_days,
        circuit_breaker=breaker,
        redaction=redaction,
        record=record,
        allowed_models=allowed_models,
        tool_gate=tool_gate,
        tool_result_excerpt=excerpt,
    )


def load_config(path: str | None) -> Config:
    """Read the TOML file at `path`; no path means the defaults."""
    if not path:
        return parse_config({})
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None
    try:
        return parse_config(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
