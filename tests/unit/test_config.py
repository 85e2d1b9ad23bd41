"""The TOML configuration: defaults, overrides, and helpful errors."""

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from addon import config as config_module
from addon.config import (
    TOKEN_PREFIX,
    Budgets,
    CircuitBreakerConfig,
    PriceOverride,
    Upstream,
    User,
    hash_token,
    load_config,
    parse_config,
    parse_upstream,
)

OTHERS = ["azure", "chatgpt", "copilot", "vertex", "foundry", "bedrock", "bedrock-mantle", "gemini", "code-assist"]
"""The default providers besides anthropic and openai."""


def by_name(data: dict[str, Any]) -> dict[str, Any]:
    return {p.name: p for p in parse_config(data).providers}


def test_defaults_are_one_provider_per_family() -> None:
    providers = by_name({})
    assert list(providers) == ["anthropic", "openai", *OTHERS]
    assert {p.host for p in providers.values()} == {
        "api.anthropic.com",
        "api.openai.com",
        "*.openai.azure.com",
        "chatgpt.com",
        "api*.githubcopilot.com",
        "*aiplatform*.googleapis.com",
        "*.services.ai.azure.com",
        "bedrock-runtime.*.amazonaws.com",
        "bedrock-mantle.*.api.aws",
        "generativelanguage.googleapis.com",
        "cloudcode-pa.googleapis.com",
    }
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
    assert list(by_name({"providers": {"openai": {"enabled": False}}})) == ["anthropic", *OTHERS]
    assert list(by_name({"providers": {"openai": {"enabled": True}}})) == ["anthropic", "openai", *OTHERS]


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
    by = {p.name: p for p in config.providers}
    assert config.provider_for_host("EU.Example.com.") is by["openai-eu"]
    assert config.provider_for_host("api.openai.com") is by["openai"]
    assert config.provider_for_host("example.com") is None


def test_host_patterns_match_and_the_exact_host_wins() -> None:
    config = parse_config({"providers": {"mine": {"type": "azure", "host": "team.openai.azure.com"}}})
    by = {p.name: p for p in config.providers}
    assert config.provider_for_host("other.openai.azure.com") is by["azure"]  # the default pattern
    assert config.provider_for_host("team.openai.azure.com") is by["mine"]
    assert config.provider_for_host("openai.azure.com") is None  # `*.` needs a label before the dot
    assert config.provider_for_host("api.githubcopilot.com") is by["copilot"]
    assert config.provider_for_host("api.business.githubcopilot.com") is by["copilot"]
    assert by["azure"].upstream is None  # a pattern goes to the host the client called
    with pytest.raises(ValueError, match="host must be a host name"):
        parse_config({"providers": {"x": {"type": "openai", "host": "*/x"}}})


def test_families_without_central_keys_refuse_one() -> None:
    with pytest.raises(ValueError, match=r"providers\.copilot: copilot takes no central key"):
        parse_config({"providers": {"copilot": {"key": "ghu_x"}}})


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
        ({"providers": {"eu": {"type": "palm", "host": "x.example"}}}, "type must be one of anthropic, openai"),
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


def test_a_configured_provider_on_a_default_host_takes_it_over() -> None:
    providers = by_name({"providers": {"claude": {"type": "anthropic", "host": "API.anthropic.com"}}})
    assert sorted(providers) == sorted(["claude", "openai", *OTHERS])
    assert providers["claude"].host == "api.anthropic.com"
    # A default renamed onto the other's host takes that one over too; its own host is then nobody's.
    assert sorted(by_name({"providers": {"openai": {"host": "api.anthropic.com"}}})) == sorted(["openai", *OTHERS])


