"""Provider families beyond api.anthropic.com and api.openai.com, through a real mitmdump with the official SDKs
configured as their users configure them: Azure OpenAI, OpenAI- and Anthropic-compatible endpoints under a path
prefix, Codex logged in with ChatGPT, and GitHub Copilot. Each is recorded with its provider and model; bridged
ones get injected tools and the loop; tapped ones reach the client byte for byte."""

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from addon.cli.users import new_token
from addon.config import hash_token
from addon.wire.eventstream import encode
from addon.wire.framing import EVENT_STREAM
from tests.e2e.test_tool_loop_e2e import injected_names, mcp_test_server
from tests.support import sigv4
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy
from tests.support.scenarios import (
    anthropic_events,
    anthropic_message,
    bedrock_frames,
    chat_chunks,
    chat_completion,
    converse_frames,
    converse_response,
    responses_events,
)

MESSAGES = [{"role": "user", "content": "hi"}]
AZURE_KEY = "azure-key-0123456789abcdef"


def upstreams(mock: MockUpstream, **providers: dict[str, str]) -> str:
    """TOML sending each named provider (a default one by its name, or a new one with its type and host) to
    the mock."""
    tables = []
    for name, keys in providers.items():
        lines = [f"[providers.{name}]", f'upstream = "{mock.url}"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
        tables.append("\n".join(lines) + "\n")
    return "\n".join(tables)


@pytest.fixture
def proxy_for(mock: MockUpstream, start_proxy: Callable[..., Proxy]) -> Callable[..., Proxy]:
    def start(tools: bool = False, **providers: dict[str, str]) -> Proxy:
        return start_proxy(upstreams(mock, **providers) + (mcp_test_server() if tools else ""))

    return start


def test_azure_openai_deployment_is_bridged_with_its_key_and_the_model_of_the_deployment(
    mock: MockUpstream, proxy_for
) -> None:
    proxy = proxy_for(tools=True, azure={})
    mock.enqueue(
        Answer.json(
            chat_completion(None, completion_id="az1", tools=[("call_1", "bmcp_test_echo", '{"message": "x"}')])
        ),
        Answer.json(chat_completion("Echoed.", completion_id="az2")),
        Answer.sse(chat_chunks(["Str", "eamed."], completion_id="az3")),
    )
    client = openai.AzureOpenAI(
        azure_endpoint="https://team-east.openai.azure.com", api_key=AZURE_KEY, api_version="2024-10-21", max_retries=0
    )
    completion = client.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echoed."
    assert completion.choices[0].message.tool_calls is None  # the injected call never reaches the client
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES, stream=True)
        if c.choices
    )
    assert text == "Streamed."
    first, second, third = mock.requests
    assert first.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert first.header("api-key") == AZURE_KEY and first.header("authorization") is None
    assert injected_names(first.json()) and second.json()["messages"][-1]["role"] == "tool"
    assert third.path == first.path
    proxy.stop()
    rows = proxy.rows(
        "SELECT provider, provider_name, model, status, credential_hint FROM interceptions ORDER BY started_at"
    )
    assert [(r["provider"], r["model"], r["status"]) for r in rows] == [("azure", "gpt-4o-prod", "completed")] * 2
    assert rows[0]["credential_hint"] == "azur...cdef"
    assert proxy.rows("SELECT tool, injected FROM tool_usages") == [{"tool": "echo", "injected": True}]


