"""The in-process transport: the official SDKs (async) through the bridge without a network hop to it, against
the mock provider and a real MCP server."""

import asyncio
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anthropic
import duckdb
import httpx2
import openai
import pytest

from addon.inprocess import Bridge, BridgeTransport
from tests.support import sigv4
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import ROOT, provider_config
from tests.support.scenarios import anthropic_events, anthropic_message, chat_completion, responses_events

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "hi"}]
MCP = (
    f"[mcp_servers.test]\ncommand = {json.dumps(sys.executable)}\n"
    'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]\n'
    f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}\n'
)


@pytest.fixture
async def open_bridge(mock: MockUpstream, tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    opened: list[Bridge] = []

    async def open_(extra: str = "") -> Bridge:
        config = tmp_path / "aibridge.toml"
        config.write_text(provider_config(mock.url) + "\n" + extra)
        bridge = await Bridge.open(str(config), db=str(tmp_path / "audit.duckdb"))
        opened.append(bridge)
        return bridge

    yield open_
    for bridge in opened:
        await bridge.aclose()


def rows(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "audit.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()


def sdk(transport: BridgeTransport) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-ant-own-key-0123456789", max_retries=0, http_client=httpx2.AsyncClient(transport=transport)
    )


def test_a_transport_needs_a_bridge() -> None:
    with pytest.raises(TypeError, match="needs a Bridge"):
        BridgeTransport(None, source="agents", initiator="bot")


async def test_source_and_identity_are_recorded_and_cannot_be_forged(
    mock: MockUpstream, open_bridge, tmp_path: Path
) -> None:
    bridge = await open_bridge()
    mock.enqueue(Answer.json(anthropic_message("ok")))
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-own-key-0123456789",
        max_retries=0,
        http_client=httpx2.AsyncClient(
            transport=bridge.transport(source="agents", initiator="build-bot", api_key_id="key-42")
        ),
        default_headers={"X-AI-Bridge-Actor-ID": "mallory", "X-Source": "forged"},
    )
    raw = await client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES)
    assert (await raw.parse()).content[0].text == "ok"
    assert mock.requests[0].header("x-ai-bridge-actor-id") is None
    await bridge.aclose()
    [(initiator, metadata, kind, interception_id)] = rows(
        tmp_path, "SELECT initiator, metadata, credential_kind, id::VARCHAR FROM interceptions"
    )
    assert initiator == "build-bot" and kind == "byok"
    assert json.loads(metadata) == {"source": "agents", "api_key_id": "key-42"}
    assert raw.headers["x-aibridge-interception-id"] == interception_id


async def test_status_and_headers_pass_through(mock: MockUpstream, open_bridge) -> None:
    bridge = await open_bridge()
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    mock.enqueue(Answer.json(body, 429, {"retry-after": "7", "request-id": "req_9"}))
    with pytest.raises(anthropic.RateLimitError) as err:
        await sdk(bridge.transport(source="t", initiator="u")).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
        )
    assert err.value.response.headers["retry-after"] == "7" and err.value.response.headers["request-id"] == "req_9"
    assert err.value.body == body


async def test_streams_are_visible_before_the_bridge_finishes(mock: MockUpstream, open_bridge) -> None:
    bridge = await open_bridge()
    gate = threading.Event()
    mock.enqueue(Answer.sse(anthropic_events(["first ", "second"]), gate=gate))
    texts = []
    async with sdk(bridge.transport(source="t", initiator="u")).messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
    ) as stream:
        async for text in stream.text_stream:
            texts.append(text)
            gate.set()
    assert not mock.gate_timed_out and "".join(texts) == "first second"


async def test_cancelling_the_caller_cancels_the_bridge_work(mock: MockUpstream, open_bridge, tmp_path: Path) -> None:
    bridge = await open_bridge()
    mock.enqueue(Answer.sse(anthropic_events(["tok "] * 200), delay=0.05))
    started = asyncio.Event()

    async def consume() -> None:
        async with sdk(bridge.transport(source="t", initiator="u")).messages.stream(
            model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
        ) as stream:
            async for _ in stream.text_stream:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(mock.stream_aborted.wait, 5), "the upstream call was not cancelled"
    await bridge.aclose()
    assert rows(tmp_path, "SELECT status FROM interceptions") == [("cancelled",)]


