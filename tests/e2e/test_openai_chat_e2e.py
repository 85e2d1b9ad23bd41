"""OpenAI /v1/chat/completions through a real mitmdump with the official SDK, streaming and blocking."""

import json
import threading

import httpx
import openai

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy
from tests.support.scenarios import chat_chunks, chat_completion

KEY = "sk-proj-test-abcdefghijklmnop"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]


def sdk() -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, max_retries=0)


def test_blocking_text_is_relayed_and_usage_excludes_cached_input(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.json(chat_completion("Hi!", completion_id="chatcmpl-blk"), headers={"x-request-id": "r1"}))
    raw = sdk().chat.completions.with_raw_response.create(model="gpt-4.1", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hi!"
    assert raw.headers["x-request-id"] == "r1"
    assert mock.requests[0].header("authorization") == f"Bearer {KEY}"

    proxy.stop()
    [row] = proxy.rows("SELECT * FROM interceptions")
    assert str(row["id"]) == raw.headers["x-aibridge-interception-id"]
    assert (row["provider"], row["model"], row["response_model"], row["status"], row["streaming"]) == (
        "openai",
        "gpt-4.1",
        "gpt-4.1-2025-04-14",
        "completed",
        False,
    )
    assert (row["credential_kind"], row["credential_hint"]) == ("byok", "sk-p...mnop")
    [usage] = proxy.rows("SELECT * FROM token_usages")
    assert (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_write_input_tokens"],
        usage["provider_response_id"],
    ) == (20, 9, 100, 0, "chatcmpl-blk")
    assert json.loads(usage["metadata"])["reasoning"] == 4
    [prompt] = proxy.rows("SELECT prompt FROM user_prompts")
    assert prompt["prompt"] == "Say hi"


def test_stream_usage_is_recorded_even_when_the_client_did_not_ask(mock: MockUpstream, proxy: Proxy) -> None:
    gate = threading.Event()
    mock.enqueue(Answer.sse(chat_chunks(["Hel", "lo", "!"]), gate=gate))
    chunks = []
    for chunk in sdk().chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True):
        chunks.append(chunk)
        gate.set()
    assert not mock.gate_timed_out, "the first chunk did not reach the client before the upstream finished"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert all(c.choices for c in chunks), "the usage-only chunk the client did not ask for was relayed"
    sent = mock.requests[0].json()
    assert sent["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in sent.items() if k != "stream_options"} == {
        "model": "gpt-4.1",
        "messages": MESSAGES,
        "stream": True,
    }

    proxy.stop()
    [usage] = proxy.rows("SELECT input_tokens, output_tokens, cache_read_input_tokens FROM token_usages")
    assert usage == {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 100}


def test_a_client_that_asks_for_usage_gets_the_upstream_bytes_unchanged(mock: MockUpstream, proxy: Proxy) -> None:
    events = chat_chunks(["a", "b"])
    mock.enqueue(Answer.sse(events))
    body = (
        b'{"model": "gpt-4.1", "stream": true, "stream_options": {"include_usage": true},'
        b' "messages": [{"role": "user", "content": "x"}]}'
    )
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            content=body,
            headers={"authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        received = b"".join(response.iter_raw())
    assert received == b"".join(events)
    assert mock.requests[0].body == body


def test_parallel_tool_calls_and_reasoning_are_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    tools = [("call_1", "get_weather", '{"city": "Paris"}'), ("call_2", "get_time", '{"tz": "UTC"}')]
    events = chat_chunks([], tools=tools, completion_id="chatcmpl-tools")
    reasoning = {
        "id": "chatcmpl-tools",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"reasoning_content": "User wants weather."}, "finish_reason": None}],
        "usage": None,
    }
    events.insert(1, f"data: {json.dumps(reasoning)}\n\n".encode())
    mock.enqueue(Answer.sse(events))
    client_tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for _, n, _ in tools
    ]
    calls: dict[int, list] = {}
    for chunk in sdk().chat.completions.create(model="gpt-4.1", messages=MESSAGES, tools=client_tools, stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            calls.setdefault(call.index, []).append(call)
    assert sorted(calls) == [0, 1]

    proxy.stop()
    rows = proxy.rows(
        "SELECT provider_tool_call_id, tool, input, injected FROM tool_usages ORDER BY provider_tool_call_id"
    )
    assert [(r["provider_tool_call_id"], r["tool"], json.loads(r["input"]), r["injected"]) for r in rows] == [
        ("call_1", "get_weather", {"city": "Paris"}, False),
        ("call_2", "get_time", {"tz": "UTC"}, False),
    ]
    [thought] = proxy.rows("SELECT content, metadata FROM model_thoughts")
    assert thought["content"] == "User wants weather."
    assert json.loads(thought["metadata"]) == {"source": "reasoning"}


def test_tool_messages_join_the_thread(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.json(chat_completion(None, tools=[("call_9", "lookup", "{}")])))
    mock.enqueue(Answer.json(chat_completion("Found it.")))
    client = sdk()
    first = client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    client.chat.completions.create(
        model="gpt-4.1",
        messages=[
            *MESSAGES,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_9", "content": "42"},
        ],
    )
    proxy.stop()
    first_row, second_row = proxy.rows("SELECT * FROM interceptions ORDER BY started_at")
    assert second_row["thread_parent_id"] == second_row["thread_root_id"] == first_row["id"]
    assert second_row["session_id"] == str(first_row["id"])
    assert proxy.rows("SELECT count(*) AS n FROM user_prompts") == [{"n": 1}]  # no prompt for a tool turn
