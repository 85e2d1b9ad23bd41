"""Which requests are bridged, passed through, or not ours."""

import json

import pytest

from addon.config import parse_config
from addon.providers import Api
from addon.providers.routing import Route, classify, query_keys, sealed

CONFIG = parse_config({"providers": {"openai-eu": {"type": "openai", "host": "eu.api.openai.com"}}})


CONVERSE = Api.BEDROCK_CONVERSE


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


FAMILIES_CONFIG = parse_config(
    {
        "providers": {
            "router": {"type": "openai", "host": "openrouter.ai"},
            "zai": {"type": "anthropic", "host": "api.z.ai"},
            "team": {"type": "azure", "host": "team.openai.azure.com", "upstream": "http://127.0.0.1:9/base"},
        }
    }
)


@pytest.mark.parametrize(
    ("host", "path", "provider", "api", "params"),
    [
        ("openrouter.ai", "/api/v1/chat/completions", "router", Api.OPENAI_CHAT, {"prefix": "/api/v1"}),
        ("openrouter.ai", "/api/v1/messages", "router", None, {}),  # an openai-type provider records OpenAI's
        (
            "api.z.ai",
            "/api/anthropic/v1/messages?beta=true",
            "zai",
            Api.ANTHROPIC_MESSAGES,
            {"prefix": "/api/anthropic"},
        ),
        ("api.z.ai", "/api/anthropic/v1/messages/count_tokens", "zai", None, {}),
        (
            "east.openai.azure.com",
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            "azure",
            Api.OPENAI_CHAT,
            {"deployment": "gpt-4o"},
        ),
        ("east.openai.azure.com", "/openai/v1/responses", "azure", Api.OPENAI_RESPONSES, {}),
        ("east.openai.azure.com", "/openai/deployments/a/b/chat/completions", "azure", None, {}),  # one segment
        ("east.openai.azure.com", "/v1/chat/completions", "azure", None, {}),
        ("team.openai.azure.com", "/openai/v1/chat/completions", "team", Api.OPENAI_CHAT, {}),
        ("chatgpt.com", "/backend-api/codex/responses", "chatgpt", Api.OPENAI_RESPONSES, {}),
        ("chatgpt.com", "/backend-api/conversation", "chatgpt", None, {}),
        ("api.githubcopilot.com", "/chat/completions", "copilot", Api.OPENAI_CHAT, {"prefix": ""}),
        ("api.enterprise.githubcopilot.com", "/v1/messages", "copilot", Api.ANTHROPIC_MESSAGES, {"prefix": ""}),
        ("api.individual.githubcopilot.com", "/responses", "copilot", Api.OPENAI_RESPONSES, {"prefix": ""}),
        (
            "us-east5-aiplatform.googleapis.com",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
            "vertex",
            Api.ANTHROPIC_MESSAGES,
            {"version": "v1", "project": "p", "region": "us-east5", "model": "claude-sonnet-4-5@20250929"},
        ),
        (
            "aiplatform.us.rep.googleapis.com",
            "/v1/projects/p/locations/us/publishers/anthropic/models/claude-opus-4-1:rawPredict",
            "vertex",
            Api.ANTHROPIC_MESSAGES,
            {"version": "v1", "project": "p", "region": "us", "model": "claude-opus-4-1"},
        ),
        (  # counting tokens is passed through, though it looks like a model's :rawPredict
            "aiplatform.googleapis.com",
            "/v1/projects/p/locations/global/publishers/anthropic/models/count-tokens:rawPredict",
            "vertex",
            None,
            {},
        ),
        (  # Gemini on Vertex
            "europe-west4-aiplatform.googleapis.com",
            "/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
            "vertex",
            Api.GEMINI,
            {"scope": "/v1/projects/p/locations/europe-west4", "model": "gemini-2.5-pro"},
        ),
        ("team-ai.services.ai.azure.com", "/anthropic/v1/messages", "foundry", Api.ANTHROPIC_MESSAGES, {"prefix": ""}),
        (
            "bedrock-runtime.eu-west-1.amazonaws.com",
            "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
            "bedrock",
            Api.BEDROCK_INVOKE,
            {"model": "anthropic.claude-sonnet-4-5-20250929-v1%3A0"},
        ),
        ("bedrock-runtime.us-east-1.amazonaws.com", "/model/m/invoke", "bedrock", Api.BEDROCK_INVOKE, {"model": "m"}),
        ("bedrock-runtime.eu-west-1.amazonaws.com", "/model/m/converse-stream", "bedrock", CONVERSE, {"model": "m"}),
        ("bedrock-runtime.eu-west-1.amazonaws.com", "/model/m/converse", "bedrock", CONVERSE, {"model": "m"}),
        ("bedrock-runtime.eu-west-1.amazonaws.com", "/model/m/count-tokens", "bedrock", None, {}),
        ("bedrock-mantle.us-east-1.api.aws", "/anthropic/v1/messages", "bedrock-mantle", Api.ANTHROPIC_MESSAGES, {}),
        ("bedrock-mantle.us-east-1.api.aws", "/v1/chat/completions", "bedrock-mantle", Api.OPENAI_CHAT, {}),
        ("bedrock-mantle.us-east-1.api.aws", "/v1/responses", "bedrock-mantle", Api.OPENAI_RESPONSES, {}),
    ],
)
def test_family_endpoints(host: str, path: str, provider: str, api: Api | None, params: dict[str, str]) -> None:
    route = classify(FAMILIES_CONFIG, host, "POST", path)
    assert route is not None
    assert (route.provider.name, route.api, route.params) == (provider, api, params)
    assert route.host == host


