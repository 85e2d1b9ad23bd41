"""The Responses API through a real mitmdump: passed through byte for byte, streamed, and recorded on the way;
WebSocket upgrades on provider hosts pass through too."""

import asyncio
import gzip
import json
import ssl
import threading
from collections.abc import Callable

import aiohttp
import httpx
import openai
import pytest

from addon.config import hash_token
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import responses_events

URL = "https://api.openai.com/v1/responses"
KEY = "sk-proj-responses-0123456789"
CODEX = {"user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm", "session-id": "codex-sess-1"}
REQUEST = b'{"model":"gpt-5","stream":true,  "input":[{"type":"message","role":"user","content":"say hi"}]}'


def test_stream_is_relayed_live_unchanged_and_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    events = responses_events("Hi from the tap.")
    gate = threading.Event()
    mock.enqueue(Answer.sse(events, gate=gate))
    chunks = []
    with (
        httpx.Client() as client,
        client.stream("POST", URL, content=REQUEST, headers={**CODEX, "authorization": f"Bearer {KEY}"}) as response,
    ):
        assert "x-aibridge-interception-id" not in response.headers
        for chunk in response.iter_raw():
            chunks.append(chunk)
            gate.set()  # the last event is sent only once the client saw the first ones
    assert not mock.gate_timed_out, "the stream was buffered"
    assert b"".join(chunks) == b"".join(events)
    assert mock.requests[0].body == REQUEST and mock.requests[0].header("authorization") == f"Bearer {KEY}"

    proxy.stop()
    [row] = proxy.rows("SELECT * FROM interceptions")
    assert (row["client"], row["client_session_id"], row["session_id"]) == ("Codex", "codex-sess-1", "codex-sess-1")
    assert (row["model"], row["response_model"], row["streaming"], row["status"]) == (
        "gpt-5",
        "gpt-5-2025-08-07",
        True,
        "completed",
    )
    assert (row["credential_kind"], row["credential_hint"]) == ("byok", "sk-p...6789")
    [usage] = proxy.rows("SELECT * FROM token_usages")
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]) == (20, 100, 9)
    assert json.loads(usage["metadata"]) == {"reasoning": 4}
    assert usage["cost_micros"] is not None and usage["cost_micros"] > 0
    assert proxy.rows("SELECT prompt FROM user_prompts") == [{"prompt": "say hi"}]
    with open(proxy.db_path, "rb") as audit:
        assert KEY.encode() not in audit.read(), "the key reached the audit file"


def test_sdk_blocking_and_gzip_encoded_stream(mock: MockUpstream, proxy: Proxy) -> None:
    """The official SDK's blocking call, and a gzip-encoded stream (read by the tap, relayed still encoded)."""
    body = {
        "id": "resp_b",
        "object": "response",
        "model": "gpt-5-2025-08-07",
        "status": "completed",
        "output": [
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "add", "arguments": '{"a":1}'},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"query": "q"}},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }
    mock.enqueue(Answer.json(body))
    client = openai.OpenAI(api_key=KEY, max_retries=0)
    result = client.responses.create(model="gpt-5", input="add it")
    assert result.output[0].type == "function_call"

    encoded = gzip.compress(b"".join(responses_events("zipped", response_id="resp_z")))
    mock.enqueue(Answer(200, {"content-type": "text/event-stream", "content-encoding": "gzip"}, encoded))
    with httpx.Client() as raw:
        response = raw.post(URL, content=REQUEST, headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip" and response.content.startswith(b"event: response.created")

    proxy.stop()
    rows = proxy.rows("SELECT id, streaming, status, response_model FROM interceptions ORDER BY started_at")
    assert [(r["streaming"], r["status"]) for r in rows] == [(False, "completed"), (True, "completed")]
    tools = proxy.rows("SELECT interception_id, tool, provider_tool_call_id, injected FROM tool_usages ORDER BY tool")
    assert [(t["tool"], t["provider_tool_call_id"], t["injected"]) for t in tools] == [
        ("add", "call_1", False),
        ("web_search", "ws_1", False),
    ]
    usage = proxy.rows("SELECT interception_id, provider_response_id FROM token_usages ORDER BY created_at")
    assert [u["provider_response_id"] for u in usage] == ["resp_b", "resp_z"]


def test_errors_and_a_client_that_leaves_are_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.json({"error": {"message": "slow down", "type": "rate_limit_error"}}, status=429))
    with httpx.Client() as client:
        response = client.post(URL, content=REQUEST)
    assert response.status_code == 429 and response.json()["error"]["message"] == "slow down"

    mock.enqueue(Answer.sse(responses_events("word " * 200), delay=0.02))
    with httpx.Client() as client, client.stream("POST", URL, content=REQUEST) as stream:
        next(stream.iter_raw())
    assert mock.stream_aborted.wait(10), "the upstream stream was not closed"

    proxy.stop()
    rows = proxy.rows("SELECT status, error, http_status FROM interceptions ORDER BY started_at")
    assert rows[0] == {"status": "failed", "error": "rate_limit_error: slow down", "http_status": 429}
    assert rows[1]["status"] == "cancelled" and "disconnect" in rows[1]["error"].lower(), rows[1]


