"""Proxy authentication, central keys, BYOK rules and actor headers (addon/policy/access.py)."""

import base64
from typing import Any

import pytest

from addon.config import Config, Provider, User, hash_token, parse_config
from addon.policy import Refusal
from addon.policy.access import Access, Users, resolve

ALICE_TOKEN = "aib_alice-0123456789abcdefghijklmnop"
BOB_TOKEN = "aib_bob-0123456789abcdefghijklmnopqr"
ANTHROPIC_KEY = "sk-ant-central-0123456789abcdef"
OPENAI_KEY = "sk-proj-central-0123456789abcdef"
CLIENT_KEY = "sk-ant-api03-client-own-key-xyz"
USERS_TABLE = {
    "alice": {"token": hash_token(ALICE_TOKEN), "groups": ["eng"]},
    "bob": {"token": hash_token(BOB_TOKEN)},
}


def make_config(**top: Any) -> Config:
    data: dict[str, Any] = {
        "providers": {"anthropic": {"key": ANTHROPIC_KEY}, "openai": {"key": OPENAI_KEY}},
        "users": USERS_TABLE,
    }
    data.update(top)
    return parse_config(data)


CONFIG = make_config()
USERS = Users(CONFIG.users)
ANTHROPIC, OPENAI = CONFIG.providers[:2]


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name]


def no_secret_in(headers: list[tuple[str, str]], secret: str) -> bool:
    return all(secret not in n and secret not in v for n, v in headers)


# --- Users ----------------------------------------------------------------------------------------------


def test_check_basic_valid() -> None:
    assert USERS.check_basic(basic(f"alice:{ALICE_TOKEN}")) == "alice"
    assert USERS.check_basic(basic(f"bob:{BOB_TOKEN}")) == "bob"
    assert USERS.check_basic("  basic   " + basic(f"alice:{ALICE_TOKEN}")[6:] + " ") == "alice"


@pytest.mark.parametrize(
    "header",
    [
        basic(f"alice:{BOB_TOKEN}"),  # another user's token
        basic("alice:aib_wrong"),
        basic("alice:"),
        basic(f"alice:{ALICE_TOKEN}x"),
        basic(f"carol:{ALICE_TOKEN}"),  # unknown user
        basic(f":{ALICE_TOKEN}"),
        basic(ALICE_TOKEN),  # no ':' at all
        "Basic !!!not-base64!!!",
        "Basic YWxpY2U",  # bad padding
        "Basic " + base64.b64encode(b"alice:\xff\xfe").decode(),  # not UTF-8
        "Bearer " + ALICE_TOKEN,
        "Digest username=alice",
        f"alice:{ALICE_TOKEN}",
        "Basic",
        "",
        None,
    ],
)
def test_check_basic_refuses(header: str | None) -> None:
    assert USERS.check_basic(header) is None


@pytest.mark.parametrize("header", ["Basic é", "Basic YWxpY2U6\udce9", "Basic \udcff\udcfe"])
def test_check_basic_refuses_non_ascii_instead_of_raising(header: str) -> None:
    """mitmproxy decodes header bytes with surrogateescape, so any byte can reach check_basic.

    An exception here is fail-open: mitmproxy logs addon errors and goes on, so the CONNECT (or plain HTTP
    request) would proceed without the 407.
    """
    assert USERS.check_basic(header) is None


def test_check_basic_token_with_a_colon() -> None:
    token = "aib_with:colon:inside"
    users = Users((User(name="carol", token_hash=hash_token(token)),))
    assert users.check_basic(basic(f"carol:{token}")) == "carol"
    assert users.check_basic(basic("carol:aib_with")) is None


def test_required() -> None:
    assert USERS.required
    assert not Users(()).required


def test_by_token() -> None:
    alice = USERS.by_token(ALICE_TOKEN)
    assert alice is not None
    assert (alice.name, alice.groups) == ("alice", ("eng",))
    bob = USERS.by_token(BOB_TOKEN)
    assert bob is not None and bob.name == "bob"
    assert USERS.by_token("aib_unknown") is None
    assert USERS.by_token(hash_token(ALICE_TOKEN)) is None  # the stored hash is not a token
    assert Users(()).by_token(ALICE_TOKEN) is None


# --- resolve: bridge tokens -----------------------------------------------------------------------------


