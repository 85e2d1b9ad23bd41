"""The provider families (addon/providers/): the registry, recorded endpoints and their APIs, credentials,
credential substitution, error shapes and overload statuses."""

import json

import pytest

from addon.providers import (
    FAMILIES,
    Api,
    Endpoint,
    Family,
    anthropic,
    azure,
    chatgpt,
    copilot,
    foundry,
    mantle,
    openai,
    vertex,
)
from addon.providers.base import AUTH_HEADERS, host_matches
from addon.wire import AnthropicMessages, OpenAIChat, OpenAIResponses

ANTHROPIC, OPENAI, AZURE, CHATGPT, COPILOT, VERTEX, FOUNDRY, MANTLE = (
    m.FAMILY for m in (anthropic, openai, azure, chatgpt, copilot, vertex, foundry, mantle)
)
ANTHROPIC_SERVED = (ANTHROPIC, VERTEX, FOUNDRY, MANTLE)
"""The families that serve Anthropic's Messages API as Anthropic does (its errors, its 529)."""
OPENAI_SERVED = (OPENAI, AZURE, CHATGPT, COPILOT)
VERTEX_MODELS = "/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models"


# --- the registry -------------------------------------------------------------------------------------------


def test_the_registry_is_every_family_by_type_with_its_default_host() -> None:
    assert {name: family.host for name, family in FAMILIES.items()} == {
        "anthropic": "api.anthropic.com",
        "openai": "api.openai.com",
        "azure": "*.openai.azure.com",
        "chatgpt": "chatgpt.com",
        "copilot": "api*.githubcopilot.com",
        "vertex": "*aiplatform*.googleapis.com",
        "foundry": "*.services.ai.azure.com",
        "bedrock": "bedrock-runtime.*.amazonaws.com",
        "bedrock-mantle": "bedrock-mantle.*.api.aws",
        "gemini": "generativelanguage.googleapis.com",
        "code-assist": "cloudcode-pa.googleapis.com",
    }
    assert list(FAMILIES)[:2] == ["anthropic", "openai"]  # the defaults the configuration lists first
    assert all(isinstance(f, Family) and f.type == name for name, f in FAMILIES.items())
    assert FAMILIES["anthropic"] is ANTHROPIC and FAMILIES["openai"] is OPENAI


# --- Api ----------------------------------------------------------------------------------------------------


def test_only_the_responses_api_and_bedrocks_converse_are_tapped() -> None:
    """Whatever the API, a SigV4-signed request is tapped too (`routing.sealed`): Bedrock's usually are."""
    assert [api for api in Api if api.tapped] == [Api.OPENAI_RESPONSES, Api.BEDROCK_CONVERSE]
    assert isinstance(Api.BEDROCK_INVOKE.wire, AnthropicMessages)  # Anthropic's bodies, in other framing
    assert Api.BEDROCK_INVOKE.vendor == "anthropic"
    assert Api.BEDROCK_CONVERSE.vendor == "aws"  # any model, by Bedrock's ids


def test_bedrock_errors_are_bedrocks_whatever_the_api() -> None:
    for api in (Api.BEDROCK_INVOKE, Api.BEDROCK_CONVERSE):
        assert json.loads(api.reader.error_body(429, "slow down")) == {
            "message": "slow down",
            "__type": "ThrottlingException",
        }
    assert FAMILIES["bedrock"].errors is Api.BEDROCK_INVOKE.reader


def test_each_api_reads_with_its_own_wire_format() -> None:
    assert isinstance(Api.ANTHROPIC_MESSAGES.reader, AnthropicMessages)
    assert isinstance(Api.OPENAI_CHAT.reader, OpenAIChat)
    assert isinstance(Api.OPENAI_RESPONSES.reader, OpenAIResponses)


def test_bridged_apis_bridge_with_the_wire_format_that_reads_them() -> None:
    assert isinstance(Api.ANTHROPIC_MESSAGES.wire, AnthropicMessages)
    assert isinstance(Api.OPENAI_CHAT.wire, OpenAIChat)
    for api in (Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT):
        assert api.wire is api.reader


def test_each_api_is_priced_as_its_vendors() -> None:
    assert Api.ANTHROPIC_MESSAGES.vendor == "anthropic"
    assert Api.OPENAI_CHAT.vendor == "openai"
    assert Api.OPENAI_RESPONSES.vendor == "openai"


