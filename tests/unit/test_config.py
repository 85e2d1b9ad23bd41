"""The TOML configuration: defaults, overrides, and helpful errors."""

from pathlib import Path
from typing import Any

import pytest

from addon.config import Upstream, load_config, parse_config, parse_upstream


def by_name(data: dict[str, Any]) -> dict[str, Any]:
    return {p.name: p for p in parse_config(data).providers}


def test_defaults_are_two_providers() -> None:
    providers = by_name({})
    assert list(providers) == ["anthropic", "openai"]
    anthropic, openai = providers["anthropic"], providers["openai"]
    assert (anthropic.type, anthropic.host, anthropic.extra_headers) == ("anthropic", "api.anthropic.com", ())
    assert anthropic.upstream == Upstream(scheme="https", host="api.anthropic.com", port=443, path="")
    assert (openai.type, openai.host) == ("openai", "api.openai.com")
    assert openai.upstream.url("/v1/chat/completions") == "https://api.openai.com/v1/chat/completions"


def test_empty_providers_table_is_the_defaults() -> None:
    assert parse_config({"providers": {}}) == parse_config({})


def test_override_upstream_only() -> None:
    providers = by_name({"providers": {"anthropic": {"upstream": "http://127.0.0.1:9000/base/"}}})
    anthropic = providers["anthropic"]
    assert anthropic.host == "api.anthropic.com"
    assert anthropic.upstream == Upstream(scheme="http", host="127.0.0.1", port=9000, path="/base")
    assert anthropic.upstream.url("/v1/messages?beta=true") == "http://127.0.0.1:9000/base/v1/messages?beta=true"
    assert providers["openai"].upstream.host == "api.openai.com"


def test_disable_a_provider() -> None:
    assert list(by_name({"providers": {"openai": {"enabled": False}}})) == ["anthropic"]
    assert list(by_name({"providers": {"openai": {"enabled": True}}})) == ["anthropic", "openai"]


def test_additional_provider_with_extra_headers() -> None:
    providers = by_name(
        {
            "providers": {
                "openai-eu": {
                    "type": "openai",
                    "host": "EU.Example.COM",
                    "upstream": "https://gateway.example.com:8443/openai",
                    "extra_headers": {"x-team": "platform", "X-Trace": "1"},
                }
            }
        }
    )
    eu = providers["openai-eu"]
    assert eu.type == "openai"
    assert eu.host == "eu.example.com"
    assert eu.extra_headers == (("x-team", "platform"), ("X-Trace", "1"))
    assert eu.upstream.url("/v1/chat/completions") == "https://gateway.example.com:8443/openai/v1/chat/completions"


def test_provider_for_host() -> None:
    config = parse_config({"providers": {"openai-eu": {"type": "openai", "host": "eu.example.com"}}})
    assert config.provider_for_host("EU.Example.com.") is config.providers[2]
    assert config.provider_for_host("api.openai.com") is config.providers[1]
    assert config.provider_for_host("example.com") is None


def test_custom_provider_upstream_defaults_to_its_host() -> None:
    provider = by_name({"providers": {"claude-proxy": {"type": "anthropic", "host": "llm.internal"}}})["claude-proxy"]
    assert provider.upstream.url("/v1/messages") == "https://llm.internal/v1/messages"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"provider": {}}, "unknown top-level key(s) provider"),
        ({"providers": 5}, "providers must be a table"),
        ({"providers": {"anthropic": "yes"}}, "providers.anthropic must be a table"),
        ({"providers": {"OpenAI_EU": {"type": "openai", "host": "x.example"}}}, "lower-case words joined by '-'"),
        ({"providers": {"-eu": {"type": "openai", "host": "x.example"}}}, "provider name '-eu'"),
        ({"providers": {"anthropic": {"hostname": "x"}}}, "providers.anthropic: unknown key(s) hostname"),
        ({"providers": {"eu": {"host": "x.example"}}}, "providers.eu: type must be one of anthropic, openai"),
        ({"providers": {"eu": {"type": "gemini", "host": "x.example"}}}, "type must be one of anthropic, openai"),
        ({"providers": {"eu": {"type": "openai"}}}, "providers.eu: host must be a host name such as 'api.openai.com'"),
        ({"providers": {"anthropic": {"host": "https://api.anthropic.com"}}}, "providers.anthropic: host must be"),
        ({"providers": {"anthropic": {"host": "api.anthropic.com:443"}}}, "host must be"),
        ({"providers": {"anthropic": {"host": "a b.com"}}}, "host must be"),
        ({"providers": {"anthropic": {"host": ""}}}, "host must be"),
        ({"providers": {"anthropic": {"host": 1}}}, "host must be"),
        ({"providers": {"anthropic": {"upstream": 5}}}, "providers.anthropic: upstream must be a URL string"),
        ({"providers": {"anthropic": {"upstream": "ftp://x.example"}}}, "scheme must be http or https"),
        ({"providers": {"anthropic": {"upstream": "api.anthropic.com"}}}, "scheme must be http or https"),
        ({"providers": {"anthropic": {"upstream": "https://"}}}, "no host"),
        ({"providers": {"anthropic": {"upstream": "https://x.example/?a=1"}}}, "must not carry a query"),
        ({"providers": {"anthropic": {"upstream": "https://x.example/#f"}}}, "must not carry a query"),
        ({"providers": {"anthropic": {"upstream": "https://u:p@x.example"}}}, "credentials"),
        ({"providers": {"anthropic": {"upstream": "https://x.example:99999"}}}, "providers.anthropic: upstream"),
        ({"providers": {"anthropic": {"extra_headers": "x-a: 1"}}}, "extra_headers must map header names to strings"),
        ({"providers": {"anthropic": {"extra_headers": {"bad name": "1"}}}}, "extra_headers must map"),
        ({"providers": {"anthropic": {"extra_headers": {"x-a": 1}}}}, "extra_headers must map"),
        ({"providers": {"anthropic": {"extra_headers": {"x-a": "1\nx-b: 2"}}}}, "extra_headers must map"),
    ],
)
def test_bad_config_raises_a_helpful_value_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_config(data)
    assert message in str(info.value)


