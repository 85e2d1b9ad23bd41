"""Which requests are bridged, passed through, or not ours."""

import pytest

from addon.config import parse_config
from addon.providers import Api
from addon.providers.routing import Route, classify

CONFIG = parse_config({"providers": {"openai-eu": {"type": "openai", "host": "eu.api.openai.com"}}})


@pytest.mark.parametrize(
    ("host", "method", "path", "provider", "api"),
    [
        ("api.anthropic.com", "POST", "/v1/messages", "anthropic", Api.ANTHROPIC_MESSAGES),
        ("api.anthropic.com", "POST", "/v1/messages?beta=true", "anthropic", Api.ANTHROPIC_MESSAGES),
        ("api.anthropic.com", "post", "/v1/messages", "anthropic", Api.ANTHROPIC_MESSAGES),
        ("API.Anthropic.COM", "POST", "/v1/messages", "anthropic", Api.ANTHROPIC_MESSAGES),
        ("api.anthropic.com.", "POST", "/v1/messages", "anthropic", Api.ANTHROPIC_MESSAGES),
        ("api.anthropic.com", "POST", "/v1/messages/count_tokens", "anthropic", None),
        ("api.anthropic.com", "POST", "/v1/messages/count_tokens?beta=true", "anthropic", None),
        ("api.anthropic.com", "GET", "/v1/messages", "anthropic", None),
        ("api.anthropic.com", "GET", "/v1/models", "anthropic", None),
        ("api.anthropic.com", "POST", "/v1/messages/", "anthropic", None),
        ("api.anthropic.com", "POST", "/v1/chat/completions", "anthropic", None),
        ("api.openai.com", "POST", "/v1/chat/completions", "openai", Api.OPENAI_CHAT),
        ("Api.OpenAI.com", "POST", "/v1/chat/completions?x=1", "openai", Api.OPENAI_CHAT),
        ("api.openai.com", "POST", "/v1/responses", "openai", Api.OPENAI_RESPONSES),
        ("api.openai.com", "POST", "/v1/responses?x=1", "openai", Api.OPENAI_RESPONSES),
        ("api.openai.com", "GET", "/v1/responses", "openai", None),  # a WebSocket upgrade
        ("api.openai.com", "POST", "/v1/responses/compact", "openai", None),
        ("api.anthropic.com", "POST", "/v1/responses", "anthropic", None),
        ("api.openai.com", "GET", "/v1/models", "openai", None),
        ("api.openai.com", "POST", "/v1/messages", "openai", None),
        ("eu.api.openai.com", "POST", "/v1/chat/completions", "openai-eu", Api.OPENAI_CHAT),
    ],
)
def test_provider_hosts(host: str, method: str, path: str, provider: str, api: Api | None) -> None:
    route = classify(CONFIG, host, method, path)
    assert isinstance(route, Route)
    assert route.provider.name == provider
    assert route.api is api
    assert route.bridged is (api is not None and api is not Api.OPENAI_RESPONSES)


@pytest.mark.parametrize("host", ["example.com", "anthropic.com", "api.anthropic.com.evil.net", "openai.com", ""])
def test_unknown_host_is_not_ours(host: str) -> None:
    assert classify(CONFIG, host, "POST", "/v1/messages") is None


def test_disabled_provider_host_is_not_ours() -> None:
    config = parse_config({"providers": {"anthropic": {"enabled": False}}})
    assert classify(config, "api.anthropic.com", "POST", "/v1/messages") is None
    assert classify(config, "api.openai.com", "POST", "/v1/chat/completions") is not None