def test_two_configured_providers_on_one_host_are_rejected_naming_both() -> None:
    tables = {"a": {"type": "openai", "host": "x.example"}, "b": {"type": "anthropic", "host": "X.example"}}
    with pytest.raises(ValueError) as e:
        parse_config({"providers": tables})
    assert str(e.value) == (
        "providers.a and providers.b both claim host x.example: give one of them another host, or disable one "
        "(enabled = false)"
    )
    with pytest.raises(ValueError, match=r"providers\.anthropic and providers\.claude both claim host api\.anthropic"):
        parse_config({"providers": {"anthropic": {}, "claude": {"type": "anthropic", "host": "api.anthropic.com"}}})
    tables["b"]["enabled"] = False
    assert sorted(by_name({"providers": tables})) == sorted(["a", "anthropic", "openai", *OTHERS])


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
    (anthropic,) = (p for p in config.providers if p.name not in OTHERS)
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


# --- users, keys, budgets and prices ---------------------------------------------------------------------

TOKEN = "aib_0123456789abcdefghijklmnopqrstuvwxyz"
TOKEN_HASH = hash_token(TOKEN)


def test_hash_token() -> None:
    assert hashlib.sha256(TOKEN.encode()).hexdigest() == TOKEN_HASH.removeprefix("sha256:")
    assert hash_token("test") == "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert TOKEN_PREFIX == "aib_"


def test_no_users_budgets_or_prices_by_default() -> None:
    config = parse_config({})
    assert (config.users, config.budgets, config.prices) == ((), Budgets(), ())
    assert (config.allow_byok, config.send_actor_headers) == (True, False)
    assert all(p.key is None and p.allow_byok is None for p in config.providers)


def test_users_with_a_hash() -> None:
    config = parse_config(
        {
            "users": {
                "bob": {"token": TOKEN_HASH},
                "alice.smith": {"token": TOKEN_HASH, "groups": ["eng", "ops"]},
            }
        }
    )
    assert config.users == (
        User(name="alice.smith", token_hash=TOKEN_HASH, groups=("eng", "ops")),
        User(name="bob", token_hash=TOKEN_HASH, groups=()),
    )
    assert TOKEN_HASH not in repr(config.users[0])


def test_user_token_from_the_environment_is_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALICE_TOKEN", f"  {TOKEN}\n")
    (alice,) = parse_config({"users": {"alice": {"token": "env:ALICE_TOKEN"}}}).users
    assert alice.token_hash == TOKEN_HASH


