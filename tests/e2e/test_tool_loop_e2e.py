"""MCP tools injected into bridged requests, run by the bridge, looped with the provider: both APIs,
streaming and blocking, through a real mitmdump with the official SDKs and a real MCP server (stdio)."""

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import ROOT, Proxy, provider_config
from tests.support.scenarios import anthropic_events, anthropic_message, chat_chunks, chat_completion

A_KEY, O_KEY = "sk-ant-api03-loop-0123456789", "sk-proj-loop-0123456789"
MESSAGES = [{"role": "user", "content": "Use the tools."}]
CLIENT_TOOL = {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object"}}
CHAT_CLIENT_TOOL = {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}


def mcp_test_server(name: str = "test", **extra: object) -> str:
    lines = [
        f"[mcp_servers.{name}]",
        f"command = {json.dumps(sys.executable)}",
        'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]',
        f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}',
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def bridge(mock: MockUpstream, start_proxy: Callable[..., Proxy]) -> Callable[..., Proxy]:
    def start(*servers: str, **globals_: object) -> Proxy:
        head = "".join(f"{key} = {json.dumps(value)}\n" for key, value in globals_.items())
        return start_proxy(head + provider_config(mock.url) + "\n" + "".join(servers or (mcp_test_server(),)))

    return start


def injected_names(body: dict) -> list[str]:
    tools = body.get("tools") or []
    return [
        t.get("name") or t["function"]["name"]
        for t in tools
        if (t.get("name") or t.get("function", {}).get("name", "")).startswith("bmcp_")
    ]


def client_events(url: str, body: dict, on_event: Callable[[str, dict], None] | None = None) -> list[tuple[str, dict]]:
    """SSE events as the client received them, parsed."""
    events = []
    with httpx.Client(timeout=60) as client, client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read()
        name = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
                parsed = json.loads(data) if data != "[DONE]" else {"done": True}
                events.append((name, parsed))
                if on_event:
                    on_event(name, parsed)
            elif line.startswith(":"):
                events.append(("comment", {"comment": line}))
    return events


# --- Anthropic --------------------------------------------------------------------------------------------


def test_anthropic_stream_runs_the_tool_and_shows_one_message(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    first_gate, last_gate = threading.Event(), threading.Event()
    mock.enqueue(
        Answer.sse(
            anthropic_events(
                ["Let me ", "check."],
                tools=[("toolu_1", "bmcp_test_echo", {"message": "hi"})],
                msg_id="msg_r1",
                start_usage={"input_tokens": 100, "output_tokens": 1},
                delta_usage={"output_tokens": 20},
            ),
            gate=first_gate,
        ),
        Answer.sse(
            anthropic_events(
                ["The tool ", "said hi."],
                msg_id="msg_r2",
                start_usage={"input_tokens": 130, "output_tokens": 1},
                delta_usage={"output_tokens": 8},
            ),
            gate=last_gate,
        ),
    )
    seen_text = []

    def on_event(name: str, data: dict) -> None:
        if name == "content_block_delta":
            seen_text.append(data["delta"].get("text", ""))
            (first_gate if len(seen_text) == 1 else last_gate).set()

    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "stream": True,
        "messages": MESSAGES,
        "tools": [{**CLIENT_TOOL, "cache_control": {"type": "ephemeral"}}],
    }
    events = client_events("https://api.anthropic.com/v1/messages", body, on_event)

    assert not mock.gate_timed_out, "a round's text did not reach the client before the round ended"
    names = [n for n, _ in events]
    assert names.count("message_start") == 1 and names.count("message_stop") == 1
    assert names[-1] == "message_stop"
    starts = [d for n, d in events if n == "content_block_start"]
    assert [(d["index"], d["content_block"]["type"]) for d in starts] == [(0, "text"), (1, "text")]
    assert all(d["content_block"]["type"] != "tool_use" for d in starts)
    assert "".join(seen_text) == "Let me check.The tool said hi."
    [final_delta] = [d for n, d in events if n == "message_delta"]
    assert final_delta["delta"]["stop_reason"] == "end_turn"
    assert final_delta["usage"]["output_tokens"] == 28 and final_delta["usage"]["input_tokens"] == 230

    round1, round2 = (r.json() for r in mock.requests)
    assert injected_names(round1)[:1] == ["bmcp_test_add"] and "bmcp_test_echo" in injected_names(round1)
    assert round1["tools"][-1] == {**CLIENT_TOOL, "cache_control": {"type": "ephemeral"}}  # client's tool last
    assert [t["name"] for t in round1["tools"][:-1]] == sorted(t["name"] for t in round1["tools"][:-1])
    assert round2["messages"][:1] == MESSAGES
    assistant, results = round2["messages"][1:]
    assert assistant["role"] == "assistant"
    assert [b["type"] for b in assistant["content"]] == ["text", "tool_use"]
    assert assistant["content"][1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "bmcp_test_echo",
        "input": {"message": "hi"},
    }
    assert results == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "hi"}],
                "is_error": False,
            }
        ],
    }

    proxy.stop()
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row == {"status": "completed", "error": None}
    usages = proxy.rows("SELECT provider_response_id, input_tokens, output_tokens FROM token_usages ORDER BY 1")
    assert usages == [
        {"provider_response_id": "msg_r1", "input_tokens": 100, "output_tokens": 20},
        {"provider_response_id": "msg_r2", "input_tokens": 130, "output_tokens": 8},
    ]
    [tool] = proxy.rows("SELECT * FROM tool_usages")
    assert (
        tool["tool"],
        tool["injected"],
        tool["provider_tool_call_id"],
        json.loads(tool["input"]),
        tool["invocation_error"],
    ) == ("echo", True, "toolu_1", {"message": "hi"}, None)
    assert tool["server_url"].startswith("stdio:")
    metadata = json.loads(tool["metadata"])
    assert metadata["server"] == "test" and metadata["duration_ms"] >= 0 and metadata["result_size"] == 2