async def test_answers_that_break_off_fail_at_once(mock: MockUpstream, open_bridge, tmp_path: Path) -> None:
    """A blocking answer cut off after its headers is a provider-shaped 502; a stream relayed in an encoding the
    bridge cannot add an error event to breaks off as a broken connection would. Neither leaves the caller
    waiting."""
    bridge = await open_bridge()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 303\r\n\r\n"
    events = anthropic_events(["a", "b"])
    mock.enqueue(
        Answer(raw_response=head),
        Answer(
            headers={"content-type": "text/event-stream", "content-encoding": "x-opaque"}, events=events, cut_after=2
        ),
    )
    transport = bridge.transport(source="t", initiator="u")
    with pytest.raises(anthropic.APIStatusError) as err:
        await sdk(transport).messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES)
    assert err.value.status_code == 502 and err.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    async with httpx2.AsyncClient(transport=transport, timeout=30) as client:
        body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "stream": True, "messages": MESSAGES}
        async with client.stream("POST", "https://api.anthropic.com/v1/messages", json=body) as response:
            with pytest.raises(httpx2.RemoteProtocolError, match="mid-response"):
                async for _ in response.aiter_raw():
                    pass
    await bridge.aclose()
    assert rows(tmp_path, "SELECT status, http_status FROM interceptions ORDER BY started_at") == [
        ("failed", 502),
        ("failed", 200),
    ]


async def test_concurrent_requests_are_independent(mock: MockUpstream, open_bridge, tmp_path: Path) -> None:
    bridge = await open_bridge()
    for n in range(6):
        mock.enqueue(Answer.sse(anthropic_events([f"answer {n}"], msg_id=f"m{n}"), delay=0.05))

    async def one(n: int) -> str:
        transport = bridge.transport(source="t", initiator=f"user{n}")
        async with sdk(transport).messages.stream(model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES) as stream:
            return "".join([t async for t in stream.text_stream])

    answers = await asyncio.gather(*(one(n) for n in range(6)))
    assert sorted(answers) == [f"answer {n}" for n in range(6)]
    await bridge.aclose()
    assert sorted(r[0] for r in rows(tmp_path, "SELECT initiator FROM interceptions WHERE status = 'completed'")) == [
        f"user{n}" for n in range(6)
    ]


async def test_a_bridge_exception_becomes_a_provider_shaped_500(open_bridge, monkeypatch, tmp_path: Path) -> None:
    bridge = await open_bridge()

    async def broken(job):
        raise RuntimeError("boom")

    monkeypatch.setattr(bridge.engine, "open", broken)
    with pytest.raises(anthropic.InternalServerError) as err:
        await sdk(bridge.transport(source="t", initiator="u")).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
        )
    assert err.value.body["error"] == {"type": "api_error", "message": "internal bridge error"}  # type: ignore[index]
    await bridge.aclose()
    assert rows(tmp_path, "SELECT status, http_status FROM interceptions") == [("failed", 500)]


async def test_an_answer_without_a_body_is_a_clean_empty_response(mock: MockUpstream, open_bridge) -> None:
    bridge = await open_bridge()
    mock.enqueue(Answer(200, {"content-type": "application/json"}, b""))
    async with httpx2.AsyncClient(transport=bridge.transport(source="t", initiator="u")) as client:
        response = await client.post(
            "https://api.anthropic.com/v1/messages", json={"model": "m", "max_tokens": 8, "messages": MESSAGES}
        )
    assert response.status_code == 200 and response.content == b""