@pytest.mark.parametrize("value", [None, ""])
def test_user_token_from_a_missing_environment_variable(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("ALICE_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ALICE_TOKEN", value)
    with pytest.raises(ValueError, match=r"^users\.alice\.token: environment variable ALICE_TOKEN is not set$"):
        parse_config({"users": {"alice": {"token": "env:ALICE_TOKEN"}}})


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ({"alice": {"token": TOKEN}}, "users.alice: token must be sha256:<64 hex digits>"),  # the token itself
        ({"alice": {"token": TOKEN_HASH.upper()}}, "token must be sha256"),
        ({"alice": {"token": TOKEN_HASH[:-1]}}, "token must be sha256"),
        ({"alice": {"token": TOKEN_HASH + "0"}}, "token must be sha256"),
        ({"alice": {"token": "sha256:" + "g" * 64}}, "token must be sha256"),
        ({"alice": {"token": 5}}, "token must be sha256"),
        ({"alice": {}}, "users.alice: token must be sha256"),
        ({"alice": {"token": "env:"}}, "users.alice.token: environment variable  is not set"),
        ({"alice": {"token": TOKEN_HASH, "group": ["eng"]}}, "users.alice: unknown key(s) group"),
        ({"alice": {"token": TOKEN_HASH, "groups": "eng"}}, "users.alice: groups must be a list of names"),
        ({"alice": {"token": TOKEN_HASH, "groups": ["eng", ""]}}, "groups must be a list of names"),
        ({"alice": {"token": TOKEN_HASH, "groups": [1]}}, "groups must be a list of names"),
        ({"alice": TOKEN_HASH}, "users.alice must be a table"),
        ({"al ice": {"token": TOKEN_HASH}}, "user name 'al ice'"),
        ({"-alice": {"token": TOKEN_HASH}}, "user name '-alice'"),
        ({"a" * 65: {"token": TOKEN_HASH}}, "at most 64"),
    ],
)
def test_bad_users(users: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_config({"users": users})
    assert message in str(info.value)


def test_users_must_be_a_table() -> None:
    with pytest.raises(ValueError, match="users must be a table of tables"):
        parse_config({"users": ["alice"]})


def test_budgets_in_micro_dollars() -> None:
    budgets = parse_config(
        {"budgets": {"users": {"bob": 50, "alice": 0.5, "carol": 0}, "groups": {"eng": 20.25, "ops": 1_000_000}}}
    ).budgets
    assert budgets == Budgets(
        users=(("alice", 500_000), ("bob", 50_000_000), ("carol", 0)),
        groups=(("eng", 20_250_000), ("ops", 1_000_000_000_000)),
    )
    assert parse_config({"budgets": {}}).budgets == Budgets()
    assert parse_config({"budgets": {"users": {"a": 0.1 + 0.2}}}).budgets.users == (("a", 300_000),)


@pytest.mark.parametrize(
    ("budgets", "message"),
    [
        ({"users": {"bob": -1}}, "budgets.users.bob must be an amount of US$ from 0 to 1000000"),
        ({"groups": {"eng": 1_000_001}}, "budgets.groups.eng must be an amount of US$"),
        ({"users": {"bob": "50"}}, "budgets.users.bob must be an amount"),
        ({"users": {"bob": True}}, "budgets.users.bob must be an amount"),
        ({"users": {"bob": float("nan")}}, "budgets.users.bob must be an amount"),
        ({"users": {"bob": float("inf")}}, "budgets.users.bob must be an amount"),
        ({"users": 50}, "budgets.users must map names to US$ amounts"),
        ({"group": {"eng": 5}}, "budgets: unknown key(s) group"),
    ],
)
def test_bad_budgets(budgets: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_config({"budgets": budgets})
    assert message in str(info.value)


def test_budgets_must_be_a_table() -> None:
    with pytest.raises(ValueError, match="budgets must be a table"):
        parse_config({"budgets": 50})


def test_prices() -> None:
    config = parse_config(
        {
            "prices": {
                "openai/my-finetune": {"input": 1.5, "output": 6},
                "anthropic/claude-sonnet-4-5": {
                    "input": 3,
                    "output": 15,
                    "cache_read": 0.3,
                    "cache_write": 3.75,
                    "cache_write_1h": 6,
                },
                "openai/org/model:v1": {"input": 0, "output": 0},  # the model name is free-form
            }
        }
    )
    assert config.prices == (
        (
            "anthropic/claude-sonnet-4-5",
            PriceOverride(input=3, output=15, cache_read=0.3, cache_write=3.75, cache_write_1h=6),
        ),
        ("openai/my-finetune", PriceOverride(input=1.5, output=6)),
        ("openai/org/model:v1", PriceOverride(input=0, output=0)),
    )
    assert all(isinstance(v, float) for _, p in config.prices for v in (p.input, p.output))


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (
            {"claude-sonnet-4-5": {"input": 3, "output": 15}},
            "the name must be <anthropic or openai or aws or google>/<model>",
        ),
        ({"palm/pro": {"input": 3, "output": 15}}, "the name must be <anthropic or openai or aws or google>/<model>"),
        ({"anthropic/": {"input": 3, "output": 15}}, "the name must be <anthropic or openai or aws or google>/<model>"),
        (
            {"openai-eu/gpt-4.1": {"input": 3, "output": 15}},
            "the name must be <anthropic or openai or aws or google>/<model>",
        ),
        ({"openai/m": {"input": 3}}, 'prices."openai/m": input and output prices are required'),
        ({"openai/m": {"output": 3}}, "input and output prices are required"),
        ({"openai/m": {"input": -1, "output": 3}}, 'prices."openai/m".input must be a non-negative number'),
        ({"openai/m": {"input": 1, "output": 3, "cache_read": -0.1}}, 'prices."openai/m".cache_read must be'),
        ({"openai/m": {"input": "1", "output": 3}}, "input must be a non-negative number"),
        ({"openai/m": {"input": True, "output": 3}}, "input must be a non-negative number"),
        ({"openai/m": {"input": float("nan"), "output": 3}}, "input must be a non-negative number"),  # TOML `nan`
        ({"openai/m": {"input": 1, "output": float("inf")}}, "output must be a non-negative number"),  # TOML `inf`
        ({"openai/m": {"input": 1, "output": 3, "cache_write_5m": 1}}, "unknown key(s) cache_write_5m"),
        ({"openai/m": 3}, 'prices."openai/m" must be a table'),
    ],
)
def test_bad_prices(prices: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_config({"prices": prices})
    assert message in str(info.value)


def test_prices_must_be_a_table() -> None:
    with pytest.raises(ValueError, match="prices must be a table of tables"):
        parse_config({"prices": [1]})


def test_provider_key_literal_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_CENTRAL_KEY", " sk-proj-from-env \n")
    providers = by_name(
        {"providers": {"anthropic": {"key": "sk-ant-literal"}, "openai": {"key": "env:OPENAI_CENTRAL_KEY"}}}
    )
    assert (providers["anthropic"].key, providers["openai"].key) == ("sk-ant-literal", "sk-proj-from-env")
    assert "sk-ant-literal" not in repr(providers["anthropic"])


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "env:NO_SUCH_VAR_FOR_AIBRIDGE",
            "providers.openai.key: environment variable NO_SUCH_VAR_FOR_AIBRIDGE is not set",
        ),
        ("", "providers.openai.key must be a non-empty string (or env:VAR)"),
        ("  ", "providers.openai.key must be a non-empty string"),
        (5, "providers.openai.key must be a non-empty string"),
        (None, "providers.openai.key must be a non-empty string"),
    ],
)
def test_bad_provider_key(monkeypatch: pytest.MonkeyPatch, key: Any, message: str) -> None:
    monkeypatch.delenv("NO_SUCH_VAR_FOR_AIBRIDGE", raising=False)
    with pytest.raises(ValueError) as info:
        parse_config({"providers": {"openai": {"key": key}}})
    assert message in str(info.value)