def test_anthropic_blocking_merges_rounds_and_runs_parallel_calls(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    mock.enqueue(
        Answer.json(
            anthropic_message(
                "Two tools.",
                msg_id="m1",
                tools=[
                    ("toolu_a", "bmcp_test_add", {"a": 2, "b": 3}),
                    ("toolu_b", "bmcp_test_slow", {"seconds": 0.5}),
                    ("toolu_c", "bmcp_test_slow", {"seconds": 0.5}),
                ],
                usage={"input_tokens": 10, "output_tokens": 5},
            )
        ),
        Answer.json(
            anthropic_message(
                "",
                msg_id="m2",
                tools=[("toolu_d", "bmcp_test_fail", {"message": "nope"})],
                usage={"input_tokens": 20, "output_tokens": 6},
            )
        ),
        Answer.json(anthropic_message("Sum is 5.", msg_id="m3", usage={"input_tokens": 30, "output_tokens": 7})),
    )
    started = time.monotonic()
    message = anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES
    )
    assert [b.type for b in message.content] == ["text", "text"]
    assert [b.text for b in message.content] == ["Two tools.", "Sum is 5."]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (60, 18)
    assert message.stop_reason == "end_turn"
    assert time.monotonic() - started < 5

    second, third = mock.requests[1].json(), mock.requests[2].json()
    results = second["messages"][-1]["content"]
    assert [(r["tool_use_id"], r["content"][0]["text"], r["is_error"]) for r in results] == [
        ("toolu_a", "5", False),
        ("toolu_b", "done", False),
        ("toolu_c", "done", False),
    ]
    [failure] = third["messages"][-1]["content"]
    assert failure["is_error"] is True and failure["content"][0]["text"] == "nope"
    assert len(third["messages"]) == len(MESSAGES) + 4

    proxy.stop()
    tools = proxy.rows("SELECT tool, invocation_error FROM tool_usages ORDER BY provider_tool_call_id")
    assert tools == [
        {"tool": "add", "invocation_error": None},
        {"tool": "slow", "invocation_error": None},
        {"tool": "slow", "invocation_error": None},
        {"tool": "fail", "invocation_error": "nope"},
    ]
    assert proxy.rows("SELECT count(*) AS n FROM token_usages") == [{"n": 3}]


def test_tool_timeout_and_a_dying_server_become_error_results(mock: MockUpstream, bridge) -> None:
    proxy = bridge(mcp_test_server(tool_timeout=1))
    mock.enqueue(
        Answer.json(anthropic_message("", msg_id="m1", tools=[("t_hang", "bmcp_test_hang", {})])),
        Answer.json(anthropic_message("", msg_id="m2", tools=[("t_crash", "bmcp_test_crash", {})])),
        Answer.json(anthropic_message("Gave up.", msg_id="m3")),
    )
    message = anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
    )
    assert message.content[-1].text == "Gave up."
    [timed_out] = mock.requests[1].json()["messages"][-1]["content"]
    [crashed] = mock.requests[2].json()["messages"][-1]["content"]
    assert timed_out["is_error"] and "timed out" in timed_out["content"][0]["text"]
    assert crashed["is_error"]
    proxy.stop()
    errors = [r["invocation_error"] for r in proxy.rows("SELECT invocation_error FROM tool_usages ORDER BY created_at")]
    assert "timed out" in errors[0] and errors[1]
    assert "ERROR" not in "\n".join(proxy.output)