def test_budget_refuses_responses_too(mock: MockUpstream, start_proxy: Callable[..., Proxy]) -> None:
    token = "aib_responses-budget-token"

    config = (
        provider_config(mock.url).replace("[providers.openai]\n", '[providers.openai]\nkey = "sk-central-0123456789"\n')
        + f'\n[users.alice]\ntoken = "{hash_token(token)}"\n[budgets]\nusers = {{ alice = 0.000001 }}\n'
    )
    proxy = start_proxy(config)
    mock.enqueue(
        Answer.json(
            {
                "id": "resp_1",
                "object": "response",
                "model": "gpt-5",
                "output": [],
                "usage": {"input_tokens": 100000, "output_tokens": 100000},
            }
        )
    )
    proxy_url = proxy.url.replace("http://", f"http://alice:{token}@")
    with httpx.Client(proxy=proxy_url, verify=ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])) as c:
        first = c.post(URL, content=b'{"model":"gpt-5","input":"hi","max_output_tokens":16}')
        second = c.post(URL, content=b'{"model":"gpt-5","input":"hi","max_output_tokens":16}')
    assert first.status_code == 200, first.text
    assert mock.requests[0].header("authorization") == "Bearer sk-central-0123456789"
    assert second.status_code == 403 and "budget exceeded" in second.json()["error"]["message"]
    assert len(mock.requests) == 1
    proxy.stop()
    rows = proxy.rows("SELECT initiator, status FROM interceptions ORDER BY started_at")
    assert rows == [{"initiator": "alice", "status": "completed"}, {"initiator": "alice", "status": "refused"}]


# --- WebSocket upgrades -----------------------------------------------------------------------------------


async def _websocket(proxy: Proxy, headers: dict[str, str]) -> str:
    trust = ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(URL.replace("https", "wss"), proxy=proxy.url, ssl=trust, headers=headers) as ws,
    ):
        await ws.send_str("hello")
        message = await ws.receive(timeout=30)
        return message.data


def test_websocket_upgrade_passes_through(mock: MockUpstream, proxy: Proxy) -> None:
    headers = {**CODEX, "openai-beta": "responses_websockets=2026-02-06", "authorization": f"Bearer {KEY}"}
    assert asyncio.run(_websocket(proxy, headers)) == "echo: hello"
    [seen] = mock.requests
    assert (seen.method, seen.path, seen.header("upgrade")) == ("GET", "/v1/responses", "websocket")
    assert seen.header("openai-beta") == "responses_websockets=2026-02-06"

    mock.websocket_status = 426  # the provider declines: the client sees that, and falls back to SSE
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(_websocket(proxy, headers))
    assert refused.value.status == 426
    proxy.stop()
    assert proxy.rows("SELECT count(*) AS n FROM interceptions") == [{"n": 0}]


def test_an_upstream_that_breaks_off_mid_stream_is_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.sse(responses_events("cut short here"), cut_after=4))
    with (
        httpx.Client() as client,
        pytest.raises(httpx.HTTPError),
        client.stream("POST", URL, content=REQUEST) as response,
    ):
        for _ in response.iter_raw():
            pass
    proxy.stop()
    [row] = proxy.rows("SELECT status, error, http_status FROM interceptions")
    assert row["status"] == "failed" and row["http_status"] == 200 and row["error"], row


def test_an_unreachable_upstream_is_recorded(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy(provider_config("http://127.0.0.1:9"))  # the discard port: nothing listens
    with httpx.Client() as client:
        response = client.post(URL, content=REQUEST)
    assert response.status_code == 502
    proxy.stop()
    [row] = proxy.rows("SELECT status, error, http_status FROM interceptions")
    assert row["status"] == "failed" and row["error"] and row["http_status"] is None, row
