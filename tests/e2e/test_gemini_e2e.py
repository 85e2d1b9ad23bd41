"""Gemini through a real mitmdump with Google's own SDK (`google-genai`), configured as its users configure it,
against a mock that speaks the Gemini API exactly (both stream framings): text, thinking with signatures,
function calls, errors before and during a stream, an MCP tool loop the SDK never sees, Gemini on Vertex AI,
and the audit rows."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from addon.cli.users import new_token
from addon.config import hash_token
from tests.e2e.test_tool_loop_e2e import mcp_test_server
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy
from tests.support.scenarios import GEMINI_MODEL, gemini_array, gemini_chunks, gemini_response, gemini_sse

pytestmark = pytest.mark.e2e

KEY = "AIzaSy-gemini-key-0123456789"
STREAM_PATH = f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent?alt=sse"


@pytest.fixture
def gemini(mock: MockUpstream, start_proxy: Callable[..., Proxy]) -> Callable[..., Proxy]:
    def start(tools: bool = False, extra: str = "", top: str = "") -> Proxy:
        config = f'{top}[providers.vertex]\nupstream = "{mock.url}"\n\n[providers.gemini]\nupstream = "{mock.url}"\n'
        return start_proxy(config + extra + (mcp_test_server() if tools else ""))

    return start


def client() -> genai.Client:
    """Made once the proxy runs (it reads the proxy from the environment then); held for the test, since a
    client closes its connections when it is collected."""
    options = types.HttpOptions(api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=KEY, http_options=options)


def sse(chunks: list[dict[str, Any]]) -> Answer:
    return Answer(headers={"content-type": "text/event-stream"}, events=gemini_sse(chunks))


def declared(body: dict[str, Any]) -> list[str]:
    return [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]


def test_a_stream_with_thinking_is_relayed_byte_for_byte_and_recorded(mock: MockUpstream, gemini) -> None:
    proxy = gemini()
    sdk = client()
    chunks = gemini_chunks(["Hello ", "from Gemini."], thought="Greeting the user.")
    mock.enqueue(sse(chunks), sse(chunks))
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    seen = list(sdk.models.generate_content_stream(model=GEMINI_MODEL, contents="say hi", config=config))
    parts = [p for c in seen for p in c.candidates[0].content.parts]
    assert "".join(p.text for p in parts if not p.thought) == "Hello from Gemini."
    assert [p.thought_signature for p in parts if p.thought] == [b"signature-1"]  # base64 on the wire
    assert seen[-1].usage_metadata.thoughts_token_count == 3
    first = mock.requests[0]
    assert first.path == STREAM_PATH and first.header("x-goog-api-key") == KEY
    assert "google-genai-sdk/" in (first.header("x-goog-api-client") or "")
    with httpx.stream("POST", f"https://generativelanguage.googleapis.com{STREAM_PATH}", json=first.json()) as raw:
        assert raw.read() == b"".join(gemini_sse(chunks))  # nothing injected: the provider's bytes
    proxy.stop()
    rows = proxy.rows("SELECT provider, model, status, streaming, client FROM interceptions ORDER BY started_at")
    assert rows[0] == {
        "provider": "gemini",
        "model": GEMINI_MODEL,
        "status": "completed",
        "streaming": True,
        "client": "Google GenAI SDK",
    }
    usage = proxy.rows("SELECT input_tokens, output_tokens, cache_read_input_tokens, cost_micros FROM token_usages")
    assert (usage[0]["input_tokens"], usage[0]["output_tokens"], usage[0]["cache_read_input_tokens"]) == (8, 9, 4)
    assert usage[0]["cost_micros"]  # the price book's google/gemini-2.5-pro
    assert proxy.rows("SELECT content FROM model_thoughts")[0] == {"content": "Greeting the user."}
    assert proxy.rows("SELECT prompt FROM user_prompts")[0] == {"prompt": "say hi"}


def test_blocking_answers_several_client_calls_and_the_json_array_stream(mock: MockUpstream, gemini) -> None:
    proxy = gemini()
    sdk = client()
    calls = [("read_file", {"path": "a.py"}), ("grep", {"pattern": "TODO"})]
    mock.enqueue(Answer.json(gemini_response([], calls=calls)))
    array = gemini_array(gemini_chunks(["Arr", "ay."]))
    mock.enqueue(Answer(headers={"content-type": "application/json; charset=UTF-8"}, events=array))
    declarations = [
        types.FunctionDeclaration(name=n, description=n, parameters_json_schema={"type": "object"})
        for n in ("read_file", "grep")
    ]
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=declarations)],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    answer = sdk.models.generate_content(model=GEMINI_MODEL, contents="look", config=config)
    assert [(c.name, c.args) for c in answer.function_calls] == [(n, a) for n, a in calls]
    path = f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"  # no alt=sse: one JSON array, tapped
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.stream(
        "POST", f"https://generativelanguage.googleapis.com{path}", json=body, headers={"x-goog-api-key": KEY}
    ) as raw:
        assert raw.read() == b"".join(array)
    proxy.stop()
    rows = proxy.rows("SELECT streaming, status, model FROM interceptions ORDER BY started_at")
    assert rows == [
        {"streaming": False, "status": "completed", "model": GEMINI_MODEL},
        {"streaming": True, "status": "completed", "model": GEMINI_MODEL},
    ]
    tools = proxy.rows("SELECT tool, input, injected FROM tool_usages ORDER BY created_at")
    assert [(t["tool"], json.loads(t["input"]), t["injected"]) for t in tools] == [(n, a, False) for n, a in calls]
    assert len(proxy.rows("SELECT 1 FROM token_usages")) == 2  # the array's usage read too


def test_errors_before_and_during_a_stream(mock: MockUpstream, gemini) -> None:
    proxy = gemini()
    sdk = client()
    bad = {"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}}
    mock.enqueue(Answer.json(bad, status=400))
    cut = gemini_chunks(["partial "])
    del cut[0]["candidates"][0]["finishReason"]
    overloaded = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    mock.enqueue(
        Answer(
            headers={"content-type": "text/event-stream"},
            events=[*gemini_sse(cut), f"data: {json.dumps(overloaded)}\r\n\r\n".encode()],
        )
    )
    with pytest.raises(errors.ClientError) as refused:
        sdk.models.generate_content(model=GEMINI_MODEL, contents="hi")
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    with pytest.raises(errors.ServerError, match="overloaded"):
        list(sdk.models.generate_content_stream(model=GEMINI_MODEL, contents="hi"))
    proxy.stop()
    rows = proxy.rows("SELECT status, error FROM interceptions ORDER BY started_at")
    assert rows[0]["status"] == "failed" and "Invalid JSON payload" in rows[0]["error"]
    assert rows[1]["status"] == "failed" and "UNAVAILABLE: The model is overloaded." in rows[1]["error"]


def test_an_mcp_tool_loop_the_sdk_never_sees(mock: MockUpstream, gemini) -> None:
    """Streamed and blocking: injected as one more function-declarations entry, the call run by the bridge,
    the SDK gets one answer with no injected call and the usage of both rounds."""
    proxy = gemini(tools=True)
    sdk = client()
    echo = [("bmcp_test_echo", {"message": "pong"})]
    mock.enqueue(
        sse(gemini_chunks(["Asking. "], thought="use echo", calls=echo)),
        sse(gemini_chunks(["It said pong."], response_id="resp-2")),
        Answer.json(gemini_response([], calls=[("bmcp_test_add", {"a": 2, "b": 3})])),
        Answer.json({**gemini_response(["Five."]), "responseId": "resp-4"}),
    )
    seen = list(sdk.models.generate_content_stream(model=GEMINI_MODEL, contents="echo pong"))
    parts = [p for c in seen for p in c.candidates[0].content.parts]
    assert "".join(p.text or "" for p in parts if not p.thought) == "Asking. It said pong."
    assert [p.text for p in parts if p.thought] == ["use echo"]  # the model's thinking is the client's to see
    assert not any(p.function_call for p in parts)
    assert {c.response_id for c in seen} == {"resp-1"}
    assert seen[-1].usage_metadata.prompt_token_count == 24  # both rounds
    answer = sdk.models.generate_content(model=GEMINI_MODEL, contents="add 2 and 3")
    assert answer.text == "Five." and not answer.function_calls
    first, second, _, fourth = (r.json() for r in mock.requests)
    assert "bmcp_test_echo" in declared(first) and declared(second) == declared(first)
    assert second["contents"][-2]["parts"][-1]["thoughtSignature"] == "c2lnLTA="  # the model's turn, unchanged
    assert second["contents"][-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "bmcp_test_echo", "response": {"output": "pong"}}}],
    }
    assert fourth["contents"][-1]["parts"][0]["functionResponse"]["response"] == {"output": "5"}
    proxy.stop()
    tools = proxy.rows("SELECT tool, injected, invocation_error FROM tool_usages ORDER BY created_at")
    assert tools == [
        {"tool": "echo", "injected": True, "invocation_error": None},
        {"tool": "add", "injected": True, "invocation_error": None},
    ]
    assert len(proxy.rows("SELECT 1 FROM token_usages")) == 4  # a row per upstream round


def test_gemini_on_vertex_ai_is_bridged_with_the_google_token(mock: MockUpstream, gemini) -> None:
    from google.oauth2.credentials import Credentials

    proxy = gemini(tools=True)
    mock.enqueue(
        sse(gemini_chunks([], calls=[("bmcp_test_echo", {"message": "v"})])),
        sse(gemini_chunks(["Vertex says v."])),
    )
    vertex = genai.Client(
        vertexai=True,
        project="my-proj",
        location="us-central1",
        credentials=Credentials(token="ya29.vertex-token-0123456789"),
        http_options=types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1)),
    )
    seen = list(vertex.models.generate_content_stream(model=GEMINI_MODEL, contents="echo v"))
    assert "".join(c.text or "" for c in seen) == "Vertex says v."
    first = mock.requests[0]
    assert first.path.split("?")[0].endswith(
        f"/projects/my-proj/locations/us-central1/publishers/google/models/{GEMINI_MODEL}:streamGenerateContent"
    )
    assert all(r.header("authorization") == "Bearer ya29.vertex-token-0123456789" for r in mock.requests)
    proxy.stop()
    rows = proxy.rows("SELECT provider, model, status FROM interceptions")
    assert rows == [{"provider": "vertex", "model": GEMINI_MODEL, "status": "completed"}]


def test_a_bridge_token_in_the_url_is_replaced_by_the_central_key(mock: MockUpstream, gemini) -> None:
    """`?key=<bridge token>` (as curl users write it): the token leaves the URL and never reaches Google."""
    token = new_token()
    proxy = gemini(extra=f'key = "AIzaSy-central-0123456789"\n\n[users.alice]\ntoken = "{hash_token(token)}"\n')
    mock.enqueue(sse(gemini_chunks(["Central."])))
    url = f"https://generativelanguage.googleapis.com{STREAM_PATH.replace('?', f'?key={token}&')}"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.Client(proxy=proxy.url.replace("://", f"://alice:{token}@", 1)) as http:
        assert b"Central." in http.post(url, json=body).content
    [seen] = mock.requests
    assert seen.path == STREAM_PATH and seen.header("x-goog-api-key") == "AIzaSy-central-0123456789"
    assert token not in json.dumps(seen.headers)
    proxy.stop()
    [row] = proxy.rows("SELECT initiator, credential_kind FROM interceptions")
    assert row == {"initiator": "alice", "credential_kind": "centralized"}


def test_a_failing_second_round_ends_the_stream_with_googles_error(mock: MockUpstream, gemini) -> None:
    proxy = gemini(tools=True)
    sdk = client()
    mock.enqueue(
        sse(gemini_chunks(["Let me check. "], calls=[("bmcp_test_echo", {"message": "x"})])),
        Answer.json({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}, status=503),
    )
    stream = sdk.models.generate_content_stream(model=GEMINI_MODEL, contents="echo x")
    with pytest.raises(errors.APIError) as failed:
        for chunk in stream:
            assert not any(p.function_call for p in chunk.candidates[0].content.parts)
    assert failed.value.status == "INTERNAL" and "503" in str(failed.value)
    proxy.stop()
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row["status"] == "failed" and "overloaded" in row["error"]


def test_pings_while_a_tool_runs_are_blank_lines_the_sdk_skips(mock: MockUpstream, gemini) -> None:
    """Keep-alives between rounds: the SDK's SSE reader must not take them for chunks."""
    proxy = gemini(tools=True, top="keepalive_interval = 0.2\n")
    sdk = client()
    mock.enqueue(
        sse(gemini_chunks([], calls=[("bmcp_test_slow", {"seconds": 1.2})])),
        sse(gemini_chunks(["Rested."], response_id="resp-2")),
    )
    with httpx.stream(
        "POST",
        f"https://generativelanguage.googleapis.com{STREAM_PATH}",
        json={"contents": [{"role": "user", "parts": [{"text": "rest"}]}]},
        headers={"x-goog-api-key": KEY},
        timeout=30,
    ) as raw:
        body = raw.read()
    assert body.startswith(b"\r\n\r\n") and b"Rested." in body  # the pings came first, then the answer
    mock.enqueue(
        sse(gemini_chunks([], calls=[("bmcp_test_slow", {"seconds": 1.2})])),
        sse(gemini_chunks(["Rested again."], response_id="resp-4")),
    )
    seen = list(sdk.models.generate_content_stream(model=GEMINI_MODEL, contents="rest"))
    assert "".join(c.text or "" for c in seen) == "Rested again."
    proxy.stop()