def test_round_cap_ends_the_stream_with_a_notice(mock: MockUpstream, bridge) -> None:
    proxy = bridge(max_tool_rounds=2)
    for n in range(2):
        mock.enqueue(
            Answer.sse(
                anthropic_events(
                    [f"round {n}. "], msg_id=f"m{n}", tools=[(f"t{n}", "bmcp_test_echo", {"message": str(n)})]
                )
            )
        )
    events = client_events(
        "https://api.anthropic.com/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True, "messages": MESSAGES},
    )
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text.startswith("round 0. round 1. ") and "max_tool_rounds" in text
    assert [d["delta"]["stop_reason"] for n, d in events if n == "message_delta"] == ["end_turn"]
    assert len(mock.requests) == 2
    proxy.stop()
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row["status"] == "completed" and "max_tool_rounds" in row["error"]
    unrun = proxy.rows("SELECT invocation_error FROM tool_usages WHERE provider_tool_call_id = 't1'")
    assert unrun == [{"invocation_error": "not run: max_tool_rounds reached"}]


def test_mixed_turns_go_to_the_client_and_truncated_calls_never_run(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    mock.enqueue(
        Answer.sse(
            anthropic_events(
                ["Both. "],
                msg_id="mixed",
                tools=[("t_inj", "bmcp_test_echo", {"message": "x"}), ("t_client", "read_file", {"path": "a"})],
            )
        )
    )
    cut = anthropic_events(
        ["Cut "],
        msg_id="cut",
        tools=[("t_cut", "bmcp_test_echo", {"message": "long"})],
        delta_usage={"output_tokens": 64},
    )
    cut = [
        e.replace(b'"stop_reason": "tool_use"', b'"stop_reason": "max_tokens"').replace(
            b'"partial_json": "\\"long\\"}"', b'"partial_json": "\\"lo"'
        )
        for e in cut
    ]
    mock.enqueue(Answer.sse(cut))
    client = anthropic.Anthropic(api_key=A_KEY, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, tools=[CLIENT_TOOL]
    ) as stream:
        mixed = stream.get_final_message()
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
        truncated = stream.get_final_message()
    assert [(b.type, getattr(b, "name", None)) for b in mixed.content] == [("text", None), ("tool_use", "read_file")]
    assert mixed.stop_reason == "tool_use"
    assert [b.type for b in truncated.content] == ["text"] and truncated.stop_reason == "max_tokens"
    assert len(mock.requests) == 2  # neither turn looped
    proxy.stop()
    rows = proxy.rows("SELECT provider_tool_call_id AS id, injected, invocation_error FROM tool_usages ORDER BY 1")
    assert rows == [
        {"id": "t_client", "injected": False, "invocation_error": None},
        {"id": "t_cut", "injected": True, "invocation_error": "not run: the response ended with max_tokens"},
        {"id": "t_inj", "injected": True, "invocation_error": "not run: the turn also called the client's own tools"},
    ]


def test_haiku_requests_get_no_injected_tools(mock: MockUpstream, bridge) -> None:
    bridge()
    mock.enqueue(Answer.json(anthropic_message("title")), Answer.sse(anthropic_events(["t"])))
    raw = b'{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"title?"}]}'
    with httpx.Client() as client:
        client.post("https://api.anthropic.com/v1/messages", content=raw)
        client.post(
            "https://api.anthropic.com/v1/messages", content=raw.replace(b'"max_tokens"', b'"stream":true,"max_tokens"')
        )
    assert mock.requests[0].body == raw
    assert "tools" not in mock.requests[1].json()


def test_the_same_request_yields_the_same_upstream_bytes(mock: MockUpstream, bridge) -> None:
    bridge()
    mock.enqueue(Answer.json(anthropic_message("a")), Answer.json(anthropic_message("b")))
    raw = b'{"model":"claude-sonnet-4-5","max_tokens":8,"tools":[],"messages":[{"role":"user","content":"x"}]}'
    with httpx.Client() as client:
        client.post("https://api.anthropic.com/v1/messages", content=raw)
        client.post("https://api.anthropic.com/v1/messages", content=raw)
    first, second = mock.requests
    assert first.body == second.body
    assert first.body.endswith(b'"messages":[{"role":"user","content":"x"}]}')  # only `tools` changed
    assert first.body.startswith(b'{"model":"claude-sonnet-4-5","max_tokens":8,"tools":[{"name":"bmcp_test_')


def test_pings_keep_the_stream_alive_while_tools_run(mock: MockUpstream, bridge) -> None:
    bridge(keepalive_interval=0.3)
    mock.enqueue(
        Answer.sse(anthropic_events([], tools=[("t_slow", "bmcp_test_slow", {"seconds": 1.2})])),
        Answer.sse(anthropic_events(["done"], msg_id="m2")),
    )
    events = client_events(
        "https://api.anthropic.com/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True, "messages": MESSAGES},
    )
    names = [n for n, _ in events]
    first_ping_after_tool = names.index("ping", names.index("message_start") + 2)
    assert names.count("ping") >= 3  # the upstream's own pings plus at least two while the tool ran
    assert first_ping_after_tool < names.index("content_block_delta")


def test_a_client_that_leaves_mid_loop_stops_the_loop(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    mock.enqueue(
        Answer.sse(anthropic_events(["wait "], tools=[("t_slow", "bmcp_test_slow", {"seconds": 30})])),
        Answer.sse(anthropic_events(["never"])),
    )
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            "https://api.anthropic.com/v1/messages",
            json={"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True, "messages": MESSAGES},
        ) as response,
    ):
        for line in response.iter_lines():
            if "wait " in line:
                break
    time.sleep(1.5)
    assert len(mock.requests) == 1
    proxy.stop()
    [row] = proxy.rows("SELECT status FROM interceptions")
    assert row["status"] == "cancelled"


# --- OpenAI chat ------------------------------------------------------------------------------------------


def test_chat_stream_hides_injected_calls_and_sums_usage(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    mock.enqueue(
        Answer.sse(
            chat_chunks(
                [],
                tools=[("call_1", "bmcp_test_echo", '{"message": "hey"}'), ("call_2", "read_file", '{"path": "x"}')],
                completion_id="c-mixed",
            )
        ),
    )
    mock.enqueue(
        Answer.sse(
            chat_chunks(
                [],
                tools=[("call_3", "bmcp_test_add", '{"a": 1, "b": 2}')],
                completion_id="c1",
                usage={"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55},
            )
        ),
        Answer.sse(
            chat_chunks(
                ["It ", "is 3."],
                completion_id="c2",
                usage={"prompt_tokens": 70, "completion_tokens": 4, "total_tokens": 74},
            )
        ),
    )
    client = openai.OpenAI(api_key=O_KEY, max_retries=0)
    mixed = list(
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True, tools=[CHAT_CLIENT_TOOL])
    )
    calls = [c for chunk in mixed if chunk.choices for c in (chunk.choices[0].delta.tool_calls or [])]
    assert {c.function.name for c in calls if c.function and c.function.name} == {"read_file"}
    assert {c.index for c in calls} == {0}

    chunks = list(
        client.chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "It is 3."
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert {c.id for c in chunks} == {"c1"}
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 9, 129)

    second_round = mock.requests[2].json()
    assert second_round["messages"][-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "bmcp_test_add", "arguments": '{"a": 1, "b": 2}'}}
        ],
    }
    assert second_round["messages"][-1] == {"role": "tool", "tool_call_id": "call_3", "content": "3"}
    assert injected_names(mock.requests[0].json())  # appended after the client's own tool
    assert mock.requests[0].json()["tools"][0] == CHAT_CLIENT_TOOL
    proxy.stop()
    assert proxy.rows("SELECT count(*) AS n FROM interceptions WHERE status = 'completed'") == [{"n": 2}]