def anthropic_headers(key: str | None = None, **extra: str) -> list[tuple[str, str]]:
    headers = [("Host", "api.anthropic.com"), ("anthropic-version", "2023-06-01"), ("Content-Type", "application/json")]
    if key is not None:
        headers.append(("X-Api-Key", key))
    return [*headers, *extra.items()]


def openai_headers(key: str | None = None) -> list[tuple[str, str]]:
    headers = [("Host", "api.openai.com"), ("Content-Type", "application/json")]
    if key is not None:
        headers.append(("Authorization", f"Bearer {key}"))
    return headers


@pytest.mark.parametrize("proxy_user", [None, "alice"])
def test_bridge_token_anthropic_gets_the_central_key(proxy_user: str | None) -> None:
    headers = [*anthropic_headers(ALICE_TOKEN), ("Authorization", f"Bearer {ALICE_TOKEN}")]
    access = resolve(CONFIG, USERS, ANTHROPIC, headers, proxy_user)
    assert access.refusal is None
    assert access.initiator == "alice"
    assert (access.credential_kind, access.credential_hint) == ("centralized", "sk-a...cdef")
    assert values(access.headers, "x-api-key") == [ANTHROPIC_KEY]
    assert values(access.headers, "authorization") == []
    assert no_secret_in(access.headers, ALICE_TOKEN)
    assert values(access.headers, "anthropic-version") == ["2023-06-01"]
    assert values(access.headers, "host") == ["api.anthropic.com"]


def test_bridge_token_as_anthropic_bearer_gets_the_central_key() -> None:
    headers = [*anthropic_headers(), ("authorization", f"Bearer {BOB_TOKEN}")]
    access = resolve(CONFIG, USERS, ANTHROPIC, headers, None)
    assert (access.initiator, access.credential_kind) == ("bob", "centralized")
    assert values(access.headers, "x-api-key") == [ANTHROPIC_KEY]
    assert values(access.headers, "authorization") == []
    assert no_secret_in(access.headers, BOB_TOKEN)


def test_bridge_token_openai_gets_a_bearer_central_key() -> None:
    headers = [*openai_headers(ALICE_TOKEN), ("x-api-key", ALICE_TOKEN)]
    access = resolve(CONFIG, USERS, OPENAI, headers, "alice")
    assert access.refusal is None
    assert (access.initiator, access.credential_kind, access.credential_hint) == ("alice", "centralized", "sk-p...cdef")
    assert values(access.headers, "authorization") == [f"Bearer {OPENAI_KEY}"]
    assert values(access.headers, "x-api-key") == []
    assert no_secret_in(access.headers, ALICE_TOKEN)


@pytest.mark.parametrize("proxy_user", [None, "alice"])
@pytest.mark.parametrize("provider", [ANTHROPIC, OPENAI])
def test_invalid_bridge_token_is_401(provider: Provider, proxy_user: str | None) -> None:
    headers = anthropic_headers("aib_not-a-token") if provider.type == "anthropic" else openai_headers("aib_nope")
    access = resolve(CONFIG, USERS, provider, headers, proxy_user)
    assert access.refusal == Refusal(401, "invalid bridge token")
    assert access.initiator == (proxy_user or "anonymous")
    assert access.credential_kind is None


def test_bridge_token_with_undecodable_bytes_is_401() -> None:
    """A header byte that is not UTF-8 reaches resolve as a lone surrogate (mitmproxy's surrogateescape).

    Raising here is fail-open: `request` calls resolve outside its try, mitmproxy logs the addon error and
    forwards the request as it stands, unaudited and past the BYOK rules.
    """
    access = resolve(CONFIG, USERS, ANTHROPIC, anthropic_headers("aib_\udce9"), None)
    assert access.refusal == Refusal(401, "invalid bridge token")


def test_token_of_another_user_is_403() -> None:
    access = resolve(CONFIG, USERS, ANTHROPIC, anthropic_headers(BOB_TOKEN), "alice")
    assert access.refusal == Refusal(403, "the bridge token belongs to another user")
    assert access.initiator == "alice"


def test_bridge_token_without_a_central_key_is_403() -> None:
    config = make_config(providers={})
    anthropic = config.providers[0]
    assert anthropic.key is None
    access = resolve(config, USERS, anthropic, anthropic_headers(ALICE_TOKEN), None)
    assert access.refusal == Refusal(403, "provider anthropic has no central key configured")
    assert access.initiator == "alice"


