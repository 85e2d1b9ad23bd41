"""The bridge's configuration: a TOML file (option `aibridge_config`) parsed into a frozen `Config`.

    [providers.anthropic]              # name: lower-case words joined by '-'
    type = "anthropic"                 # "anthropic" | "openai"; defaults to the name when that is a type
    host = "api.anthropic.com"         # the host clients call; only provider hosts are TLS-intercepted
    upstream = "https://api.anthropic.com"   # where requests go; the request path is appended
    extra_headers = { "x-team" = "platform" }
    enabled = true

Providers `anthropic` (api.anthropic.com) and `openai` (api.openai.com) exist unless a table of the same name
overrides or disables them. Parsers raise `ValueError`; the addon turns that into `OptionsError`.
"""

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
_PROVIDER_KEYS = {"type", "host", "upstream", "extra_headers", "enabled"}
_TOP_LEVEL_KEYS = {"providers"}


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """Where a provider's requests go: `https://api.anthropic.com`, or `http://127.0.0.1:9000/base`."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    path: str
    """Prefix put before the request path; '' or '/something' without a trailing slash."""

    def url(self, path_and_query: str) -> str:
        default_port = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default_port else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            netloc = f"[{self.host}]" if self.port == default_port else f"[{self.host}]:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}{path_and_query}"


@dataclass(frozen=True, kw_only=True)
class Provider:
    name: str
    type: ProviderType
    host: str
    upstream: Upstream
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Config:
    providers: tuple[Provider, ...] = field(default_factory=tuple)

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


def _parse_provider(name: str, table: Any) -> Provider | None:
    if not isinstance(table, dict):
        raise ValueError(f"providers.{name} must be a table")
    if not _NAME.match(name):
        raise ValueError(f"provider name {name!r} must be lower-case words joined by '-' (e.g. 'openai-eu')")
    if unknown := set(table) - _PROVIDER_KEYS:
        raise ValueError(f"providers.{name}: unknown key(s) {', '.join(sorted(unknown))}")
    if table.get("enabled", True) is False:
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
        isinstance(k, str) and _HEADER_NAME.match(k) and isinstance(v, str) and "\n" not in v
        for k, v in headers.items()
    ):
        raise ValueError(f"providers.{name}: extra_headers must map header names to strings")
    try:
        parsed_upstream = parse_upstream(upstream)
    except ValueError as e:
        raise ValueError(f"providers.{name}: {e}") from None
    return Provider(name=name, type=ptype, host=host, upstream=parsed_upstream, extra_headers=tuple(headers.items()))


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
    return Config(providers=tuple(providers))


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