def test_allow_byok_global_and_per_provider() -> None:
    config = parse_config(
        {"allow_byok": False, "providers": {"anthropic": {"allow_byok": True}, "openai": {"allow_byok": False}}}
    )
    assert config.allow_byok is False
    assert [p.allow_byok for p in config.providers] == [True, False] + [None] * len(OTHERS)
    assert parse_config({"allow_byok": True}).allow_byok is True


@pytest.mark.parametrize("value", ["false", 0, 1, "no", None])
def test_allow_byok_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^allow_byok must be true or false$"):
        parse_config({"allow_byok": value})
    with pytest.raises(ValueError, match=r"^providers\.anthropic: allow_byok must be true or false$"):
        parse_config({"providers": {"anthropic": {"allow_byok": value if value is not None else "true"}}})


@pytest.mark.parametrize("value", ["true", 1, 0, None])
def test_send_actor_headers_must_be_a_boolean(value: Any) -> None:
    assert parse_config({"send_actor_headers": True}).send_actor_headers is True
    with pytest.raises(ValueError, match=r"^send_actor_headers must be true or false$"):
        parse_config({"send_actor_headers": value})


def test_load_config_with_users_budgets_and_prices(tmp_path: Path) -> None:
    path = tmp_path / "aibridge.toml"
    path.write_text(
        f'allow_byok = false\nsend_actor_headers = true\n\n[providers.anthropic]\nkey = "sk-ant-x"\n\n'
        f'[users.alice]\ntoken = "{TOKEN_HASH}"\ngroups = ["eng"]\n\n'
        "[budgets]\nusers = { alice = 50 }\ngroups = { eng = 20 }\n\n"
        '[prices."openai/my-finetune"]\ninput = 1.5\noutput = 6\ncache_write_1h = 3\n',
        encoding="utf-8",
    )
    config = load_config(str(path))
    assert (config.allow_byok, config.send_actor_headers, config.providers[0].key) == (False, True, "sk-ant-x")
    assert config.users == (User(name="alice", token_hash=TOKEN_HASH, groups=("eng",)),)
    assert config.budgets == Budgets(users=(("alice", 50_000_000),), groups=(("eng", 20_000_000),))
    assert config.prices == (("openai/my-finetune", PriceOverride(input=1.5, output=6, cache_write_1h=3)),)