# --- resolve: BYOK --------------------------------------------------------------------------------------


@pytest.mark.parametrize("proxy_user", [None, "alice"])
def test_byok_passes_through_untouched(proxy_user: str | None) -> None:
    headers = anthropic_headers(CLIENT_KEY)
    access = resolve(CONFIG, USERS, ANTHROPIC, headers, proxy_user)
    assert access.refusal is None
    assert access.initiator == (proxy_user or "anonymous")
    assert (access.credential_kind, access.credential_hint) == ("byok", "sk-a...-xyz")
    assert access.headers == headers

    openai = openai_headers("sk-proj-client-0123456789")
    access = resolve(CONFIG, USERS, OPENAI, openai, proxy_user)
    assert (access.credential_kind, access.credential_hint, access.headers) == ("byok", "sk-p...6789", openai)


BYOK_MESSAGE = "bring-your-own-key is not enabled: use your bridge token as the API key"


@pytest.mark.parametrize(
    ("global_allow", "provider_allow", "allowed"),
    [
        (True, None, True),
        (False, None, False),
        (True, False, False),  # the provider refuses although the global allows
        (False, True, True),  # the provider allows although the global refuses
        (True, True, True),
        (False, False, False),
    ],
)
def test_byok_rules(global_allow: bool, provider_allow: bool | None, allowed: bool) -> None:
    anthropic: dict[str, Any] = {"key": ANTHROPIC_KEY}
    if provider_allow is not None:
        anthropic["allow_byok"] = provider_allow
    config = make_config(allow_byok=global_allow, providers={"anthropic": anthropic})
    access = resolve(config, USERS, config.providers[0], anthropic_headers(CLIENT_KEY), "alice")
    if allowed:
        assert (access.refusal, access.credential_kind) == (None, "byok")
    else:
        assert access.refusal == Refusal(403, BYOK_MESSAGE)
        assert access.initiator == "alice"
    # Bridge tokens are not BYOK: they work either way.
    token = resolve(config, USERS, config.providers[0], anthropic_headers(ALICE_TOKEN), "alice")
    assert (token.refusal, token.credential_kind) == (None, "centralized")


def test_byok_refused_anonymous() -> None:
    config = make_config(allow_byok=False)
    access = resolve(config, USERS, config.providers[1], openai_headers("sk-proj-0123456789"), None)
    assert access.refusal == Refusal(403, BYOK_MESSAGE)
    assert access.initiator == "anonymous"


# --- resolve: no key ------------------------------------------------------------------------------------


def test_no_key_with_a_user_gets_the_central_key() -> None:
    access = resolve(CONFIG, USERS, ANTHROPIC, anthropic_headers(), "alice")
    assert (access.refusal, access.initiator, access.credential_kind) == (None, "alice", "centralized")
    assert values(access.headers, "x-api-key") == [ANTHROPIC_KEY]
    access = resolve(CONFIG, USERS, OPENAI, openai_headers(), "bob")
    assert (access.initiator, access.credential_kind) == ("bob", "centralized")
    assert values(access.headers, "authorization") == [f"Bearer {OPENAI_KEY}"]


def test_no_key_without_a_user_gets_nothing() -> None:
    headers = anthropic_headers()
    access = resolve(CONFIG, USERS, ANTHROPIC, headers, None)
    assert access == Access("anonymous", headers)
    assert (access.credential_kind, access.credential_hint, access.refusal) == (None, None, None)


def test_no_key_with_a_user_but_no_central_key_gets_nothing() -> None:
    config = make_config(providers={})
    headers = openai_headers()
    access = resolve(config, USERS, config.providers[1], headers, "alice")
    assert (access.initiator, access.headers, access.credential_kind, access.refusal) == ("alice", headers, None, None)


# --- resolve: actor headers -----------------------------------------------------------------------------

FORGED = [
    ("X-AI-Bridge-Actor-ID", "mallory"),
    ("x-ai-bridge-actor-metadata-username", "mallory"),
    ("X-Ai-Bridge-ACTOR-Something-Else", "x"),
]