def test_azure_deployment_names_the_model_when_the_body_has_none(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(azure={})
    mock.enqueue(Answer.json(chat_completion("ok", completion_id="az")))
    url = "https://team.openai.azure.com/openai/deployments/gpt-4o-mini-eu/chat/completions?api-version=2024-10-21"
    response = httpx.post(url, json={"messages": MESSAGES}, headers={"api-key": AZURE_KEY}, timeout=30)
    assert response.json()["choices"][0]["message"]["content"] == "ok"
    proxy.stop()
    [row] = proxy.rows("SELECT provider, model FROM interceptions")
    assert row == {"provider": "azure", "model": "gpt-4o-mini-eu"}


def test_compatible_endpoints_under_a_prefix_are_bridged(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(
        tools=True,
        router={"type": "openai", "host": "openrouter.ai"},
        zai={"type": "anthropic", "host": "api.z.ai"},
    )
    mock.enqueue(
        Answer.sse(chat_chunks(["Routed."], completion_id="or1")),
        Answer.sse(anthropic_events(["Compatible."])),
    )
    chat = openai.OpenAI(base_url="https://openrouter.ai/api/v1", api_key="sk-or-v1-0123456789", max_retries=0)
    chunks = list(chat.chat.completions.create(model="deepseek/deepseek-chat", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Routed."
    messages = anthropic.Anthropic(base_url="https://api.z.ai/api/anthropic", api_key="zai-0123456789", max_retries=0)
    with messages.messages.stream(model="glm-4.6", max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text() == "Compatible."
    router, zai = mock.requests
    assert router.path == "/api/v1/chat/completions" and injected_names(router.json())
    assert zai.path == "/api/anthropic/v1/messages" and injected_names(zai.json())
    proxy.stop()
    rows = proxy.rows("SELECT provider, provider_name, model, route FROM interceptions ORDER BY started_at")
    assert rows == [
        {
            "provider": "openai",
            "provider_name": "router",
            "model": "deepseek/deepseek-chat",
            "route": "/api/v1/chat/completions",
        },
        {"provider": "anthropic", "provider_name": "zai", "model": "glm-4.6", "route": "/api/anthropic/v1/messages"},
    ]


def test_codex_logged_in_with_chatgpt_is_tapped_byte_for_byte_with_the_account_hint(
    mock: MockUpstream, proxy_for
) -> None:
    proxy = proxy_for(chatgpt={})
    events = responses_events("From ChatGPT.", response_id="resp_chatgpt", model="gpt-5-codex")
    mock.enqueue(Answer.sse(events))
    client = openai.OpenAI(
        base_url="https://chatgpt.com/backend-api/codex",
        api_key="eyJchatgpt-access-token-0123456789",
        default_headers={"ChatGPT-Account-ID": "acct-5f0e1d2c3b4a"},
        max_retries=0,
    )
    with client.responses.with_streaming_response.create(
        model="gpt-5-codex", input="hi", stream=True, instructions="be brief"
    ) as response:
        relayed = response.read()
    assert relayed == b"".join(events)  # tapped: the client gets the provider's bytes
    [seen] = mock.requests
    assert seen.path == "/backend-api/codex/responses"
    assert seen.header("authorization") == "Bearer eyJchatgpt-access-token-0123456789"
    proxy.stop()
    [row] = proxy.rows("SELECT provider, model, status, metadata FROM interceptions")
    assert (row["provider"], row["model"], row["status"]) == ("chatgpt", "gpt-5-codex", "completed")
    assert json.loads(row["metadata"])["account_hint"] == "ac...4a"
    assert proxy.rows("SELECT output_tokens FROM token_usages") == [{"output_tokens": 9}]


def test_copilot_loop_calls_say_they_are_the_agents(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(tools=True, copilot={})
    mock.enqueue(
        Answer.sse(chat_chunks([], tools=[("call_1", "bmcp_test_echo", '{"message": "x"}')], completion_id="cp1")),
        Answer.sse(chat_chunks(["Done."], completion_id="cp2")),
    )
    client = openai.OpenAI(
        base_url="https://api.business.githubcopilot.com",
        api_key="ghu_copilot-token-0123456789",
        default_headers={"Copilot-Integration-Id": "vscode-chat", "X-Initiator": "user"},
        max_retries=0,
    )
    chunks = list(client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Done."
    first, second = mock.requests
    assert first.path == "/chat/completions"
    assert first.header("x-initiator") == "user" and second.header("x-initiator") == "agent"
    assert second.header("authorization") == "Bearer ghu_copilot-token-0123456789"
    assert first.header("copilot-integration-id") == second.header("copilot-integration-id") == "vscode-chat"
    proxy.stop()
    [row] = proxy.rows("SELECT provider, model, status FROM interceptions")
    assert row == {"provider": "copilot", "model": "gpt-4.1", "status": "completed"}


def test_anthropic_on_vertex_is_bridged_with_the_model_of_the_path(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(tools=True, vertex={})
    mock.enqueue(
        Answer.sse(anthropic_events([], tools=[("toolu_1", "bmcp_test_echo", {"message": "v"})])),
        Answer.sse(anthropic_events(["From Vertex."])),
        Answer.json(anthropic_message("Blocking Vertex.")),
    )
    client = anthropic.AnthropicVertex(
        region="us-east5", project_id="proj-1", access_token="ya29.vertex-token-0123456789", max_retries=0
    )
    with client.messages.stream(model="claude-sonnet-4-5@20250929", max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text() == "From Vertex."
    blocking = client.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=64, messages=MESSAGES)
    assert blocking.content[0].text == "Blocking Vertex."
    first, second, third = mock.requests
    models = "/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"
    assert (first.path, second.path, third.path) == (f"{models}:streamRawPredict",) * 2 + (f"{models}:rawPredict",)
    assert first.header("authorization") == "Bearer ya29.vertex-token-0123456789"
    assert "model" not in first.json() and first.json()["anthropic_version"]  # as the client sent them
    assert injected_names(first.json()) and second.json()["messages"][-1]["content"][0]["type"] == "tool_result"
    proxy.stop()
    rows = proxy.rows("SELECT provider, model, status FROM interceptions ORDER BY started_at")
    assert rows == [{"provider": "vertex", "model": "claude-sonnet-4-5@20250929", "status": "completed"}] * 2
    assert all(r["cost_micros"] for r in proxy.rows("SELECT cost_micros FROM token_usages"))  # priced by the book


def test_anthropic_on_foundry_is_bridged(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(foundry={})
    mock.enqueue(Answer.sse(anthropic_events(["From Foundry."])))
    client = anthropic.AnthropicFoundry(resource="team-ai", api_key="foundry-key-0123456789", max_retries=0)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text() == "From Foundry."
    [seen] = mock.requests
    assert seen.path.split("?")[0] == "/anthropic/v1/messages"
    assert seen.header("x-api-key") == "foundry-key-0123456789"
    proxy.stop()
    [row] = proxy.rows("SELECT provider, model, status FROM interceptions")
    assert row == {"provider": "foundry", "model": "claude-sonnet-4-5", "status": "completed"}


# --- Amazon Bedrock: recorded, passed through unchanged (SigV4 covers the body) -----------------------------

BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
BEDROCK_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": MESSAGES}


def bedrock() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIAEXAMPLEKEY000000",
        aws_secret_access_key="secret-example",
        config=Config(retries={"max_attempts": 1}),
    )


def test_bedrock_invoke_with_response_stream_is_recorded_and_relayed_unchanged(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(bedrock={})
    frames = bedrock_frames(anthropic_events(["From ", "Bedrock."]))
    mock.enqueue(Answer(headers={"content-type": EVENT_STREAM}, events=frames))
    mock.enqueue(Answer(headers={"content-type": EVENT_STREAM}, events=frames))
    response = bedrock().invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))
    events = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == "From Bedrock."
    first = mock.requests[0]
    assert first.path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    assert first.header("authorization").startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY000000/")
    assert first.body == json.dumps(BEDROCK_BODY).encode()  # the signed body, unchanged
    # The bytes the client gets are the provider's.
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke-with-response-stream"
    with httpx.stream("POST", url, json=BEDROCK_BODY, headers={"authorization": "AWS4-HMAC-SHA256 x"}) as raw:
        assert raw.read() == b"".join(frames)
    proxy.stop()
    rows = proxy.rows("SELECT provider, model, status, streaming FROM interceptions ORDER BY started_at")
    assert rows[0] == {"provider": "bedrock", "model": BEDROCK_MODEL, "status": "completed", "streaming": True}
    usage = proxy.rows("SELECT input_tokens, output_tokens, cost_micros FROM token_usages ORDER BY created_at")
    assert usage[0]["output_tokens"] > 0 and usage[0]["cost_micros"]  # priced by the response's model
    assert proxy.rows("SELECT prompt FROM user_prompts")[0] == {"prompt": "hi"}


def test_bedrock_invoke_blocking_and_an_exception_frame(mock: MockUpstream, proxy_for) -> None:
    proxy = proxy_for(bedrock={})
    mock.enqueue(Answer.json(anthropic_message("Blocking Bedrock.")))
    throttled = encode(
        {":message-type": "exception", ":exception-type": "throttlingException", ":content-type": "application/json"},
        b'{"message": "Too many tokens, please wait."}',
    )
    events = anthropic_events(["cut"])
    mock.enqueue(Answer(headers={"content-type": EVENT_STREAM}, events=[*bedrock_frames(events[:2]), throttled]))
    client = bedrock()
    answer = json.loads(client.invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"].read())
    assert answer["content"][0]["text"] == "Blocking Bedrock."
    from botocore.exceptions import EventStreamError

    stream = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"]
    with pytest.raises(EventStreamError, match="Too many tokens"):
        list(stream)
    proxy.stop()
    rows = proxy.rows("SELECT status, error, streaming FROM interceptions ORDER BY started_at")
    assert rows[0] == {"status": "completed", "error": None, "streaming": False}
    assert rows[1]["status"] == "failed" and "Too many tokens" in rows[1]["error"] and rows[1]["streaming"]


def test_anthropics_bedrock_client_streams_through_the_tap(mock: MockUpstream, proxy_for) -> None:
    """`AnthropicBedrock` signs with SigV4 and reads the event stream itself; the bridge records it unchanged."""
    proxy = proxy_for(bedrock={})
    mock.enqueue(Answer(headers={"content-type": EVENT_STREAM}, events=bedrock_frames(anthropic_events(["Via SDK."]))))
    client = anthropic.AnthropicBedrock(
        aws_region="us-west-2", aws_access_key="AKIAEXAMPLEKEY000000", aws_secret_key="secret-example", max_retries=0
    )
    with client.messages.stream(model=BEDROCK_MODEL, max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text() == "Via SDK."
    [seen] = mock.requests
    assert seen.path.startswith("/model/anthropic.claude-sonnet-4-5-20250929-v1") and seen.path.endswith(
        "/invoke-with-response-stream"
    )
    assert seen.header("authorization").startswith("AWS4-HMAC-SHA256 ")
    proxy.stop()
    [row] = proxy.rows("SELECT provider, model, status, streaming FROM interceptions")
    assert row == {"provider": "bedrock", "model": BEDROCK_MODEL, "status": "completed", "streaming": True}


CONVERSE_BODY = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 64}}


def test_bedrock_converse_stream_and_converse_are_recorded_and_relayed_unchanged(mock: MockUpstream, proxy_for) -> None:
    """opencode, Cline, Roo and Goose call Converse: boto3 reads the mock's frames with botocore's own parser."""
    proxy = proxy_for(bedrock={})
    frames = converse_frames(["From ", "Converse."], reasoning="hmm", tools=[("tu_1", "read", '{"path": "a"}')])
    mock.enqueue(Answer(headers={"content-type": EVENT_STREAM}, events=frames))
    mock.enqueue(Answer.json(converse_response("Whole.")))
    client = bedrock()
    stream = client.converse_stream(modelId=BEDROCK_MODEL, **CONVERSE_BODY)["stream"]
    events = list(stream)
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == "From Converse."
    assert events[-1]["metadata"]["usage"]["inputTokens"] == 11
    answer = client.converse(modelId=BEDROCK_MODEL, **CONVERSE_BODY)
    assert answer["output"]["message"]["content"] == [{"text": "Whole."}]
    assert [r.path for r in mock.requests] == [
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream",
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
    ]
    assert json.loads(mock.requests[0].body) == CONVERSE_BODY  # the signed body, unchanged
    proxy.stop()
    rows = proxy.rows("SELECT provider, model, status, streaming FROM interceptions ORDER BY started_at")
    assert rows == [
        {"provider": "bedrock", "model": BEDROCK_MODEL, "status": "completed", "streaming": True},
        {"provider": "bedrock", "model": BEDROCK_MODEL, "status": "completed", "streaming": False},
    ]
    usage = proxy.rows(
        "SELECT input_tokens, cache_read_input_tokens, output_tokens, cost_micros FROM token_usages ORDER BY created_at"
    )
    assert [(u["input_tokens"], u["cache_read_input_tokens"], u["output_tokens"]) for u in usage] == [(11, 10, 6)] * 2
    assert all(u["cost_micros"] for u in usage)  # Bedrock's model id, in the price book's `aws` prices
    assert proxy.rows("SELECT tool, input, injected FROM tool_usages") == [
        {"tool": "read", "input": '{"path": "a"}', "injected": False}
    ]
    assert proxy.rows("SELECT content FROM model_thoughts") == [{"content": "hmm"}]
    assert proxy.rows("SELECT prompt FROM user_prompts") == [{"prompt": "hi"}] * 2


def test_bedrock_invoke_with_an_api_key_runs_the_tool_loop_in_frames_botocore_reads(
    mock: MockUpstream, proxy_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3 with a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`): bridged. The frames the client gets, rewritten
    where the injected call is hidden, pass botocore's checksums; the blocking call gets one merged body."""
    proxy = proxy_for(tools=True, bedrock={})
    call = [("toolu_1", "bmcp_test_echo", {"message": "x"})]
    mock.enqueue(
        Answer(headers={"content-type": EVENT_STREAM}, events=bedrock_frames(anthropic_events([""], tools=call))),
        Answer(headers={"content-type": EVENT_STREAM}, events=bedrock_frames(anthropic_events(["Echoed."]))),
        Answer.json(anthropic_message("", tools=call)),
        Answer.json(anthropic_message("Echoed whole.")),
    )
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKbedrock-api-key-0123456789")
    import boto3
    from botocore.config import Config

    client = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    stream = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"]
    events = [json.loads(e["chunk"]["bytes"]) for e in stream]
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == "Echoed."
    assert all(e.get("content_block", {}).get("type") != "tool_use" for e in events)  # the injected call hidden
    whole = json.loads(client.invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"].read())
    assert [b["text"] for b in whole["content"]] == ["Echoed whole."]
    assert all(r.header("authorization") == "Bearer ABSKbedrock-api-key-0123456789" for r in mock.requests)
    assert injected_names(mock.requests[0].json()) and mock.requests[1].json()["messages"][-1]["role"] == "user"
    proxy.stop()
    rows = proxy.rows("SELECT provider, status, streaming, metadata FROM interceptions ORDER BY started_at")
    assert [(r["provider"], r["status"], r["streaming"], r["metadata"]) for r in rows] == [
        ("bedrock", "completed", True, None),
        ("bedrock", "completed", False, None),
    ]
    assert proxy.rows("SELECT tool, injected FROM tool_usages") == [{"tool": "echo", "injected": True}] * 2


# --- Bedrock with the operator's AWS credentials: the bridge signs, so the loop runs -------------------------

OPERATOR_SECRET = "operator-secret-0123456789"


def signed_by_the_operator(seen: Any) -> bool:
    return sigv4.scope(seen.header("authorization"))["key"] == "AKIAOPERATOR00000000" and sigv4.valid(
        seen.method, seen.path, seen.headers, seen.body, OPERATOR_SECRET
    )


def test_bedrock_with_the_operators_aws_credentials_signs_every_call_and_runs_the_loop(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user on a closed proxy who sends no AWS credentials (boto3 unsigned), or their bridge token as the
    Bedrock API key: the bridge signs each upstream call (the tool loop's too, each for its own body) with the
    operator's credentials, which botocore's signer accepts; Converse is passed unchanged but signed; the
    user's own SigV4 signature is theirs (BYOK) and passes as it came."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    token = new_token()
    proxy = start_proxy(
        f'[providers.bedrock]\nupstream = "{mock.url}"\naws_access_key_id = "AKIAOPERATOR00000000"\n'
        'aws_secret_access_key = "env:TEST_OPERATOR_SECRET"\n\n'
        f'[users.alice]\ntoken = "{hash_token(token)}"\n' + mcp_test_server(),
        env={"TEST_OPERATOR_SECRET": OPERATOR_SECRET},
    )
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, proxy.url.replace("://", f"://alice:{token}@", 1))
    call = [("toolu_1", "bmcp_test_echo", {"message": "x"})]
    mock.enqueue(
        Answer(headers={"content-type": EVENT_STREAM}, events=bedrock_frames(anthropic_events([""], tools=call))),
        Answer(headers={"content-type": EVENT_STREAM}, events=bedrock_frames(anthropic_events(["Echoed."]))),
        Answer.json(converse_response("Conversed.")),
        Answer.json(anthropic_message("With the token.")),
        Answer.json(anthropic_message("Own signature.")),
    )
    retries = {"retries": {"max_attempts": 1}}
    unsigned = boto3.client(
        "bedrock-runtime", region_name="us-east-1", config=Config(signature_version=UNSIGNED, **retries)
    )
    stream = unsigned.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"]
    events = [json.loads(e["chunk"]["bytes"]) for e in stream]
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == "Echoed."
    answer = unsigned.converse(modelId=BEDROCK_MODEL, **CONVERSE_BODY)
    assert answer["output"]["message"]["content"] == [{"text": "Conversed."}]
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", token)
    keyed = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(**retries))
    whole = json.loads(keyed.invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"].read())
    assert whole["content"][0]["text"] == "With the token."
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK")
    own = json.loads(bedrock().invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(BEDROCK_BODY))["body"].read())
    assert own["content"][0]["text"] == "Own signature."

    loop_first, loop_second, converse, with_token, own_call = mock.requests
    assert injected_names(loop_first.json()) and loop_second.json()["messages"][-1]["role"] == "user"
    for seen in (loop_first, loop_second, converse, with_token):
        assert signed_by_the_operator(seen), seen.headers
        assert sigv4.scope(seen.header("authorization"))["region"] == "us-east-1"  # the host's
    assert json.loads(converse.body) == CONVERSE_BODY  # tapped: signed as it came
    assert own_call.header("authorization").startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY000000/")
    assert all(token not in json.dumps(r.headers) for r in mock.requests)
    proxy.stop()
    rows = proxy.rows(
        "SELECT initiator, credential_kind, credential_hint, status, metadata FROM interceptions ORDER BY started_at"
    )
    assert [(r["initiator"], r["credential_kind"], r["status"]) for r in rows] == [
        ("alice", "centralized", "completed"),
        ("alice", "centralized", "completed"),
        ("alice", "centralized", "completed"),
        ("alice", "byok", "completed"),
    ]
    assert [r["credential_hint"] for r in rows] == ["AKIA...0000"] * 4
    assert json.loads(rows[3]["metadata"]) == {"tapped": "the body is SigV4-signed"}  # and the others bridged
    assert proxy.rows("SELECT tool, injected FROM tool_usages") == [{"tool": "echo", "injected": True}]