def test_circuit_breaker_and_retention_are_off_by_default() -> None:
    config = parse_config({})
    assert config.circuit_breaker is None and config.retention_days is None


def test_circuit_breaker_defaults_and_overrides() -> None:
    assert parse_config({"circuit_breaker": {}}).circuit_breaker == CircuitBreakerConfig(
        failure_threshold=5, interval=10.0, timeout=30.0, max_requests=3
    )
    table = {"failure_threshold": 2, "interval": 1.5, "timeout": 60, "max_requests": 1}
    assert parse_config({"circuit_breaker": table}).circuit_breaker == CircuitBreakerConfig(
        failure_threshold=2, interval=1.5, timeout=60.0, max_requests=1
    )
    assert parse_config({"circuit_breaker": {"enabled": False}}).circuit_breaker is None
    assert parse_config({"retention_days": 90}).retention_days == 90


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"circuit_breaker": 5}, "circuit_breaker must be a table"),
        ({"circuit_breaker": {"threshold": 5}}, "circuit_breaker: unknown key(s) threshold"),
        ({"circuit_breaker": {"failure_threshold": 0}}, "circuit_breaker.failure_threshold must be a whole number"),
        ({"circuit_breaker": {"max_requests": 1.5}}, "circuit_breaker.max_requests must be a whole number"),
        ({"circuit_breaker": {"timeout": 0}}, "circuit_breaker.timeout must be a number of seconds"),
        ({"circuit_breaker": {"interval": True}}, "circuit_breaker.interval must be a number of seconds"),
        ({"retention_days": 0}, "retention_days must be a whole number of days"),
        ({"retention_days": "30"}, "retention_days must be a whole number of days"),
        ({"retention_days": 31, "budgets": {"users": {"a": 1}}}, "retention_days must be at least 32 while budgets"),
    ],
)
def test_bad_breaker_or_retention(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_config(data)
    assert message in str(e.value)


# --- the shared value checks: exact messages at every bound ------------------------------------------------


def error(data: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as info:
        parse_config(data)
    return str(info.value)


ROUNDS = "max_tool_rounds must be a whole number from 1 to 1000"
KEEPALIVE = "keepalive_interval must be a number of seconds from 0 to 600"
RETENTION = "retention_days must be a whole number of days from 1 to 36500"
THRESHOLD = "circuit_breaker.failure_threshold must be a whole number from 1 to 10000"
INTERVAL = "circuit_breaker.interval must be a number of seconds above 0, at most 86400"
TOOL_TIMEOUT = "mcp_servers.s: tool_timeout must be a positive number of seconds"
DOLLARS = "budgets.users.bob must be an amount of US$ from 0 to 1000000"
PRICE = 'prices."openai/m".input must be a non-negative number of US$ per million tokens'


def server(**keys: Any) -> dict[str, Any]:
    return {"mcp_servers": {"s": {"command": "c", **keys}}}


def price(value: Any) -> dict[str, Any]:
    return {"prices": {"openai/m": {"input": value, "output": 1}}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # bool is an int to Python, never a number here
        ({"max_tool_rounds": True}, ROUNDS),
        ({"keepalive_interval": True}, KEEPALIVE),
        ({"retention_days": True}, RETENTION),
        ({"circuit_breaker": {"failure_threshold": True}}, THRESHOLD),
        ({"circuit_breaker": {"interval": False}}, INTERVAL),
        (server(tool_timeout=True), TOOL_TIMEOUT),
        ({"budgets": {"users": {"bob": False}}}, DOLLARS),
        (price(False), PRICE),
        # a float is no whole number, even when integral
        ({"max_tool_rounds": 16.0}, ROUNDS),
        ({"retention_days": 90.0}, RETENTION),
        ({"circuit_breaker": {"failure_threshold": 5.0}}, THRESHOLD),
        # just outside each bound
        ({"max_tool_rounds": 0}, ROUNDS),
        ({"max_tool_rounds": 1001}, ROUNDS),
        ({"keepalive_interval": 0}, KEEPALIVE),
        ({"keepalive_interval": 600.5}, KEEPALIVE),
        ({"retention_days": 36_501}, RETENTION),
        ({"circuit_breaker": {"failure_threshold": 10_001}}, THRESHOLD),
        ({"circuit_breaker": {"interval": 86_400.5}}, INTERVAL),
        ({"circuit_breaker": {"interval": 0}}, INTERVAL),
        (server(tool_timeout=0), TOOL_TIMEOUT),
        (server(tool_timeout=-1), TOOL_TIMEOUT),
        ({"budgets": {"users": {"bob": 1_000_000.5}}}, DOLLARS),
        (price(-0.001), PRICE),
        # NaN and infinities (TOML `nan`, `inf`, `-inf`)
        ({"keepalive_interval": math.nan}, KEEPALIVE),
        ({"keepalive_interval": math.inf}, KEEPALIVE),
        ({"circuit_breaker": {"interval": math.nan}}, INTERVAL),
        ({"circuit_breaker": {"interval": math.inf}}, INTERVAL),
        (server(tool_timeout=-math.inf), TOOL_TIMEOUT),
        ({"budgets": {"users": {"bob": -math.inf}}}, DOLLARS),
        (price(-math.inf), PRICE),
        # not numbers at all
        ({"max_tool_rounds": "16"}, ROUNDS),
        ({"keepalive_interval": None}, KEEPALIVE),
        (server(tool_timeout="60"), TOOL_TIMEOUT),
        (price([1]), PRICE),
    ],
)
def test_number_checks_exact_messages(data: dict[str, Any], message: str) -> None:
    assert error(data) == message


def test_numbers_at_their_bounds_are_accepted() -> None:
    low = parse_config({"max_tool_rounds": 1, "keepalive_interval": 1e-9, "retention_days": 1})
    assert (low.max_tool_rounds, low.keepalive_interval, low.retention_days) == (1, 1e-9, 1)
    high = parse_config({"max_tool_rounds": 1000, "keepalive_interval": 600, "retention_days": 36_500})
    assert (high.max_tool_rounds, high.keepalive_interval, high.retention_days) == (1000, 600.0, 36_500)
    assert isinstance(high.keepalive_interval, float)
    breaker = parse_config(
        {"circuit_breaker": {"failure_threshold": 10_000, "max_requests": 1, "interval": 86_400, "timeout": 0.001}}
    ).circuit_breaker
    assert breaker == CircuitBreakerConfig(failure_threshold=10_000, max_requests=1, interval=86_400.0, timeout=0.001)
    assert isinstance(breaker.failure_threshold, int) and isinstance(breaker.interval, float)
    assert parse_config(server(tool_timeout=5)).mcp_servers[0].tool_timeout == 5.0
    assert parse_config({"budgets": {"users": {"bob": 1_000_000}}}).budgets.users == (("bob", 10**12),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": []}, "providers must be a table of tables"),
        ({"mcp_servers": "time"}, "mcp_servers must be a table of tables"),
        ({"users": ["alice"]}, "users must be a table of tables"),
        ({"prices": [1]}, "prices must be a table of tables"),
        ({"providers": {"anthropic": []}}, "providers.anthropic must be a table"),
        ({"mcp_servers": {"s": "c"}}, "mcp_servers.s must be a table"),
        ({"users": {"alice": "x"}}, "users.alice must be a table"),
        ({"prices": {"openai/m": 1}}, 'prices."openai/m" must be a table'),
        ({"budgets": []}, "budgets must be a table"),
        ({"budgets": {"groups": [1]}}, "budgets.groups must map names to US$ amounts"),
        ({"circuit_breaker": True}, "circuit_breaker must be a table"),
        # unknown keys: all of them, sorted
        ({"zeta": 1, "alpha": 2}, "unknown top-level key(s) alpha, zeta"),
        ({"providers": {"openai": {"b": 1, "a": 2}}}, "providers.openai: unknown key(s) a, b"),
        (server(timeout=1, arg=[]), "mcp_servers.s: unknown key(s) arg, timeout"),
        ({"users": {"alice": {"token": "x", "role": "admin"}}}, "users.alice: unknown key(s) role"),
        ({"budgets": {"teams": {}}}, "budgets: unknown key(s) teams"),
        ({"prices": {"openai/m": {"input": 1, "output": 1, "cached": 1}}}, 'prices."openai/m": unknown key(s) cached'),
        ({"circuit_breaker": {"enable": False}}, "circuit_breaker: unknown key(s) enable"),
    ],
)
def test_table_shape_exact_messages(data: dict[str, Any], message: str) -> None:
    assert error(data) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": {"openai": {"enabled": "no"}}}, "providers.openai: enabled must be true or false"),
        (server(enabled=0), "mcp_servers.s: enabled must be true or false"),
        ({"circuit_breaker": {"enabled": "false"}}, "circuit_breaker: enabled must be true or false"),
        ({"providers": {"openai": {"allow_byok": 0}}}, "providers.openai: allow_byok must be true or false"),
        ({"allow_byok": "yes"}, "allow_byok must be true or false"),
        ({"send_actor_headers": 1}, "send_actor_headers must be true or false"),
    ],
)
def test_flag_exact_messages(data: dict[str, Any], message: str) -> None:
    assert error(data) == message


