"""The bridge's configuration: a TOML file (option `aibridge_config`) parsed into a frozen `Config`.

    [providers.anthropic]              # name: lower-case words joined by '-'
    type = "anthropic"                 # "anthropic" | "openai"; defaults to the name when that is a type
    host = "api.anthropic.com"         # the host clients call; only provider hosts are TLS-intercepted
    upstream = "https://api.anthropic.com"   # where requests go; the request path is appended
    extra_headers = { "x-team" = "platform" }
    key = "env:ANTHROPIC_API_KEY"      # a central key, substituted for bridge tokens (literal or env:VAR)
    allow_byok = false                 # refuse clients' own keys (default: the global allow_byok)
    enabled = true

    allow_byok = true                  # clients may use their own provider keys
    send_actor_headers = false         # X-AI-Bridge-Actor-ID / -Metadata-Username upstream

    [users.alice]                      # when any user exists, the proxy requires proxy authentication
    token = "sha256:<hex>"             # the token's SHA-256 (scripts/add-user), or env:VAR holding the token
    groups = ["eng"]

    [budgets]                          # US$ per UTC calendar month; a user's own limit wins over groups'
    users = { alice = 50 }
    groups = { eng = 20 }

    [prices."anthropic/claude-sonnet-4-5"]   # US$ per million tokens; overrides the genai-prices book
    input = 3
    output = 15
    cache_read = 0.3
    cache_write = 3.75                 # 5-minute cache writes
    cache_write_1h = 6

    max_tool_rounds = 16               # upstream calls one request may make while injected tools run
    retention_days = 90                # audit rows older than this are purged (default: kept forever)

    [circuit_breaker]                  # per provider and model; absent: no breaker
    failure_threshold = 5              # consecutive 429/503/504 (529 for Anthropic) or unreachable: open
    interval = 10                      # seconds after which failures in the closed state stop adding up
    timeout = 30                       # seconds open (refusing with 503 and retry-after) before probing
    max_requests = 3                   # half-open probes; that many successes close it, one failure reopens
    keepalive_interval = 10            # seconds between pings on a stream while injected tools run

    [mcp_servers.time]                 # tools injected into bridged requests, named bmcp_<server>_<tool>
    command = "mcp-server-time"        # stdio: started without a shell; or `url` (streamable HTTP)
    args = ["--local-timezone", "UTC"]
    env = { "TZ" = "UTC" }
    allow = "^get_"                    # regexes searched in the tool name; deny wins
    deny = "convert"
    tool_timeout = 60                  # seconds per call

Providers `anthropic` (api.anthropic.com) and `openai` (api.openai.com) exist unless a table of the same name
overrides or disables them. Parsers raise `ValueError`; the addon turns that into `OptionsError`.
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

ProviderType = Literal["anthropic", "openai"]
PROVIDER_TYPES: tuple[ProviderType, ...] = ("anthropic", "openai")
DEFAULT_HOSTS: dict[ProviderType, str] = {"anthropic": "api.anthropic.com", "openai": "api.openai.com"}

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PROVIDER_KEYS = {"type", "host", "upstream", "extra_headers", "key", "allow_byok", "enabled"}
_USER_KEYS = {"token", "groups"}
_BUDGET_KEYS = {"users", "groups"}
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
    "prices",
    "retention_days",
    "circuit_breaker",
}
_BREAKER_KEYS = {"failure_threshold", "interval", "timeout", "max_requests", "enabled"}
DEFAULT_TOOL_TIMEOUT = 60.0
DEFAULT_MAX_TOOL_ROUNDS = 16
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
    upstream: Upstream
    extra_headers: tuple[tuple[str, str], ...] = ()
    key: str | None = field(default=None, repr=False)
    """The central key, substituted upstream for requests authenticated by a bridge token."""
    allow_byok: bool | None = None
    """None: the global setting."""


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
    prices: tuple[tuple[str, PriceOverride], ...] = ()
    retention_days: int | None = None
    """Audit rows of interceptions older than this are purged; None keeps everything."""
    circuit_breaker: CircuitBreakerConfig | None = None

    def provider_for_host(self, host: str) -> Provider | None:
        host = host.lower().rstrip(".")
        for provider in self.providers:
            if provider.host == host:
                return provider
        return None


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


def _enabled(table: dict[str, Any], where: str) -> bool:
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}: enabled must be true or false")
    return enabled


def _parse_provider(name: str, table: Any) -> Provider | None:
    if not isinstance(table, dict):
        raise ValueError(f"providers.{name} must be a table")
    if not _NAME.match(name):
        raise ValueError(f"provider name {name!r} must be lower-case words joined by '-' (e.g. 'openai-eu')")
    if unknown := set(table) - _PROVIDER_KEYS:
        raise ValueError(f"providers.{name}: unknown key(s) {', '.join(sorted(unknown))}")
    if not _enabled(table, f"providers.{name}"):
        return None
    ptype = table.get("type", name if name in PROVIDER_TYPES else None)
    if ptype not in PROVIDER_TYPES:
        raise ValueError(f"providers.{name}: type must be one of {', '.join(PROVIDER_TYPES)}")
    host = table.get("host", DEFAULT_HOSTS[ptype] if name == ptype else None)
    if not isinstance(host, str) or not _HOST.match(host.lower()):
        raise ValueError(f"providers.{name}: host must be a host name such as {DEFAULT_HOSTS[ptype]!r}")
    host = host.lower()
    upstream = table.get("upstream", f"https://{host}")
    if not isinstance(upstream, str):
        raise ValueError(f"providers.{name}: upstream must be a URL string")
    headers = table.get("extra_headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and _HEADER_NAME.match(k) and isinstance(v, str) and not any(c in v for c in "\r\n\0")
        for k, v in headers.items()
    ):
        raise ValueError(f"providers.{name}: extra_headers must map header names to strings")
    try:
        parsed_upstream = parse_upstream(upstream)
    except ValueError as e:
        raise ValueError(f"providers.{name}: {e}") from None
    key = _secret(table["key"], f"providers.{name}.key") if "key" in table else None
    allow_byok = table.get("allow_byok")
    if allow_byok is not None and not isinstance(allow_byok, bool):
        raise ValueError(f"providers.{name}: allow_byok must be true or false")
    return Provider(
        name=name,
        type=ptype,
        host=host,
        upstream=parsed_upstream,
        extra_headers=tuple(headers.items()),
        key=key,
        allow_byok=allow_byok,
    )


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


def hash_token(token: str) -> str:
    # surrogateescape: header bytes that are not UTF-8 reach us as lone surrogates (mitmproxy decodes that way)
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _parse_user(name: str, table: Any) -> User:
    where = f"users.{name}"
    if not USER_NAME.match(name):
        raise ValueError(f"user name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    if unknown := set(table) - _USER_KEYS:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
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


def _dollars(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1_000_000:  # also NaN
        raise ValueError(f"{what} must be an amount of US$ from 0 to 1000000")
    return round(value * 1_000_000)


def _parse_budgets(table: Any) -> Budgets:
    if not isinstance(table, dict):
        raise ValueError("budgets must be a table")
    if unknown := set(table) - _BUDGET_KEYS:
        raise ValueError(f"budgets: unknown key(s) {', '.join(sorted(unknown))}")
    parts = {}
    for kind in _BUDGET_KEYS:
        limits = table.get(kind, {})
        if not isinstance(limits, dict):
            raise ValueError(f"budgets.{kind} must map names to US$ amounts")
        parts[kind] = tuple(sorted((n, _dollars(v, f"budgets.{kind}.{n}")) for n, v in limits.items()))
    return Budgets(**parts)


def _parse_price(name: str, table: Any) -> PriceOverride:
    where = f'prices."{name}"'
    provider, _, model = name.partition("/")
    if provider not in PROVIDER_TYPES or not model:
        raise ValueError(f"{where}: the name must be <provider type>/<model>, e.g. anthropic/claude-sonnet-4-5")
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    if unknown := set(table) - _PRICE_KEYS:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "input" not in table or "output" not in table:
        raise ValueError(f"{where}: input and output prices are required")
    values = {}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:  # also NaN
            raise ValueError(f"{where}.{key} must be a non-negative number of US$ per million tokens")
        values[key] = float(value)
    return PriceOverride(**values)


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


def _parse_breaker(table: Any) -> CircuitBreakerConfig | None:
    if not isinstance(table, dict):
        raise ValueError("circuit_breaker must be a table")
    if unknown := set(table) - _BREAKER_KEYS:
        raise ValueError(f"circuit_breaker: unknown key(s) {', '.join(sorted(unknown))}")
    if not _enabled(table, "circuit_breaker"):
        return None
    values: dict[str, Any] = {}
    for key in ("failure_threshold", "max_requests"):
        value = table.get(key, getattr(CircuitBreakerConfig, key))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
            raise ValueError(f"circuit_breaker.{key} must be a whole number from 1 to 10000")
        values[key] = value
    for key in ("interval", "timeout"):
        value = table.get(key, getattr(CircuitBreakerConfig, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
            raise ValueError(f"circuit_breaker.{key} must be a number of seconds above 0, at most 86400")
        values[key] = float(value)
    return CircuitBreakerConfig(**values)


def _parse_retention(value: Any, budgets: Budgets) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36_500:
        raise ValueError("retention_days must be a whole number of days from 1 to 36500")
    if value < 32 and (budgets.users or budgets.groups):
        # Budgets are rebuilt from this month's rows on start: purging them would forgive spend.
        raise ValueError("retention_days must be at least 32 while budgets are configured")
    return value


def _parse_mcp_server(name: str, table: Any) -> McpServer | None:
    where = f"mcp_servers.{name}"
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    if not _MCP_NAME.match(name):
        raise ValueError(f"MCP server name {name!r} must be letters and digits, optionally joined by '-' or '_'")
    if unknown := set(table) - _MCP_KEYS:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
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
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"{where}: tool_timeout must be a positive number of seconds")
    return McpServer(
        name=name,
        url=url,
        headers=_string_pairs(table.get("headers", {}), f"{where}.headers"),
        command=command,
        args=tuple(args),
        env=_string_pairs(table.get("env", {}), f"{where}.env"),
        allow=_regex(table.get("allow"), f"{where}.allow"),
        deny=_regex(table.get("deny"), f"{where}.deny"),
        tool_timeout=float(timeout),
    )


def parse_config(data: dict[str, Any]) -> Config:
    if unknown := set(data) - _TOP_LEVEL_KEYS:
        raise ValueError(f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    tables: dict[str, Any] = {name: {} for name in PROVIDER_TYPES}
    providers_table = data.get("providers", {})
    if not isinstance(providers_table, dict):
        raise ValueError("providers must be a table of tables")
    tables.update(providers_table)
    providers = [p for name, table in tables.items() if (p := _parse_provider(name, table))]
    hosts = [p.host for p in providers]
    if dupes := sorted({h for h in hosts if hosts.count(h) > 1}):
        raise ValueError(f"several providers claim host(s) {', '.join(dupes)}")
    servers_table = data.get("mcp_servers", {})
    if not isinstance(servers_table, dict):
        raise ValueError("mcp_servers must be a table of tables")
    servers = [s for name, table in sorted(servers_table.items()) if (s := _parse_mcp_server(name, table))]
    rounds = data.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 1000:
        raise ValueError("max_tool_rounds must be a whole number from 1 to 1000")
    keepalive = data.get("keepalive_interval", DEFAULT_KEEPALIVE_INTERVAL)
    if isinstance(keepalive, bool) or not isinstance(keepalive, int | float) or not 0 < keepalive <= 600:
        raise ValueError("keepalive_interval must be a number of seconds from 0 to 600")
    flags = {}
    for flag, default in (("allow_byok", True), ("send_actor_headers", False)):
        flags[flag] = data.get(flag, default)
        if not isinstance(flags[flag], bool):
            raise ValueError(f"{flag} must be true or false")
    users_table = data.get("users", {})
    if not isinstance(users_table, dict):
        raise ValueError("users must be a table of tables")
    users = tuple(_parse_user(name, table) for name, table in sorted(users_table.items()))
    prices_table = data.get("prices", {})
    if not isinstance(prices_table, dict):
        raise ValueError("prices must be a table of tables")
    budgets = _parse_budgets(data.get("budgets", {}))
    return Config(
        providers=tuple(providers),
        mcp_servers=tuple(servers),
        max_tool_rounds=rounds,
        keepalive_interval=float(keepalive),
        users=users,
        budgets=budgets,
        prices=tuple((name, _parse_price(name, table)) for name, table in sorted(prices_table.items())),
        retention_days=_parse_retention(data.get("retention_days"), budgets),
        circuit_breaker=_parse_breaker(data["circuit_breaker"]) if "circuit_breaker" in data else None,
        **flags,
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