def test_chat_blocking_loop_without_preamble(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    mock.enqueue(
        Answer.json(
            chat_completion(
                None,
                completion_id="b1",
                tools=[("call_x", "bmcp_test_echo", '{"message": "pong"}')],
                usage={"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
            )
        ),
        Answer.json(
            chat_completion(
                "Echo said pong.",
                completion_id="b2",
                usage={"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
            )
        ),
    )
    completion = openai.OpenAI(api_key=O_KEY, max_retries=0).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo said pong."
    assert completion.choices[0].message.tool_calls is None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 7)
    assert completion.id == "b1"
    proxy.stop()
    [tool] = proxy.rows("SELECT tool, injected FROM tool_usages")
    assert tool == {"tool": "echo", "injected": True}


# --- servers ----------------------------------------------------------------------------------------------


def test_a_server_down_at_start_leaves_the_others_working(mock: MockUpstream, bridge, tmp_path: Path) -> None:
    down = '[mcp_servers.gone]\ncommand = "/nonexistent/mcp-server"\n'
    proxy = bridge(down, mcp_test_server())
    mock.enqueue(Answer.json(anthropic_message("ok")))
    anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
    )
    names = injected_names(mock.requests[0].json())
    assert "bmcp_test_echo" in names and not any(n.startswith("bmcp_gone_") for n in names)
    assert any("gone" in line for line in proxy.output)


def test_real_mcp_server_time_from_pypi(mock: MockUpstream, bridge) -> None:
    server = Path(sys.executable).parent / "mcp-server-time"
    proxy = bridge(f'[mcp_servers.time]\ncommand = "{server}"\nargs = ["--local-timezone", "UTC"]\n')
    mock.enqueue(
        Answer.sse(anthropic_events([], tools=[("t_time", "bmcp_time_get_current_time", {"timezone": "UTC"})])),
        Answer.sse(anthropic_events(["It is now."])),
    )
    with anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
    ) as stream:
        assert stream.get_final_message().content[0].text == "It is now."
    assert sorted(injected_names(mock.requests[0].json())) == ["bmcp_time_convert_time", "bmcp_time_get_current_time"]
    [result] = mock.requests[1].json()["messages"][-1]["content"]
    assert not result["is_error"] and json.loads(result["content"][0]["text"])["timezone"] == "UTC"
    proxy.stop()
    [tool] = proxy.rows("SELECT tool, server_url FROM tool_usages")
    assert tool == {"tool": "get_current_time", "server_url": f"stdio:{server}"}