def test_a_disabled_table_is_not_checked_further() -> None:
    config = parse_config(
        {
            "providers": {"openai": {"enabled": False, "host": 5, "key": ""}},
            "mcp_servers": {"s": {"enabled": False, "tool_timeout": -1}},
            "circuit_breaker": {"enabled": False, "timeout": 0},
        }
    )
    names = [p.name for p in config.providers]
    assert (names, config.mcp_servers, config.circuit_breaker) == (["anthropic", *OTHERS], (), None)
    assert (
        error({"providers": {"openai": {"enabled": False, "colour": 1}}}) == "providers.openai: unknown key(s) colour"
    )


def test_the_first_error_in_a_config_is_reported() -> None:
    """Tables are checked in a fixed order, so a config with several errors always gets the same message."""
    assert error({"bogus": 1, "providers": 5}) == "unknown top-level key(s) bogus"
    assert error({"max_tool_rounds": 0, "keepalive_interval": 0}) == ROUNDS
    assert error({"prices": {"openai/m": {"input": -1, "output": -1}}}) == PRICE
    assert error({"budgets": {"users": {"bob": -1}, "groups": {"eng": -1}}}) == DOLLARS  # users before groups
    assert error({"budgets": {"groups": {"eng": -1}, "users": 5}}) == "budgets.users must map names to US$ amounts"


