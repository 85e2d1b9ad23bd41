"""Upstream errors, broken streams, bad input and departing clients: clear errors, nothing lost."""

import json
import socket
import time
from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import anthropic_events, chat_chunks

A_URL = "https://api.anthropic.com/v1/messages"
O_URL = "https://api.openai.com/v1/chat/completions"
A_KEY, O_KEY = "sk-ant-api03-faults-0123456789", "sk-proj-faults-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]


def test_upstream_error_before_the_stream_is_relayed_verbatim(mock: MockUpstream, proxy: Proxy) -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"}}
    mock.enqueue(Answer.json(body, 429, {"retry-after": "17", "anthropic-ratelimit-requests-remaining": "0"}))
    mock.enqueue(
        Answer.json({"error": {"message": "boom", "type": "server_error", "code": None}}, 500, {"retry-after": "3"})
    )
    with pytest.raises(anthropic.RateLimitError) as a_err:
        anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
            model="claude-x", max_tokens=8, messages=MESSAGES, stream=True
        )
    with pytest.raises(openai.InternalServerError) as o_err:
        openai.OpenAI(api_key=O_KEY, max_retries=0).chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert a_err.value.response.headers["retry-after"] == "17"
    assert a_err.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert a_err.value.response.json() == body
    assert o_err.value.response.status_code == 500 and o_err.value.response.headers["retry-after"] == "3"

    proxy.stop()
    rows = proxy.rows("SELECT provider, status, http_status, error FROM interceptions ORDER BY started_at")
    assert rows == [
        {
            "provider": "anthropic",
            "status": "failed",
            "http_status": 429,
            "error": "rate_limit_error: Number of requests exceeded",
        },
        {"provider": "openai", "status": "failed", "http_status": 500, "error": "server_error: boom"},
    ]


def test_a_mid_stream_error_event_is_relayed_and_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    events = anthropic_events(["partial "])[:5]
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    mock.enqueue(Answer.sse([*events, error]))
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            A_URL,
            json={"model": "claude-x", "max_tokens": 8, "stream": True, "messages": MESSAGES},
            headers={"x-api-key": A_KEY},
        ) as response,
    ):
        received = b"".join(response.iter_raw())
    assert received == b"".join(events) + error

    proxy.stop()
    [row] = proxy.rows("SELECT status, error, http_status FROM interceptions")
    assert row == {"status": "failed", "error": "overloaded_error: Overloaded", "http_status": 200}
    [usage] = proxy.rows("SELECT input_tokens, cache_read_input_tokens FROM token_usages")
    assert usage == {"input_tokens": 25, "cache_read_input_tokens": 100}  # what was seen before the error


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_an_upstream_that_drops_mid_stream_gets_the_client_an_error_event(
    api: str, mock: MockUpstream, proxy: Proxy
) -> None:
    if api == "anthropic":
        mock.enqueue(Answer.sse(anthropic_events(["a", "b", "c"]), cut_after=4))
        url, body, headers = A_URL, {"model": "claude-x", "max_tokens": 8, "stream": True, "messages": MESSAGES}, {}
    else:
        mock.enqueue(Answer.sse(chat_chunks(["a", "b", "c"]), cut_after=3))
        url, body, headers = O_URL, {"model": "gpt-x", "stream": True, "messages": MESSAGES}, {}
    with httpx.Client() as client, client.stream("POST", url, json=body, headers=headers) as response:
        text = b"".join(response.iter_raw()).decode()
    last = [line for line in text.splitlines() if line.startswith("data:")][-1]
    payload = json.loads(last.removeprefix("data:"))
    assert "upstream connection failed" in (payload["error"]["message"])
    if api == "anthropic":
        assert payload["type"] == "error" and "event: error" in text

    proxy.stop()
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row["status"] == "failed" and row["error"].startswith("upstream connection failed mid-response")


@pytest.mark.parametrize(
    ("url", "body", "check"),
    [
        (
            A_URL,
            b'{"model": "claude-x", "messages": [',
            lambda j: j["type"] == "error" and j["error"]["type"] == "invalid_request_error",
        ),
        (A_URL, b'["not", "an", "object"]', lambda j: j["error"]["type"] == "invalid_request_error"),
        (O_URL, b"{model: gpt}", lambda j: j["error"]["type"] == "invalid_request_error"),
        (O_URL, b"\xff\xfe garbage", lambda j: j["error"]["type"] == "invalid_request_error"),
    ],
)
def test_malformed_json_gets_a_provider_shaped_400(
    url: str, body: bytes, check: Callable[[dict], bool], mock: MockUpstream, proxy: Proxy
) -> None:
    with httpx.Client() as client:
        response = client.post(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert check(response.json()), response.text
    assert "invalid JSON" in response.text
    assert mock.requests == []

    proxy.stop()
    [row] = proxy.rows("SELECT status, http_status, model, error FROM interceptions")
    assert (row["status"], row["http_status"], row["model"]) == ("failed", 400, "unknown")
    assert row["error"].startswith("invalid JSON body")


def test_an_unreachable_upstream_gets_a_provider_shaped_502(start_proxy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connection refused
        proxy = start_proxy(provider_config(dead))
        with pytest.raises(anthropic.APIStatusError) as a_err:
            anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
                model="claude-x", max_tokens=8, messages=MESSAGES
            )
        with pytest.raises(openai.APIStatusError) as o_err:
            openai.OpenAI(api_key=O_KEY, max_retries=0).chat.completions.create(
                model="gpt-x", messages=MESSAGES, stream=True
            )
    assert a_err.value.status_code == 502 and a_err.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "unreachable" in a_err.value.message
    assert o_err.value.status_code == 502 and o_err.value.body["type"] == "server_error"  # type: ignore[index]

    proxy.stop()
    rows = proxy.rows("SELECT status, http_status FROM interceptions")
    assert rows == [{"status": "failed", "http_status": 502}] * 2


def test_a_client_that_leaves_mid_stream_cancels_the_upstream_call(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.sse(anthropic_events(["tok "] * 100), delay=0.05))
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            A_URL,
            json={"model": "claude-x", "max_tokens": 8, "stream": True, "messages": MESSAGES},
            headers={"x-api-key": A_KEY},
        ) as response,
    ):
        next(response.iter_raw())
    left_at = time.monotonic()
    assert mock.stream_aborted.wait(5), "the upstream stream was not cancelled"
    assert mock.stream_aborted_at is not None and mock.stream_aborted_at - left_at < 1.0

    proxy.stop()
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row["status"] == "cancelled"
    assert proxy.rows("SELECT input_tokens FROM token_usages") == [{"input_tokens": 25}]
