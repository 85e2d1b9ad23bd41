"""Anthropic /v1/messages through a real mitmdump with the official SDK, streaming and blocking."""

import gzip
import json
import threading

import anthropic
import httpx

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy
from tests.support.scenarios import anthropic_events, anthropic_message

KEY = "sk-ant-api03-test-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "What is 2+2?"}]


def sdk(**kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, max_retries=0, **kw)


def test_blocking_text_is_relayed_and_audited(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(
        Answer.json(
            anthropic_message(
                "Four.",
                msg_id="msg_blocking",
                usage={
                    "input_tokens": 30,
                    "output_tokens": 5,
                    "cache_read_input_tokens": 200,
                    "cache_creation_input_tokens": 50,
                    "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
                    "server_tool_use": {"web_search_requests": 2},
                },
            ),
            headers={"request-id": "req_123"},
        )
    )

    raw = sdk().messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)

    message = raw.parse()
    assert message.content[0].text == "Four."
    assert raw.headers["request-id"] == "req_123"
    interception_id = raw.headers["x-aibridge-interception-id"]
    seen = mock.requests[0]
    assert seen.path == "/v1/messages"
    assert seen.header("authorization") == f"Bearer {KEY}"  # this SDK release sends its key as a bearer token
    assert seen.header("anthropic-version") == anthropic.Anthropic(api_key=KEY).default_headers["anthropic-version"]
    assert seen.header("accept-encoding") == "identity"
    assert seen.header("proxy-authorization") is None
    assert seen.json()["messages"] == MESSAGES

    proxy.stop()
    [row] = proxy.rows("SELECT * FROM interceptions")
    assert str(row["id"]) == interception_id
    assert row["id"].version == 7
    assert (row["provider"], row["provider_name"], row["model"], row["response_model"]) == (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
    )
    assert (row["status"], row["http_status"], row["streaming"], row["initiator"]) == (
        "completed",
        200,
        False,
        "anonymous",
    )
    assert row["client"] == "Unknown" and row["user_agent"].startswith("Anthropic/Python")
    assert (row["credential_kind"], row["credential_hint"]) == ("byok", "sk-a...cdef")
    assert row["session_id"] == interception_id and row["ended_at"] >= row["started_at"]
    [usage] = proxy.rows("SELECT * FROM token_usages")
    assert (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_write_input_tokens"],
    ) == (30, 5, 200, 50)
    assert usage["provider_response_id"] == "msg_blocking"
    assert json.loads(usage["metadata"]) == {"cache_write_5m": 20, "cache_write_1h": 30, "web_search_requests": 2}
    [prompt] = proxy.rows("SELECT * FROM user_prompts")
    assert (prompt["prompt"], prompt["provider_response_id"]) == ("What is 2+2?", "msg_blocking")
    assert KEY not in proxy.db_path.read_bytes().decode("latin-1")


def test_streaming_is_incremental_and_usage_is_merged_not_summed(mock: MockUpstream, proxy: Proxy) -> None:
    gate = threading.Event()
    mock.enqueue(
        Answer.sse(
            anthropic_events(["Two ", "plus ", "two."], thinking="Simple arithmetic.", msg_id="msg_stream"), gate=gate
        )
    )
    texts = []
    with sdk().messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
        for text in stream.text_stream:
            texts.append(text)
            gate.set()  # the upstream holds its last event until the client has seen the first text
        final = stream.get_final_message()
    assert not mock.gate_timed_out, "the first event did not reach the client before the upstream finished"
    assert "".join(texts) == "Two plus two."
    assert final.content[0].type == "thinking" and final.content[0].signature == "sig-abc"

    proxy.stop()
    [row] = proxy.rows("SELECT status, streaming FROM interceptions")
    assert row == {"status": "completed", "streaming": True}
    [usage] = proxy.rows("SELECT * FROM token_usages")
    # message_start said output 1, message_delta the cumulative 42: the row holds 42, not 43.
    assert (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_write_input_tokens"],
    ) == (25, 42, 100, 10)
    [thought] = proxy.rows("SELECT content, metadata FROM model_thoughts")
    assert thought["content"] == "Simple arithmetic."
    assert json.loads(thought["metadata"]) == {"source": "thinking"}


def test_stream_bytes_reach_the_client_unchanged(mock: MockUpstream, proxy: Proxy) -> None:
    events = anthropic_events(["a", "b"])
    mock.enqueue(Answer.sse(events))
    body = b'{"model":"claude-sonnet-4-5","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"x"}]}'
    with (
        httpx.Client() as client,
        client.stream(
            "POST", "https://api.anthropic.com/v1/messages", content=body, headers={"x-api-key": KEY}
        ) as response,
    ):
        received = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert received == b"".join(events)