@pytest.mark.parametrize(("api", "streaming"), [("anthropic", False), ("chat", True), ("chat", False)])
def test_round_cap_in_every_mode(api: str, streaming: bool, mock: MockUpstream, bridge) -> None:
    proxy = bridge(max_tool_rounds=2)
    for n in range(2):
        call = [(f"t{n}", "bmcp_test_echo", {"message": str(n)})]
        if api == "anthropic":
            mock.enqueue(Answer.json(anthropic_message(f"r{n} ", msg_id=f"m{n}", tools=call)))
        elif streaming:
            mock.enqueue(Answer.sse(chat_chunks([f"r{n} "], tools=[(i, name, json.dumps(a)) for i, name, a in call])))
        else:
            mock.enqueue(
                Answer.json(chat_completion(f"r{n} ", tools=[(i, name, json.dumps(a)) for i, name, a in call]))
            )
    if api == "anthropic":
        message = anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
        )
        text, stop = "".join(b.text for b in message.content if b.type == "text"), message.stop_reason
        assert all(b.type == "text" for b in message.content)
    elif streaming:
        chunks = list(
            openai.OpenAI(api_key=O_KEY, max_retries=0).chat.completions.create(
                model="gpt-4.1", messages=MESSAGES, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
        [stop] = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        completion = openai.OpenAI(api_key=O_KEY, max_retries=0).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES
        )
        text, stop = completion.choices[0].message.content or "", completion.choices[0].finish_reason
        assert completion.choices[0].message.tool_calls is None
    assert text.startswith("r0 r1 ") and "max_tool_rounds" in text
    assert stop in ("end_turn", "stop")
    assert len(mock.requests) == 2
    proxy.stop()
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row["status"] == "completed" and "max_tool_rounds" in row["error"]


def test_chat_stream_runs_parallel_calls_and_reports_tool_errors(mock: MockUpstream, bridge) -> None:
    proxy = bridge()
    mock.enqueue(
        Answer.sse(
            chat_chunks(
                ["Working. "],
                tools=[
                    ("call_a", "bmcp_test_add", '{"a": 20, "b": 22}'),
                    ("call_f", "bmcp_test_fail", '{"message": "broken"}'),
                ],
            )
        ),
        Answer.sse(chat_chunks(["42, and one failed."])),
    )
    chunks = list(
        openai.OpenAI(api_key=O_KEY, max_retries=0).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Working. 42, and one failed."
    tool_messages = mock.requests[1].json()["messages"][-2:]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "call_a", "content": "42"},
        {"role": "tool", "tool_call_id": "call_f", "content": "Tool error: broken"},
    ]
    proxy.stop()
    rows = proxy.rows("SELECT tool, invocation_error FROM tool_usages ORDER BY provider_tool_call_id")
    assert rows == [{"tool": "add", "invocation_error": None}, {"tool": "fail", "invocation_error": "broken"}]