# --- endpoints ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "path", "api"),
    [
        (ANTHROPIC, "/v1/messages", Api.ANTHROPIC_MESSAGES),
        (ANTHROPIC, "/v1/messages?beta=true", Api.ANTHROPIC_MESSAGES),
        (ANTHROPIC, "/api/anthropic/v1/messages", Api.ANTHROPIC_MESSAGES),  # a compatible gateway's prefix
        (ANTHROPIC, "/v1/messages/count_tokens", None),
        (ANTHROPIC, "/v1/messages/", None),
        (ANTHROPIC, "/v1/models", None),
        (ANTHROPIC, "/v1/chat/completions", None),
        (OPENAI, "/v1/chat/completions", Api.OPENAI_CHAT),
        (OPENAI, "/v1/chat/completions?x=1", Api.OPENAI_CHAT),
        (OPENAI, "/api/v1/chat/completions", Api.OPENAI_CHAT),  # OpenRouter
        (OPENAI, "/openai/v1/chat/completions", Api.OPENAI_CHAT),  # Groq
        (OPENAI, "/chat/completions", Api.OPENAI_CHAT),  # DeepSeek
        (OPENAI, "/v1/responses", Api.OPENAI_RESPONSES),
        (OPENAI, "/v1/responses/compact", None),
        (OPENAI, "/v1/messages", None),
        (OPENAI, "/v1/models", None),
        (AZURE, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", Api.OPENAI_CHAT),
        (AZURE, "/openai/v1/chat/completions", Api.OPENAI_CHAT),
        (AZURE, "/openai/deployments/gpt-4o/responses", Api.OPENAI_RESPONSES),
        (AZURE, "/openai/v1/responses", Api.OPENAI_RESPONSES),
        (AZURE, "/openai/responses", Api.OPENAI_RESPONSES),
        (AZURE, "/openai/deployments/a/b/chat/completions", None),
        (AZURE, "/v1/chat/completions", None),
        (CHATGPT, "/backend-api/codex/responses", Api.OPENAI_RESPONSES),
        (CHATGPT, "/backend-api/conversation", None),
        (COPILOT, "/chat/completions", Api.OPENAI_CHAT),
        (COPILOT, "/responses", Api.OPENAI_RESPONSES),
        (COPILOT, "/v1/messages", Api.ANTHROPIC_MESSAGES),
        (COPILOT, "/models", None),
        (VERTEX, f"{VERTEX_MODELS}/claude-sonnet-4-5@20250929:streamRawPredict", Api.ANTHROPIC_MESSAGES),
        (VERTEX, f"{VERTEX_MODELS}/claude-sonnet-4-5@20250929:rawPredict", Api.ANTHROPIC_MESSAGES),
        (VERTEX, f"{VERTEX_MODELS}/count-tokens:rawPredict", None),  # passthrough, though {model} would match
        (VERTEX, f"{VERTEX_MODELS}/claude-sonnet-4-5", None),
        (VERTEX, "/v1/messages", None),
        (FOUNDRY, "/anthropic/v1/messages", Api.ANTHROPIC_MESSAGES),
        (FOUNDRY, "/anthropic/v1/messages?api-version=1", Api.ANTHROPIC_MESSAGES),
        (FOUNDRY, "/v1/messages", None),
    ],
)
def test_endpoints_map_to_their_api(family: Family, path: str, api: Api | None) -> None:
    found = family.endpoint(path)
    assert (found[0].api if found else None) is api


def test_an_azure_deployment_names_the_model() -> None:
    found = AZURE.endpoint("/openai/deployments/my-gpt/chat/completions?api-version=1")
    assert found is not None
    endpoint, params = found
    assert params == {"deployment": "my-gpt"}
    assert endpoint.model == "deployment"
    v1 = AZURE.endpoint("/openai/v1/chat/completions")
    assert v1 is not None and v1[0].model is None and v1[1] == {}


def test_a_vertex_path_names_the_model_and_the_project() -> None:
    found = VERTEX.endpoint(f"{VERTEX_MODELS}/claude-opus-4-1@20250805:streamRawPredict?alt=sse")
    assert found is not None
    endpoint, params = found
    assert params == {
        "version": "v1",
        "project": "my-proj",
        "region": "us-east5",
        "model": "claude-opus-4-1@20250805",
    }
    assert endpoint.model == "model"


def test_a_passthrough_endpoint_hides_the_recorded_ones_after_it() -> None:
    family = Family(
        type="t",
        host="h",
        endpoints=(Endpoint("/m/special:go", None), Endpoint("/m/{model}:go", Api.OPENAI_CHAT)),
        errors=Api.OPENAI_CHAT.reader,
        overloaded=frozenset(),
    )
    assert family.endpoint("/m/special:go") is None
    found = family.endpoint("/m/gpt:go")
    assert found is not None and found[1] == {"model": "gpt"}