@pytest.mark.parametrize("value", ["false", "no", 0, 1, "true"])
def test_enabled_must_be_a_boolean(value: object) -> None:
    """`enabled = "false"` must not silently leave the provider enabled."""
    with pytest.raises(ValueError, match=r"providers\.openai: enabled must be true or false"):
        parse_config({"providers": {"openai": {"enabled": value}}})


@pytest.mark.parametrize("value", ["1\rx-b: 2", "a\r", "a\x00b"])
def test_extra_header_values_must_be_valid_header_values(value: str) -> None:
    """CR and NUL are as invalid in a field value as LF; httpx would refuse them on every request."""
    with pytest.raises(ValueError, match="extra_headers must map header names to strings"):
        parse_config({"providers": {"anthropic": {"extra_headers": {"x-a": value}}}})


def test_duplicate_hosts_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"several providers claim host\(s\) api.anthropic.com"):
        parse_config({"providers": {"claude-2": {"type": "anthropic", "host": "API.anthropic.com"}}})


def test_moving_a_default_provider_frees_its_host() -> None:
    providers = by_name(
        {
            "providers": {
                "anthropic": {"host": "old.example"},
                "claude-2": {"type": "anthropic", "host": "api.anthropic.com"},
            }
        }
    )
    assert providers["claude-2"].host == "api.anthropic.com"


@pytest.mark.parametrize(
    ("upstream", "path", "url"),
    [
        (Upstream(scheme="https", host="api.x.com", port=443, path=""), "/v1/m", "https://api.x.com/v1/m"),
        (
            Upstream(scheme="https", host="api.x.com", port=8443, path="/p"),
            "/v1/m?a=1",
            "https://api.x.com:8443/p/v1/m?a=1",
        ),
        (Upstream(scheme="http", host="127.0.0.1", port=80, path="/a/b"), "/v1/m", "http://127.0.0.1/a/b/v1/m"),
        (Upstream(scheme="http", host="127.0.0.1", port=443, path=""), "/v1/m", "http://127.0.0.1:443/v1/m"),
        (Upstream(scheme="http", host="::1", port=9000, path=""), "/v1/m", "http://[::1]:9000/v1/m"),
        (Upstream(scheme="https", host="::1", port=443, path=""), "/v1/m", "https://[::1]/v1/m"),
    ],
)
def test_upstream_url(upstream: Upstream, path: str, url: str) -> None:
    assert upstream.url(path) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://API.Example.com", Upstream(scheme="https", host="api.example.com", port=443, path="")),
        ("http://h.example", Upstream(scheme="http", host="h.example", port=80, path="")),
        ("http://[::1]:8080/base//", Upstream(scheme="http", host="::1", port=8080, path="/base")),
    ],
)
def test_parse_upstream(url: str, expected: Upstream) -> None:
    assert parse_upstream(url) == expected


def test_load_config_without_a_path_is_the_defaults() -> None:
    assert load_config(None) == parse_config({})
    assert load_config("") == parse_config({})


def test_load_config_reads_toml(tmp_path: Path) -> None:
    path = tmp_path / "aibridge.toml"
    path.write_text(
        '[providers.anthropic]\nupstream = "http://127.0.0.1:9000"\nextra_headers = { "x-team" = "platform" }\n'
        "[providers.openai]\nenabled = false\n",
        encoding="utf-8",
    )
    config = load_config(str(path))
    (anthropic,) = config.providers
    assert anthropic.upstream.url("/v1/messages") == "http://127.0.0.1:9000/v1/messages"
    assert anthropic.extra_headers == (("x-team", "platform"),)


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ValueError, match="cannot read") as info:
        load_config(str(path))
    assert str(path) in str(info.value)


def test_load_config_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[providers.anthropic\nhost = ", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_load_config_invalid_content_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[providers.anthropic]\nhost = "not a host"\n', encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: providers.anthropic: host must be")
