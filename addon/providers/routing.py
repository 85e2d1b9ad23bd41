"""Which provider a request is for, and whether the bridge handles it or passes it through. Pure."""

import enum
from dataclasses import dataclass

from addon.config import Config, Provider


class Api(enum.Enum):
    """The provider APIs the bridge records: bridged ones (parsed, tools injected), and tapped ones (passed
    through unchanged, read for the audit on the way)."""

    ANTHROPIC_MESSAGES = "anthropic-messages"
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"

    @property
    def tapped(self) -> bool:
        return self is Api.OPENAI_RESPONSES


_RECORDED: dict[tuple[str, str], Api] = {
    ("anthropic", "/v1/messages"): Api.ANTHROPIC_MESSAGES,
    ("openai", "/v1/chat/completions"): Api.OPENAI_CHAT,
    ("openai", "/v1/responses"): Api.OPENAI_RESPONSES,
}


@dataclass(frozen=True)
class Route:
    provider: Provider
    api: Api | None
    """None: a passthrough route nobody records (models, count_tokens, anything else on the host)."""

    @property
    def bridged(self) -> bool:
        return self.api is not None and not self.api.tapped


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
    api = _RECORDED.get((provider.type, bare_path)) if method.upper() == "POST" else None
    return Route(provider, api)