def test_the_module_docstring_points_at_the_readme_reference() -> None:
    assert '"### The TOML file"' in (config_module.__doc__ or "")
    assert "\n### The TOML file\n" in (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


# --- AWS credentials for SigV4 providers ---------------------------------------------------------------


def test_aws_credentials_are_keys_from_the_environment_or_a_profile(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BRIDGE_AWS_SECRET", "operator-secret")
    keys = {"aws_access_key_id": "AKIAOPERATOR00000000", "aws_secret_access_key": "env:BRIDGE_AWS_SECRET"}
    bedrock = by_name({"providers": {"bedrock": keys}})["bedrock"]
    assert bedrock.aws is not None and bedrock.aws.access_key_id == "AKIAOPERATOR00000000"
    assert bedrock.aws.source.get_frozen_credentials().secret_key == "operator-secret"
    assert bedrock.aws.region is None  # the host's
    assert "operator-secret" not in repr(bedrock)
    (tmp_path / "credentials").write_text("[bridge]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    mantle = by_name({"providers": {"bedrock-mantle": {"aws_profile": "bridge", "aws_region": "eu-west-1"}}})
    aws = mantle["bedrock-mantle"].aws
    assert aws is not None and (aws.access_key_id, aws.region) == ("AKIAPROFILE", "eu-west-1")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"key": "x"}, r"providers\.bedrock: bedrock takes no central key: give it AWS credentials to sign with"),
        ({"aws_access_key_id": "AKIA"}, r"aws_secret_access_key is missing: AWS credentials need both keys"),
        ({"aws_secret_access_key": "s"}, r"aws_access_key_id is missing"),
        ({"aws_profile": "p", "aws_access_key_id": "AKIA"}, r"aws_profile and aws_access_key_id exclude each other"),
        ({"aws_profile": "no-such-profile"}, r"providers\.bedrock: AWS profile 'no-such-profile'"),
        ({"aws_access_key_id": "AKIA", "aws_secret_access_key": "env:NO_SUCH_VAR_X"}, r"NO_SUCH_VAR_X is not set"),
        ({"aws_region": "mars", "aws_profile": "p"}, r"aws_region must be an AWS region such as 'us-east-1'"),
        (
            {"host": "bedrock.internal", "aws_access_key_id": "A", "aws_secret_access_key": "s"},
            r"aws_region is required: the host 'bedrock.internal' does not name the region",
        ),
    ],
)
def test_aws_credentials_errors_say_what_to_fix(table: dict, message: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ValueError, match=message):
        parse_config({"providers": {"bedrock": table}})