def test_parallel_client_tool_calls_are_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    tools = [("toolu_A", "get_weather", {"city": "Paris"}), ("toolu_B", "get_time", {"tz": "Europe/Paris"})]
    mock.enqueue(Answer.sse(anthropic_events(["Checking."], tools=tools, msg_id="msg_tools")))
    mock.enqueue(Answer.json(anthropic_message("", msg_id="msg_tools_blocking", tools=tools)))
    client_tools = [{"name": n, "description": n, "input_schema": {"type": "object"}} for _, n, _ in tools]

    with sdk().messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, tools=client_tools
    ) as stream:
        streamed = stream.get_final_message()
    blocking = sdk().messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, tools=client_tools)

    for message in (streamed, blocking):
        calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
        assert calls == tools
    proxy.stop()
    rows = proxy.rows("""SELECT t.provider_response_id, t.provider_tool_call_id, t.tool, t.input, t.injected,
                                t.server_url, i.streaming
                         FROM tool_usages t JOIN interceptions i ON i.id = t.interception_id
                         ORDER BY t.provider_response_id, t.provider_tool_call_id""")
    assert [
        (
            r["provider_response_id"],
            r["provider_tool_call_id"],
            r["tool"],
            json.loads(r["input"]),
            r["injected"],
            r["server_url"],
        )
        for r in rows
    ] == [
        ("msg_tools", "toolu_A", "get_weather", {"city": "Paris"}, False, None),
        ("msg_tools", "toolu_B", "get_time", {"tz": "Europe/Paris"}, False, None),
        ("msg_tools_blocking", "toolu_A", "get_weather", {"city": "Paris"}, False, None),
        ("msg_tools_blocking", "toolu_B", "get_time", {"tz": "Europe/Paris"}, False, None),
    ]


def test_tool_results_join_the_thread_and_claude_code_sessions_are_detected(mock: MockUpstream, proxy: Proxy) -> None:
    claude = {"User-Agent": "claude-cli/2.1.329 (external, sdk-cli)", "X-Claude-Code-Session-Id": "sess-cc-1"}
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
    mock.enqueue(Answer.json(anthropic_message("", msg_id="msg_1", tools=[("toolu_1", "Bash", {"cmd": "ls"})])))
    mock.enqueue(Answer.json(anthropic_message("", msg_id="msg_2", tools=[("toolu_2", "Bash", {"cmd": "pwd"})])))
    mock.enqueue(Answer.json(anthropic_message("Done.", msg_id="msg_3")))
    client = sdk(default_headers=claude)
    history: list = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "list files"},
            ],
        },
        {"role": "system", "content": "environment"},
    ]
    first = client.messages.create(model="claude-opus-4", max_tokens=64, messages=history, tools=tools)
    history = [
        history[0],
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b"}]},
    ]
    second = client.messages.create(model="claude-opus-4", max_tokens=64, messages=history, tools=tools)
    history += [
        {"role": "assistant", "content": [b.model_dump() for b in second.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "/"}]},
    ]
    client.messages.create(model="claude-opus-4", max_tokens=64, messages=history, tools=tools)

    proxy.stop()
    rows = proxy.rows("SELECT * FROM interceptions ORDER BY started_at")
    assert [r["client"] for r in rows] == ["Claude Code"] * 3
    assert [r["client_session_id"] for r in rows] == ["sess-cc-1"] * 3
    assert [r["session_id"] for r in rows] == ["sess-cc-1"] * 3
    assert [r["thread_parent_id"] for r in rows] == [None, rows[0]["id"], rows[1]["id"]]
    assert [r["thread_root_id"] for r in rows] == [None, rows[0]["id"], rows[0]["id"]]
    assert [r["correlating_tool_call_id"] for r in rows] == [None, "toolu_1", "toolu_2"]
    prompts = proxy.rows("SELECT interception_id, prompt FROM user_prompts")
    assert [(p["interception_id"], p["prompt"]) for p in prompts] == [(rows[0]["id"], "list files")]


def test_without_a_client_session_the_thread_root_is_the_session(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.json(anthropic_message("", msg_id="m1", tools=[("toolu_x", "t", {})])))
    mock.enqueue(Answer.json(anthropic_message("ok", msg_id="m2")))
    client = sdk()
    client.messages.create(model="m", max_tokens=8, messages=MESSAGES)
    client.messages.create(
        model="m",
        max_tokens=8,
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]},
        ],
    )
    proxy.stop()
    first, second = proxy.rows("SELECT id, session_id FROM interceptions ORDER BY started_at")
    assert first["session_id"] == second["session_id"] == str(first["id"])


def test_request_bytes_reach_the_upstream_unchanged(mock: MockUpstream, proxy: Proxy) -> None:
    body = (
        '{ "model" : "claude-sonnet-4-5",\n  "max_tokens":16, "unknown_field": {"keep": [1, 2.50, 1e3]},'
        ' "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],'
        ' "messages": [{"role": "user", "content": "h\\u00e9llo \u00e9t\u00e9 \U0001f600"}] }'
    ).encode()
    mock.enqueue(Answer.json(anthropic_message("ok")), Answer.json(anthropic_message("ok")))
    with httpx.Client() as client:
        plain = client.post(
            "https://api.anthropic.com/v1/messages?beta=true",
            content=body,
            headers={"x-api-key": KEY, "content-type": "application/json"},
        )
        zipped = client.post(
            "https://api.anthropic.com/v1/messages",
            content=gzip.compress(body),
            headers={"x-api-key": KEY, "content-type": "application/json", "content-encoding": "gzip"},
        )
    assert plain.status_code == zipped.status_code == 200
    assert mock.requests[0].path == "/v1/messages?beta=true"
    assert mock.requests[0].body == body
    assert mock.requests[1].body == body  # decoded once, otherwise untouched
    assert mock.requests[1].header("content-encoding") is None
