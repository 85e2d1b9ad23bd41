"""Which provider a request is for, and whether the bridge handles it or passes it through. Pure."""

from dataclasses import dataclass

from addon.config import Config, Provider
from addon.providers import FAMILIES, Api, Family


@dataclass(frozen=True)
class Route:
    provider: Provider
    api: Api | None
    """None: a passthrough route nobody records (models, count_tokens, anything else on the host)."""

    @property
    def bridged(self) -> bool:
        return self.api is not None and not self.api.tapped

    @property
    def family(self) -> Family:
        return FAMILIES[self.provider.type]


def classify(config: Config, host: str, method: str, path: str) -> Route | None:
    """Route a request for `host`; None when the host is not a provider's.

    Only `POST` to the exact API path is recorded; the query string is ignored (Claude Code sends
    `/v1/messages?beta=true`), and `/v1/messages/count_tokens` is passthrough like every other path (so is
    a WebSocket upgrade: a `GET`).
    """
    provider = config.provider_for_host(host)
    if provider is None:
        return None
    bare_path = path.split("?", 1)[0]
    api = FAMILIES[provider.type].endpoints.get(bare_path) if method.upper() == "POST" else None
    return Route(provider, api)