def test_only_sigv4_families_take_aws_credentials() -> None:
    with pytest.raises(ValueError, match=r"providers\.anthropic: anthropic takes no AWS credentials"):
        parse_config({"providers": {"anthropic": {"aws_profile": "p"}}})
    named = {"type": "bedrock", "host": "bedrock-runtime.eu-west-1.amazonaws.com"}
    region_in_host = by_name({"providers": {"eu": {**named, "aws_access_key_id": "A", "aws_secret_access_key": "s"}}})
    assert region_in_host["eu"].aws is not None
    upstream_names_it = {"host": "bedrock.internal", "upstream": "https://bedrock-runtime.eu-west-1.amazonaws.com"}
    keys = {"aws_access_key_id": "A", "aws_secret_access_key": "s"}
    assert by_name({"providers": {"eu": {"type": "bedrock", **upstream_names_it, **keys}}})["eu"].aws is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"redaction": {"outbound": "drop"}}, "redaction.outbound must be one of 'off', 'redact', 'block'"),
        ({"redaction": {"audit": "yes"}}, "redaction.audit must be true or false"),
        ({"redaction": {"patterns": {"Bad Kind": "x"}}}, "redaction.patterns.Bad Kind: a kind is lower-case words"),
        (
            {"redaction": {"patterns": {"internal-token": "(unclosed"}}},
            "redaction.patterns.internal-token: invalid regular",
        ),
        ({"redaction": {"patterns": {"internal-token": 3}}}, "redaction.patterns.internal-token must be a regular"),
        ({"redaction": {"mode": "x"}}, "redaction: unknown key(s) mode"),
        ({"record": "some"}, "record must be one of 'full', 'metadata'"),
        ({"allowed_models": {"users": {"alice": "claude-*"}}}, "allowed_models.users.alice must be a list of model"),
        ({"allowed_models": {"teams": {}}}, "allowed_models: unknown key(s) teams"),
    ],
)
def test_guard_settings_errors_say_what_to_fix(data: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_config(data)
    assert str(e.value).startswith(message)


def test_guard_settings_defaults_redact_the_audit_and_let_requests_leave() -> None:
    config = parse_config({})
    assert (config.redaction.audit, config.redaction.outbound, config.redaction.patterns) == (True, "off", ())
    assert config.record == "full"
    assert not config.allowed_models.users and not config.allowed_models.groups
    set_ = parse_config({"redaction": {"outbound": "redact", "patterns": {"b-kind": "b+", "a-kind": "a+"}}})
    assert set_.redaction.patterns == (("a-kind", "a+"), ("b-kind", "b+"))


@pytest.mark.parametrize("value", [-1, 4001, 1.5, "200", True])
def test_tool_result_excerpt_is_a_count_of_characters(value: Any) -> None:
    with pytest.raises(ValueError, match="tool_result_excerpt must be a whole number from 0 to 4000"):
        parse_config({"tool_result_excerpt": value})


def test_tool_result_excerpt_defaults_to_200_and_0_keeps_none() -> None:
    assert parse_config({}).tool_result_excerpt == 200
    assert parse_config({"tool_result_excerpt": 0}).tool_result_excerpt == 0