@pytest.mark.parametrize("send", [True, False])
@pytest.mark.parametrize(
    ("key", "user", "expected_user"),
    [
        (ALICE_TOKEN, None, "alice"),  # a bridge token identifies the user
        (CLIENT_KEY, "bob", "bob"),  # BYOK of a proxy-authenticated user
        (None, "alice", "alice"),  # central key for a proxy-authenticated user
        (CLIENT_KEY, None, None),  # anonymous BYOK: no actor
        (None, None, None),
    ],
)
def test_actor_headers(send: bool, key: str | None, user: str | None, expected_user: str | None) -> None:
    config = make_config(send_actor_headers=send)
    access = resolve(config, USERS, config.providers[0], [*anthropic_headers(key), *FORGED], user)
    assert access.refusal is None
    actor = [(n, v) for n, v in access.headers if n.lower().startswith("x-ai-bridge-actor")]
    if send and expected_user is not None:
        assert actor == [
            ("X-AI-Bridge-Actor-ID", expected_user),
            ("X-AI-Bridge-Actor-Metadata-Username", expected_user),
        ]
    else:
        assert actor == []
    assert "mallory" not in {v for _, v in access.headers}


@pytest.mark.parametrize(
    ("key", "user", "status"),
    [("aib_invalid", None, 401), (BOB_TOKEN, "alice", 403), (CLIENT_KEY, "alice", 403)],
)
def test_forged_actor_headers_are_removed_on_refusals_too(key: str, user: str | None, status: int) -> None:
    config = make_config(send_actor_headers=True, allow_byok=False)
    access = resolve(config, USERS, config.providers[0], [*anthropic_headers(key), *FORGED], user)
    assert access.refusal is not None and access.refusal.status == status
    assert not any(n.lower().startswith("x-ai-bridge-actor") for n, _ in access.headers)


# --- SigV4 providers: the operator's AWS credentials, or the client's own signature ----------------------

AWS = {"aws_access_key_id": "AKIAOPERATOR00000000", "aws_secret_access_key": "operator-secret"}
SIGNED = [
    ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIACLIENT0000000000/20261203/us-east-1/bedrock/aws4_request, x"),
    ("X-Amz-Date", "20261203T000000Z"),
    ("X-Amz-Security-Token", "client-session"),
    ("Content-Type", "application/json"),
]


def bedrock(**table: Any) -> tuple[Config, Provider]:
    config = make_config(providers={"bedrock": table}, **table.pop("top", {}))
    return config, next(p for p in config.providers if p.name == "bedrock")


def test_a_bridge_token_on_bedrock_is_signed_for_with_the_operators_credentials() -> None:
    config, provider = bedrock(**AWS)
    access = resolve(config, USERS, provider, [("Authorization", f"Bearer {ALICE_TOKEN}"), *SIGNED[3:]], None)
    assert access.refusal is None and access.aws is provider.aws
    assert (access.initiator, access.credential_kind, access.credential_hint) == ("alice", "centralized", "AKIA...0000")
    assert access.headers == [("Content-Type", "application/json")]  # the token gone; the signature is the engine's


def test_a_proxy_user_without_credentials_and_one_signing_with_the_bridges_get_its_signature() -> None:
    config, provider = bedrock(**AWS)
    bare = resolve(config, USERS, provider, [("Content-Type", "application/json")], "alice")  # skip-auth clients
    assert (bare.credential_kind, bare.aws) == ("centralized", provider.aws)
    anonymous = resolve(config, USERS, provider, [("Content-Type", "application/json")], None)
    assert (anonymous.credential_kind, anonymous.aws) == (None, None)


def test_a_clients_own_signature_is_its_own_key() -> None:
    config, provider = bedrock(**AWS)
    own = resolve(config, USERS, provider, SIGNED, "alice")
    assert (own.credential_kind, own.credential_hint, own.aws) == ("byok", "AKIA...0000", None)
    assert own.headers == SIGNED  # untouched: the signature covers them
    config, provider = bedrock(top={"allow_byok": False})
    refused = resolve(config, USERS, provider, SIGNED, None)
    assert refused.refusal is not None and refused.refusal.status == 403


def test_a_bridge_token_on_bedrock_without_aws_credentials_says_what_to_configure() -> None:
    config, provider = bedrock()
    access = resolve(config, USERS, provider, [("Authorization", f"Bearer {ALICE_TOKEN}")], None)
    assert access.refusal == Refusal(
        403,
        "provider bedrock has no AWS credentials configured to sign for bridge tokens "
        "(aws_access_key_id and aws_secret_access_key, or aws_profile)",
    )