def test_an_endpoint_pattern_matches_whole_paths_only() -> None:
    endpoint = Endpoint("{prefix*}/v1/messages", Api.ANTHROPIC_MESSAGES)
    assert endpoint.match("/v1/messages") == {"prefix": ""}
    assert endpoint.match("/a/b/v1/messages") == {"prefix": "/a/b"}
    assert endpoint.match("/v1/messages/x") is None
    assert endpoint.match("x/v1/messages") is None
    one = Endpoint("/d/{name}/go", Api.OPENAI_CHAT)
    assert one.match("/d/abc/go") == {"name": "abc"}
    assert one.match("/d//go") is None
    assert one.match("/d/a/b/go") is None


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("api.openai.com", "api.openai.com", True),
        ("api.openai.com", "eu.api.openai.com", False),
        ("*.openai.azure.com", "my-res.openai.azure.com", True),
        ("*.openai.azure.com", "openai.azure.com", False),
        ("*.openai.azure.com", "evil.com", False),
        ("api*.githubcopilot.com", "api.githubcopilot.com", True),
        ("api*.githubcopilot.com", "api.business.githubcopilot.com", True),
        ("api*.githubcopilot.com", "githubcopilot.com", False),
        (VERTEX.host, "aiplatform.googleapis.com", True),
        (VERTEX.host, "us-east5-aiplatform.googleapis.com", True),
        (VERTEX.host, "aiplatform.us.rep.googleapis.com", True),
        (VERTEX.host, "aiplatform.googleapis.com.evil.net", False),
        (VERTEX.host, "googleapis.com", False),
        ("*.services.ai.azure.com", "my-res.services.ai.azure.com", True),
    ],
)
def test_host_patterns(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches


# --- credentials --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-api-key": " sk-ant-key ", "authorization": "Bearer sk-bearer"}, "sk-ant-key"),
        ({"x-api-key": "   ", "authorization": "Bearer sk-bearer"}, "sk-bearer"),
        ({"authorization": "  bearer   sk-bearer  "}, "sk-bearer"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"authorization": "Bearer "}, None),
        ({"authorization": "sk-no-scheme"}, None),
        ({}, None),
    ],
)
def test_anthropic_credential(headers: dict[str, str], expected: str | None) -> None:
    assert ANTHROPIC.credential(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer sk-proj-1"}, "sk-proj-1"),
        ({"authorization": "BEARER sk-proj-1 "}, "sk-proj-1"),
        ({"x-api-key": "sk-proj-1"}, None),
        ({"x-api-key": "sk-key", "authorization": "Bearer sk-bearer"}, "sk-bearer"),
        ({"authorization": "Token sk-proj-1"}, None),
        ({}, None),
    ],
)
def test_openai_credential_is_only_a_bearer_token(headers: dict[str, str], expected: str | None) -> None:
    assert OPENAI.credential(headers) == expected


def test_azure_credential_is_its_api_key_header_or_a_bearer_token() -> None:
    assert AZURE.credential({"api-key": "az-key", "authorization": "Bearer entra"}) == "az-key"
    assert AZURE.credential({"authorization": "Bearer entra"}) == "entra"
    assert AZURE.credential({"x-api-key": "other"}) is None


def test_foundry_takes_x_api_key_and_vertex_a_google_bearer_token() -> None:
    assert FOUNDRY.credential({"x-api-key": "f-key", "authorization": "Bearer entra"}) == "f-key"
    assert FOUNDRY.credential({"authorization": "Bearer entra"}) == "entra"
    assert VERTEX.credential({"authorization": "Bearer ya29.token"}) == "ya29.token"
    assert VERTEX.credential({"x-api-key": "k"}) is None


CLIENT_HEADERS = [
    ("Content-Type", "application/json"),
    ("Authorization", "Bearer sk-client"),
    ("anthropic-version", "2023-06-01"),
    ("X-API-KEY", "sk-client-2"),
    ("api-key", "sk-client-3"),
    ("User-Agent", "ua"),
]
KEPT = [("Content-Type", "application/json"), ("anthropic-version", "2023-06-01"), ("User-Agent", "ua")]


@pytest.mark.parametrize(
    ("family", "added"),
    [
        (ANTHROPIC, ("x-api-key", "sk-central")),
        (OPENAI, ("authorization", "Bearer sk-central")),
        (AZURE, ("api-key", "sk-central")),
    ],
)
def test_with_key_replaces_every_client_credential(family: Family, added: tuple[str, str]) -> None:
    assert family.with_key(CLIENT_HEADERS, "sk-central") == [*KEPT, added]


def test_with_key_on_headers_without_credentials_adds_the_key() -> None:
    assert OPENAI.with_key([("Accept", "*/*")], "k") == [("Accept", "*/*"), ("authorization", "Bearer k")]
    assert ANTHROPIC.with_key([], "k") == [("x-api-key", "k")]


def test_every_family_credential_header_is_an_auth_header() -> None:
    for family in FAMILIES.values():
        assert family.key_header is None or family.key_header in AUTH_HEADERS
    assert "authorization" in AUTH_HEADERS