async def test_the_sdks_run_the_tool_loop_in_process(mock: MockUpstream, open_bridge, tmp_path: Path) -> None:
    bridge = await open_bridge(MCP)
    mock.enqueue(
        Answer.sse(anthropic_events(["Checking. "], tools=[("t1", "bmcp_test_echo", {"message": "pong"})])),
        Answer.sse(anthropic_events(["It said pong."])),
        Answer.json(chat_completion(None, tools=[("c1", "bmcp_test_add", '{"a": 2, "b": 2}')])),
        Answer.json(chat_completion("Four.")),
    )
    transport = bridge.transport(source="agents", initiator="bot")
    async with sdk(transport).messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "text"]
    assert "".join(b.text for b in final.content) == "Checking. It said pong."
    chat = openai.AsyncOpenAI(api_key="sk-proj-own", max_retries=0, http_client=httpx2.AsyncClient(transport=transport))
    completion = await chat.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert completion.choices[0].message.content == "Four."
    assert mock.requests[3].json()["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "4"}
    await bridge.aclose()
    assert sorted(rows(tmp_path, "SELECT tool, injected FROM tool_usages")) == [("add", True), ("echo", True)]


async def test_passthrough_paths_reach_the_upstream(mock: MockUpstream, open_bridge) -> None:
    bridge = await open_bridge()
    mock.enqueue(Answer(200, {"content-type": "application/json"}, b'{"data": [ ]}'))
    async with httpx2.AsyncClient(transport=bridge.transport(source="t", initiator="u")) as client:
        response = await client.get("https://api.openai.com/v1/models", headers={"authorization": "Bearer sk-x"})
        missing = await client.get("https://example.org/")
    assert response.content == b'{"data": [ ]}' and mock.requests[0].path == "/v1/models"
    assert missing.status_code == 404


async def test_responses_pass_through_unchanged_and_are_recorded(
    mock: MockUpstream, open_bridge, tmp_path: Path
) -> None:
    bridge = await open_bridge()
    events = responses_events("In process.", response_id="resp_ip")
    mock.enqueue(Answer.sse(events), Answer.json({"error": {"message": "nope", "type": "invalid_request_error"}}, 400))
    transport = bridge.transport(source="agents", initiator="bot")
    async with httpx2.AsyncClient(transport=transport) as client:
        async with client.stream(
            "POST", "https://api.openai.com/v1/responses", content=b'{"model":"gpt-5","input":"hi","stream":true}'
        ) as response:
            received = b"".join([chunk async for chunk in response.aiter_raw()])
        sdk_client = openai.AsyncOpenAI(api_key="sk-own-0123456789", max_retries=0, http_client=client)
        with pytest.raises(openai.BadRequestError):
            await sdk_client.responses.create(model="gpt-5", input="again")
    assert received == b"".join(events)
    assert "aibridge_interception_id" not in response.extensions
    await bridge.aclose()
    recorded = rows(
        tmp_path,
        "SELECT initiator, client, status, http_status, metadata->>'source' FROM interceptions ORDER BY started_at",
    )
    assert recorded == [("bot", "Unknown", "completed", 200, "agents"), ("bot", "Unknown", "failed", 400, "agents")]
    assert rows(tmp_path, "SELECT provider_response_id, input_tokens, cache_read_input_tokens FROM token_usages") == [
        ("resp_ip", 20, 100)
    ]


async def test_bedrock_calls_are_signed_with_the_operators_aws_credentials(mock: MockUpstream, open_bridge) -> None:
    """An in-process caller sending no credential, on a provider given AWS credentials: bridged, tapped and
    passed-through calls each reach Bedrock signed by the bridge (what botocore's signer accepts)."""
    bridge = await open_bridge(
        f'[providers.bedrock]\nupstream = "{mock.url}"\n'
        'aws_access_key_id = "AKIAOPERATOR00000000"\naws_secret_access_key = "operator-secret"\n'
        'aws_region = "eu-west-1"\n'
    )
    mock.enqueue(
        Answer.json(anthropic_message("Invoked.")),
        Answer.json({"output": {"message": {"role": "assistant", "content": [{"text": "Conversed."}]}}}),
        Answer.json({"inputTokens": 3}),
        Answer.json({"asyncInvokeSummaries": []}),
    )
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-sonnet-4-5-20250929-v1:0"
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "messages": MESSAGES}
    async with httpx2.AsyncClient(transport=bridge.transport(source="t", initiator="u")) as client:
        invoked = await client.post(f"{url}/invoke", json=body)
        conversed = await client.post(
            f"{url}/converse", json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
        )
        counted = await client.post(f"{url}/count-tokens", json={"input": {"invokeModel": {"body": "{}"}}})
        listed = await client.get("https://bedrock-runtime.us-east-1.amazonaws.com/async-invoke")  # signed as a GET
    assert (
        invoked.json()["content"][0]["text"] == "Invoked."
        and conversed.status_code == counted.status_code == listed.status_code == 200
    )
    assert [r.method for r in mock.requests] == ["POST", "POST", "POST", "GET"]
    for seen in mock.requests:
        assert sigv4.scope(seen.header("authorization"))["region"] == "eu-west-1"  # as configured
        assert sigv4.valid(seen.method, seen.path, seen.headers, seen.body, "operator-secret"), seen.path