def test_the_model_and_the_upstream_come_from_the_route() -> None:
    deployment = classify(
        FAMILIES_CONFIG, "east.openai.azure.com", "POST", "/openai/deployments/gpt-4o/chat/completions"
    )
    assert deployment is not None and deployment.model == "gpt-4o"
    assert deployment.upstream.url("/x") == "https://east.openai.azure.com/x"  # a pattern: the host called
    team = classify(FAMILIES_CONFIG, "team.openai.azure.com", "POST", "/openai/v1/chat/completions")
    assert team is not None and team.model is None
    assert team.upstream.url("/x") == "http://127.0.0.1:9/base/x"


def test_errors_take_the_shape_of_the_route() -> None:
    copilot_messages = classify(FAMILIES_CONFIG, "api.githubcopilot.com", "POST", "/v1/messages")
    copilot_models = classify(FAMILIES_CONFIG, "api.githubcopilot.com", "GET", "/models")
    assert copilot_messages is not None and copilot_models is not None
    assert json.loads(copilot_messages.error_body(429, "slow down"))["type"] == "error"  # Anthropic's shape
    assert set(json.loads(copilot_models.error_body(429, "slow down"))) == {"error"}  # the family's: OpenAI's


def test_a_bedrock_model_id_is_unquoted_and_the_path_says_it_streams() -> None:
    path = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    route = classify(FAMILIES_CONFIG, "bedrock-runtime.eu-west-1.amazonaws.com", "POST", path)
    assert route is not None and route.endpoint is not None
    assert route.model == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert (route.endpoint.stream, route.api.tapped if route.api else None) == (True, False)  # tapped if signed


VERTEX_PATH = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"


def test_each_route_is_priced_as_its_family_names_models() -> None:
    def vendor(host: str, path: str) -> str:
        route = classify(FAMILIES_CONFIG, host, "POST", path)
        assert route is not None
        return route.price_vendor

    assert vendor("api.anthropic.com", "/v1/messages") == "anthropic"
    assert vendor("us-east5-aiplatform.googleapis.com", VERTEX_PATH) == "anthropic"
    assert vendor("api.githubcopilot.com", "/v1/messages") == "anthropic"  # another host, Anthropic's models
    assert vendor("bedrock-runtime.us-east-1.amazonaws.com", "/model/m/invoke") == "aws"  # Bedrock's own model ids
    assert vendor("bedrock-runtime.us-east-1.amazonaws.com", "/model/m/converse") == "aws"
    assert vendor("bedrock-mantle.us-east-1.api.aws", "/anthropic/v1/messages") == "aws"


def test_only_a_sigv4_signed_recorded_route_is_sealed() -> None:
    signed = [("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/20261202/us-east-1/bedrock/aws4_request")]
    messages = classify(FAMILIES_CONFIG, "api.anthropic.com", "POST", "/v1/messages")
    models = classify(FAMILIES_CONFIG, "api.anthropic.com", "GET", "/v1/models")
    assert messages is not None and models is not None
    assert sealed(messages, signed).tapped and not sealed(messages, signed).bridged
    assert sealed(messages, [("authorization", "Bearer k")]) is messages
    assert sealed(models, signed) is models  # passthrough: nothing to seal


@pytest.mark.parametrize(
    ("path", "keys", "rest"),
    [
        ("/v1/m:g?key=AIza%2Bx&alt=sse", ["AIza+x"], "/v1/m:g?alt=sse"),
        ("/v1/m:g?alt=sse&key=k", ["k"], "/v1/m:g?alt=sse"),
        ("/v1/m:g?key=a&alt=sse&key=b", ["a", "b"], "/v1/m:g?alt=sse"),
        ("/v1/m:g?key=k", ["k"], "/v1/m:g"),
        ("/v1/m:g?alt=sse", [], "/v1/m:g?alt=sse"),
        ("/v1/m:g?apikey=k", [], "/v1/m:g?apikey=k"),
        ("/v1/m:g", [], "/v1/m:g"),
    ],
)
def test_keys_in_the_query_are_found_and_taken_out(path: str, keys: list[str], rest: str) -> None:
    assert query_keys(path, "key") == (keys, rest)