# --- errors and overload ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ANTHROPIC_SERVED)
def test_anthropic_errors_are_anthropic_shaped(family: Family) -> None:
    assert json.loads(family.errors.error_body(429, "slow down")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert json.loads(family.errors.error_body(500, "boom"))["error"]["type"] == "api_error"


@pytest.mark.parametrize("family", OPENAI_SERVED)
def test_openai_style_errors_are_openai_shaped(family: Family) -> None:
    assert json.loads(family.errors.error_body(401, "no key")) == {
        "error": {"message": "no key", "type": "authentication_error", "param": None, "code": None}
    }
    assert json.loads(family.errors.error_body(502, "down"))["error"]["type"] == "server_error"
    assert json.loads(family.errors.error_body(418, "odd"))["error"]["type"] == "invalid_request_error"


def test_the_responses_api_answers_errors_in_openais_shape() -> None:
    body = json.loads(Api.OPENAI_RESPONSES.reader.error_body(403, "nope"))
    assert body == {"error": {"message": "nope", "type": "permission_error", "param": None, "code": None}}


def test_only_anthropic_is_overloaded_at_529() -> None:
    for family in ANTHROPIC_SERVED:
        assert family.overloaded == frozenset({429, 503, 504, 529})
    for family in OPENAI_SERVED:
        assert family.overloaded == frozenset({429, 503, 504})
    assert FAMILIES["bedrock"].overloaded == frozenset({429, 503, 504})  # Bedrock throttles; it has no 529
    google = {FAMILIES["gemini"], FAMILIES["code-assist"]}
    assert all(f.overloaded == frozenset({429, 503, 504}) for f in google)
    assert set(ANTHROPIC_SERVED + OPENAI_SERVED) | {FAMILIES["bedrock"]} | google == set(FAMILIES.values())


def test_per_user_token_families_take_no_central_key() -> None:
    assert {name for name, f in FAMILIES.items() if not f.central_keys} == {
        "chatgpt",
        "copilot",
        "vertex",
        "bedrock",
        "bedrock-mantle",
        "code-assist",
    }
    assert COPILOT.loop_headers == (("x-initiator", "agent"),)
    assert CHATGPT.account_header == "chatgpt-account-id"
    assert all(f.loop_headers == () for f in FAMILIES.values() if f is not COPILOT)


# --- Gemini -------------------------------------------------------------------------------------------------

GEMINI_FAMILIES = (FAMILIES["gemini"], VERTEX, FAMILIES["code-assist"])


@pytest.mark.parametrize(
    ("family", "path", "stream", "tapped", "model"),
    [
        (
            FAMILIES["gemini"],
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            True,
            False,
            "gemini-2.5-pro",
        ),
        (FAMILIES["gemini"], "/v1beta/models/gemini-2.5-pro:streamGenerateContent?key=k&alt=sse", True, False, None),
        (FAMILIES["gemini"], "/v1/models/gemini-2.5-flash:streamGenerateContent", True, True, "gemini-2.5-flash"),
        (FAMILIES["gemini"], "/v1/models/gemini-2.5-flash:generateContent", False, False, "gemini-2.5-flash"),
        (
            VERTEX,
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            True,
            False,
            "gemini-2.5-pro",
        ),
        (VERTEX, "/v1/publishers/google/models/gemini-2.5-pro:generateContent", False, False, "gemini-2.5-pro"),
        (FAMILIES["code-assist"], "/v1internal:streamGenerateContent?alt=sse", True, True, None),
        (FAMILIES["code-assist"], "/v1internal:generateContent", False, True, None),
    ],
)
def test_gemini_endpoints_stream_by_their_path_and_the_json_array_stream_is_only_tapped(
    family: Family, path: str, stream: bool, tapped: bool, model: str | None
) -> None:
    found = family.endpoint(path)
    assert found is not None, path
    endpoint, params = found
    assert (endpoint.api, endpoint.stream, endpoint.tapped) == (Api.GEMINI, stream, tapped)
    if model:
        assert params[endpoint.model] == model
    assert Api.GEMINI.vendor == "google"


def test_other_gemini_paths_pass_through() -> None:
    for path in ("/v1beta/models/gemini-2.5-pro:countTokens", "/v1beta/models", "/v1beta/cachedContents"):
        assert FAMILIES["gemini"].endpoint(path) is None
    assert FAMILIES["code-assist"].endpoint("/v1internal:loadCodeAssist") is None


def test_gemini_keys_travel_in_x_goog_api_key() -> None:
    gemini = FAMILIES["gemini"]
    assert gemini.credential({"x-goog-api-key": "AIzaSy-key"}) == "AIzaSy-key"
    assert gemini.with_key([("x-goog-api-key", "aib_token")], "AIzaCentral") == [("x-goog-api-key", "AIzaCentral")]
    assert not FAMILIES["code-assist"].central_keys  # each user's own Google login
