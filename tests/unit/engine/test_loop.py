"""The engine's tool loop: injected tools run by the bridge across upstream rounds, streamed and blocking.

The upstream is a `FakeUpstream` answering scripted rounds; the tools are a fake ToolSource whose `slow`
tool waits for the test to release it. Every test's recorder is checked on teardown: each job ends once.
"""

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from addon.audit import InterceptionEnded, InterceptionStarted, PromptSubmitted, TokensUsed, ToolCalled
from addon.config import parse_config
from addon.engine.core import Engine
from addon.engine.job import INTERCEPTION_HEADER, Reply
from addon.providers import Api
from addon.wire.base import LIMIT_NOTICE
from addon.wire.sse import SSEParser
from tests.support import sigv4
from tests.support.fakes import (
    Chunks,
    FakeRecorder,
    FakeUpstream,
    admitted,
    header,
    make_job,
    read,
    sse,
)
from tests.support.loop import (
    ANSWERS,
    ECHO,
    FAIL,
    MODEL,
    SLOW,
    FakeTools,
    Responder,
    anthropic_request,
    anthropic_round,
    chat_job,
    chat_request,
    script,
    streamed,
    whole,
)


@pytest.fixture
def tools() -> FakeTools:
    return FakeTools()


@pytest.fixture
def client(upstream: FakeUpstream) -> FakeUpstream:
    return upstream


@pytest.fixture
def make_engine(recorder: FakeRecorder, client: FakeUpstream, tools: FakeTools) -> Callable[..., Engine]:
    def make(**options: Any) -> Engine:
        return Engine(recorder, client, tools, **{"keepalive_interval": 0.005, **options})

    return make


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


# --- scripted upstream rounds ----------------------------------------------------------------------------


def bad_gateway(request: httpx.Request) -> httpx.Response:
    return httpx.Response(502, headers={"content-type": "text/plain"}, stream=Chunks([b"bad gateway"]))


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def sent(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


# --- Anthropic rounds ------------------------------------------------------------------------------------


def anthropic_body(msg_id: str, *blocks: dict, stop: str = "end_turn", usage: tuple[int, int] = (10, 20)) -> dict:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": list(blocks),
        "stop_reason": stop,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def echo_use(call_id: str = "toolu_1", text: str = "hi") -> tuple[str, ...]:
    return ("tool_use", call_id, ECHO.name, json.dumps({"text": text}))


def anthropic_events(chunks: list[bytes]) -> list[tuple[str, dict]]:
    """The client's stream as (event, data), pings and all; checks it is valid SSE."""
    parser = SSEParser()
    events = parser.feed(b"".join(chunks))
    assert parser.close() is None
    return [(e.event, json.loads(e.data)) for e in events]


def texts_of(events: list[tuple[str, dict]]) -> list[str]:
    return [data["delta"]["text"] for name, data in events if name == "content_block_delta"]


CALLS_ECHO = anthropic_round("msg_1", ("text", "Let me ask."), echo_use(), stop="tool_use", usage=(10, 20))


# --- OpenAI chat rounds ----------------------------------------------------------------------------------


def chat_round(
    chat_id: str, content: str | None, *calls: tuple[str, str, str], finish: str, usage: tuple[int, int] = (100, 7)
) -> list[bytes]:
    """A streamed completion: its text, its calls (id, name, arguments), the finish, the usage chunk, [DONE]."""

    def data(choices: list, **extra: Any) -> bytes:
        return f"data: {json.dumps({'id': chat_id, 'model': 'gpt-4o-2024', 'choices': choices, **extra})}\n\n".encode()

    chunks = [data([{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}])]
    for index, (call_id, name, arguments) in enumerate(calls):
        part = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        chunks.append(data([{"index": 0, "delta": {"tool_calls": [part]}, "finish_reason": None}]))
    chunks.append(data([{"index": 0, "delta": {}, "finish_reason": finish}]))
    chunks.append(data([], usage={"prompt_tokens": usage[0], "completion_tokens": usage[1]}))
    return [*chunks, b"data: [DONE]\n\n"]


def chat_chunks(chunks: list[bytes]) -> list[Any]:
    """The client's stream: each chunk's JSON, or "[DONE]"; comments (pings) left out."""
    parser = SSEParser()
    events = parser.feed(b"".join(chunks))
    assert parser.close() is None
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in events if e.data]


AWS_KEYS = {"aws_access_key_id": "AKIAOPERATOR00000000", "aws_secret_access_key": "operator-secret"}
ECHO_CALL = ("call_1", ECHO.name, '{"text": "hi"}')


# --- the whole loop, end to end --------------------------------------------------------------------------


async def test_anthropic_stream_runs_the_injected_tool_and_continues(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    script(upstream, streamed(CALLS_ECHO), streamed(ANSWERS))
    job = await admitted(engine, make_job(anthropic_request()))
    reply = await engine.open(job)
    assert (reply.status, header(reply, "content-length")) == (200, [])
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]
    events = anthropic_events(await read(reply))

    assert [name for name, _ in events] == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_stop"] * 2,
        "message_delta",
        "message_stop",
    ]
    assert texts_of(events) == ["Let me ask.", "It says hi."]
    assert [data["index"] for _, data in events if "index" in data] == [0, 0, 0, 1, 1, 1]
    assert events[-2][1]["usage"]["input_tokens"] == 40 and events[-2][1]["usage"]["output_tokens"] == 60
    assert tools.calls == [(ECHO.name, {"text": "hi"})]


async def test_anthropic_stream_sends_the_tools_and_then_the_results_upstream(
    engine: Engine, upstream: FakeUpstream
) -> None:
    script(upstream, streamed(CALLS_ECHO), streamed(ANSWERS))
    body = anthropic_request()
    await read(await engine.open(await admitted(engine, make_job(body))))

    first, second = upstream.requests
    assert [t["name"] for t in sent(first)["tools"]] == [ECHO.name, SLOW.name, FAIL.name]
    assert sent(first)["tools"][0] == {
        "name": ECHO.name,
        "description": "a fake tool",
        "input_schema": ECHO.input_schema,
    }
    assert first.content.startswith(body[:-1])  # the tools were added last, nothing else changed
    assert sent(second)["tools"] == sent(first)["tools"]
    assert sent(second)["messages"] == [
        {"role": "user", "content": "say hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me ask."},
                {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {"text": "hi"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "echo: hi"}],
                    "is_error": False,
                }
            ],
        },
    ]
    assert second.headers["x-api-key"] == first.headers["x-api-key"] == "sk-ant-api03-abcdefgh"
    assert str(second.url) == str(first.url) == "https://api.anthropic.com/v1/messages?beta=true"


async def test_every_round_is_signed_for_its_own_body_where_the_bridge_signs(
    engine: Engine, upstream: FakeUpstream
) -> None:
    """Bedrock Mantle with the operator's AWS credentials: each call the loop makes carries a SigV4 signature,
    made for that call's body (which grows each round), that botocore accepts."""
    config = parse_config({"providers": {"bedrock-mantle": {"upstream": "https://mantle.example:8443", **AWS_KEYS}}})
    mantle = next(p for p in config.providers if p.type == "bedrock-mantle")
    job = make_job(anthropic_request(), provider=mantle, headers=[("content-type", "application/json")])
    job.route, job.aws = replace(job.route, host="bedrock-mantle.eu-west-1.api.aws"), mantle.aws
    script(upstream, streamed(CALLS_ECHO), streamed(ANSWERS))
    await read(await engine.open(await admitted(engine, job)))
    first, second = upstream.requests
    assert first.content != second.content
    for request in (first, second):
        headers = [(n, v) for n, v in request.headers.multi_items()]
        assert sigv4.scope(request.headers["authorization"])["region"] == "eu-west-1"
        assert request.headers["host"] == "mantle.example:8443"
        assert sigv4.valid("POST", request.url.raw_path.decode(), headers, request.content, "operator-secret")


async def test_anthropic_stream_records_each_round_and_the_run_call(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    script(upstream, streamed(CALLS_ECHO), streamed(ANSWERS))
    job = await admitted(engine, make_job(anthropic_request()))
    await read(await engine.open(job))

    assert [type(e) for e in recorder.events] == [
        InterceptionStarted,
        TokensUsed,
        ToolCalled,
        TokensUsed,
        PromptSubmitted,
        InterceptionEnded,
    ]
    assert [(u.provider_response_id, u.input_tokens, u.output_tokens) for u in recorder.of(TokensUsed)] == [
        ("msg_1", 10, 20),
        ("msg_2", 30, 40),
    ]
    (call,) = recorder.of(ToolCalled)
    assert (call.interception_id, call.provider_response_id, call.provider_tool_call_id) == (job.id, "msg_1", "toolu_1")
    assert (call.tool, call.server_url, call.input, call.injected, call.invocation_error) == (
        "echo",
        "stdio:x",
        '{"text": "hi"}',
        True,
        None,
    )
    assert call.metadata == {
        "server": "fake",
        "name": ECHO.name,
        "duration_ms": 1.25,
        "result_size": 8,
        "is_error": False,
    }
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status, end.response_model) == ("completed", None, 200, MODEL)
    assert recorder.of(PromptSubmitted)[0].provider_response_id == "msg_1"


async def test_anthropic_blocking_loop_merges_the_rounds(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {"text": "hi"}}
    script(
        upstream,
        whole(anthropic_body("msg_1", {"type": "text", "text": "Let me ask."}, tool_use, stop="tool_use")),
        whole(anthropic_body("msg_2", {"type": "text", "text": "It says hi."}, usage=(30, 40))),
    )
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    reply = await engine.open(job)
    raw = b"".join(await read(reply))
    assert header(reply, "content-length") == [str(len(raw))]
    merged = json.loads(raw)
    assert merged["content"] == [{"type": "text", "text": "Let me ask."}, {"type": "text", "text": "It says hi."}]
    assert (merged["stop_reason"], merged["usage"]["input_tokens"], merged["usage"]["output_tokens"]) == (
        "end_turn",
        40,
        60,
    )
    assert tools.calls == [(ECHO.name, {"text": "hi"})]
    assert sent(upstream.requests[1])["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Let me ask."}, tool_use],
    }
    assert len(recorder.of(TokensUsed)) == 2
    assert recorder.of(ToolCalled)[0].injected is True
    assert recorder.ended(job).status == "completed"


async def test_anthropic_blocking_answer_without_injected_calls_is_relayed_as_it_came(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = anthropic_body("msg_1", {"type": "text", "text": "Hi."})
    script(upstream, whole(body))
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    assert b"".join(await read(await engine.open(job))) == json.dumps(body).encode()
    assert len(upstream.requests) == 1
    assert recorder.ended(job).status == "completed"


async def test_openai_stream_runs_the_injected_tool_and_continues(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    script(
        upstream,
        streamed(chat_round("chatcmpl-1", "Let me ask.", ECHO_CALL, finish="tool_calls")),
        streamed(chat_round("chatcmpl-2", "It says hi.", finish="stop", usage=(200, 9))),
    )
    job = await admitted(engine, chat_job(chat_request()))
    chunks = chat_chunks(await read(await engine.open(job)))

    assert chunks.count("[DONE]") == 1 and chunks[-1] == "[DONE]"
    body = [c for c in chunks if c != "[DONE]"]
    assert [c["choices"][0]["delta"].get("content") for c in body] == ["Let me ask.", "It says hi.", None]
    assert [c["choices"][0]["finish_reason"] for c in body] == [None, None, "stop"]
    assert {c["id"] for c in body} == {"chatcmpl-1"}
    assert all("tool_calls" not in c["choices"][0]["delta"] for c in body)
    assert all("usage" not in c for c in body)  # the client did not ask for usage
    assert tools.calls == [(ECHO.name, {"text": "hi"})]

    first, second = upstream.requests
    assert sent(first)["stream_options"] == {"include_usage": True}
    assert [t["function"]["name"] for t in sent(first)["tools"]] == [ECHO.name, SLOW.name, FAIL.name]
    assert sent(second)["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Let me ask.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": ECHO.name, "arguments": '{"text": "hi"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "echo: hi"},
    ]
    assert [(u.input_tokens, u.output_tokens) for u in recorder.of(TokensUsed)] == [(100, 7), (200, 9)]
    assert recorder.ended(job).status == "completed"


async def test_openai_stream_sums_the_usage_chunk_the_client_asked_for(engine: Engine, upstream: FakeUpstream) -> None:
    script(
        upstream,
        streamed(chat_round("chatcmpl-1", None, ECHO_CALL, finish="tool_calls")),
        streamed(chat_round("chatcmpl-2", "Hi.", finish="stop", usage=(200, 9))),
    )
    job = await admitted(engine, chat_job(chat_request(stream_options={"include_usage": True})))
    chunks = chat_chunks(await read(await engine.open(job)))
    (usage,) = [c["usage"] for c in chunks if c != "[DONE]" and "usage" in c]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (300, 16, 316)


async def test_openai_blocking_loop_merges_the_rounds(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": ECHO.name, "arguments": '{"text": "hi"}'}}

    def completion(chat_id: str, message: dict, finish: str, usage: tuple[int, int]) -> dict:
        return {
            "id": chat_id,
            "object": "chat.completion",
            "model": "gpt-4o-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
        }

    script(
        upstream,
        whole(completion("chatcmpl-1", {"content": "Asking. ", "tool_calls": [call]}, "tool_calls", (100, 7))),
        whole(completion("chatcmpl-2", {"content": "It says hi."}, "stop", (200, 9))),
    )
    job = await admitted(engine, chat_job(chat_request(stream=False)))
    merged = json.loads(b"".join(await read(await engine.open(job))))
    assert merged["id"] == "chatcmpl-1"
    assert merged["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Asking. It says hi."}, "finish_reason": "stop"}
    ]
    assert (merged["usage"]["prompt_tokens"], merged["usage"]["completion_tokens"]) == (300, 16)
    assert "stream_options" not in sent(upstream.requests[0])
    assert sent(upstream.requests[1])["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "echo: hi",
    }
    assert tools.calls == [(ECHO.name, {"text": "hi"})]
    assert recorder.ended(job).status == "completed"


# --- tools that take their time --------------------------------------------------------------------------


WAIT = 2.0
"""Seconds a test waits for what must come much sooner: a missing ping or cancellation fails, never hangs."""


async def read_releasing(reply: Reply, tools: FakeTools, ping: bytes) -> list[bytes]:
    """Read the whole body, releasing the slow tool once a ping came while it ran."""

    async def read_all() -> list[bytes]:
        chunks = []
        async for chunk in reply.body:
            chunks.append(chunk)
            if chunk == ping:
                tools.release.set()
        return chunks

    return await asyncio.wait_for(read_all(), WAIT)


async def until_ping(body: AsyncIterator[bytes], api: Api) -> None:
    """Read the body up to the first ping: a tool is running."""

    async def skip() -> None:
        while await anext(body) != api.wire.ping_event():
            pass

    await asyncio.wait_for(skip(), WAIT)


@pytest.mark.parametrize("api", [Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT])
async def test_pings_keep_the_stream_alive_while_a_tool_runs(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools, api: Api
) -> None:
    ping = api.wire.ping_event()
    if api is Api.ANTHROPIC_MESSAGES:
        first = anthropic_round("msg_1", ("text", "Wait."), ("tool_use", "toolu_1", SLOW.name, "{}"), stop="tool_use")
        script(upstream, streamed(first), streamed(ANSWERS))
        job = make_job(anthropic_request())
    else:
        first = chat_round("chatcmpl-1", "Wait.", ("call_1", SLOW.name, "{}"), finish="tool_calls")
        script(upstream, streamed(first), streamed(chat_round("chatcmpl-2", "Done.", finish="stop")))
        job = chat_job(chat_request())
    chunks = await read_releasing(await engine.open(await admitted(engine, job)), tools, ping)

    pings = [i for i, chunk in enumerate(chunks) if chunk == ping]
    assert pings, "no ping while the tool ran"
    assert pings == list(range(pings[0], pings[-1] + 1))  # all while the tool ran, between the rounds
    assert b"Wait." in b"".join(chunks[: pings[0]])
    assert b"Wait." not in b"".join(chunks[pings[0] :])
    assert tools.calls == [(SLOW.name, {})]
    assert recorder.ended(job).status == "completed"


async def test_calls_of_one_turn_run_concurrently_and_answer_in_order(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    first = anthropic_round(
        "msg_1",
        ("tool_use", "toolu_1", SLOW.name, '{"text": "a"}'),
        echo_use("toolu_2", "b"),
        ("tool_use", "toolu_3", SLOW.name, '{"text": "c"}'),
        stop="tool_use",
    )
    script(upstream, streamed(first), streamed(ANSWERS))
    reply = await engine.open(await admitted(engine, make_job(anthropic_request())))
    body = reply.body
    await until_ping(body, Api.ANTHROPIC_MESSAGES)
    assert tools.running == 2  # both slow calls started: neither waits for the other
    assert sorted(name for name, _ in tools.calls) == [ECHO.name, SLOW.name, SLOW.name]
    tools.release.set()
    assert b"It says hi." in b"".join([chunk async for chunk in body])

    (results,) = [m["content"] for m in sent(upstream.requests[1])["messages"][2:]]
    assert [(r["tool_use_id"], r["content"][0]["text"]) for r in results] == [
        ("toolu_1", "slow: a"),
        ("toolu_2", "echo: b"),
        ("toolu_3", "slow: c"),
    ]
    assert sorted(c.provider_tool_call_id or "" for c in recorder.of(ToolCalled)) == ["toolu_1", "toolu_2", "toolu_3"]


# --- limits and calls that are not run -------------------------------------------------------------------


async def test_round_cap_ends_the_stream_with_the_notice(
    make_engine: Callable[..., Engine], recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    engine = make_engine(max_tool_rounds=2)
    again = anthropic_round("msg_2", ("text", "Once more."), echo_use("toolu_2", "again"), stop="tool_use")
    script(upstream, streamed(CALLS_ECHO), streamed(again))
    job = await admitted(engine, make_job(anthropic_request()))
    events = anthropic_events(await read(await engine.open(job)))

    assert len(upstream.requests) == 2
    assert texts_of(events) == ["Let me ask.", "Once more.", LIMIT_NOTICE.format(rounds=2)]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-1][0] == "message_stop"
    assert tools.calls == [(ECHO.name, {"text": "hi"})]
    run, unrun = recorder.of(ToolCalled)
    assert (run.provider_tool_call_id, run.invocation_error) == ("toolu_1", None)
    assert (unrun.provider_tool_call_id, unrun.invocation_error) == ("toolu_2", "not run: max_tool_rounds reached")
    assert (unrun.injected, unrun.tool, unrun.metadata) == (True, "echo", {"server": "fake", "name": ECHO.name})
    end = recorder.ended(job)
    assert (end.status, end.error) == ("completed", LIMIT_NOTICE.format(rounds=2))


async def test_round_cap_ends_a_blocking_answer_with_the_notice(
    make_engine: Callable[..., Engine], recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine = make_engine(max_tool_rounds=1)
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {}}
    script(upstream, whole(anthropic_body("msg_1", {"type": "text", "text": "Asking."}, tool_use, stop="tool_use")))
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    merged = json.loads(b"".join(await read(await engine.open(job))))
    assert merged["content"] == [
        {"type": "text", "text": "Asking."},
        {"type": "text", "text": LIMIT_NOTICE.format(rounds=1)},
    ]
    assert merged["stop_reason"] == "end_turn"
    assert recorder.of(ToolCalled)[0].invocation_error == "not run: max_tool_rounds reached"
    assert recorder.ended(job).status == "completed"


async def test_arguments_that_are_not_json_never_reach_the_tool(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    cut = anthropic_round("msg_1", ("tool_use", "toolu_1", ECHO.name, '{"text": "h'), stop="tool_use")
    script(upstream, streamed(cut), streamed(ANSWERS))
    job = await admitted(engine, make_job(anthropic_request()))
    await read(await engine.open(job))

    assert tools.calls == []
    message = "not run: the arguments are not a JSON object (cut off?)"
    assistant, results = sent(upstream.requests[1])["messages"][1:]
    assert assistant["content"] == [{"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {}}]
    assert results["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": f"Error: {message}"}],
            "is_error": True,
        }
    ]
    (call,) = recorder.of(ToolCalled)
    assert (call.input, call.invocation_error, call.metadata["is_error"]) == ('{"text": "h', message, True)


async def test_injected_call_cut_off_by_max_tokens_is_hidden_and_not_run(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    cut = anthropic_round("msg_1", ("text", "Let me"), ("tool_use", "toolu_1", ECHO.name, '{"te'), stop="max_tokens")
    script(upstream, streamed(cut))
    job = await admitted(engine, make_job(anthropic_request()))
    events = anthropic_events(await read(await engine.open(job)))
    assert texts_of(events) == ["Let me"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert tools.calls == [] and len(upstream.requests) == 1
    (call,) = recorder.of(ToolCalled)
    assert call.invocation_error == "not run: the response ended with max_tokens"


async def test_mixed_turn_goes_to_the_client_without_the_injected_call(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    mixed = anthropic_round("msg_1", echo_use(), ("tool_use", "toolu_2", "Bash", '{"command": "ls"}'), stop="tool_use")
    script(upstream, streamed(mixed))
    job = await admitted(engine, make_job(anthropic_request()))
    events = anthropic_events(await read(await engine.open(job)))

    starts = [data for name, data in events if name == "content_block_start"]
    assert [(s["index"], s["content_block"]["name"]) for s in starts] == [(0, "Bash")]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert tools.calls == [] and len(upstream.requests) == 1
    injected, client_call = sorted(recorder.of(ToolCalled), key=lambda c: c.injected, reverse=True)
    assert (injected.provider_tool_call_id, injected.invocation_error) == (
        "toolu_1",
        "not run: the turn also called the client's own tools",
    )
    assert (client_call.tool, client_call.injected, client_call.server_url) == ("Bash", False, None)
    assert recorder.ended(job).status == "completed"


async def test_tool_error_result_reaches_the_model_and_the_audit(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    first = chat_round("chatcmpl-1", None, ("call_1", FAIL.name, "{}"), finish="tool_calls")
    script(upstream, streamed(first), streamed(chat_round("chatcmpl-2", "Sorry.", finish="stop")))
    job = await admitted(engine, chat_job(chat_request()))
    await read(await engine.open(job))
    assert sent(upstream.requests[1])["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "Tool error: disk on fire",
    }
    (call,) = recorder.of(ToolCalled)
    assert (call.tool, call.invocation_error, call.metadata["is_error"], call.metadata["result_size"]) == (
        "fail",
        "disk on fire",
        True,
        12,
    )


# --- the client goes away --------------------------------------------------------------------------------


async def test_closing_the_body_while_a_tool_runs_cancels_the_call(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    first = anthropic_round("msg_1", ("tool_use", "toolu_1", SLOW.name, "{}"), stop="tool_use")
    script(upstream, streamed(first), streamed(ANSWERS))
    job = await admitted(engine, make_job(anthropic_request()))
    body = (await engine.open(job)).body
    await until_ping(body, Api.ANTHROPIC_MESSAGES)
    await body.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(tools.cancelled.wait(), WAIT)
    assert len(upstream.requests) == 1
    end = recorder.ended(job)
    assert (end.status, end.error) == ("cancelled", "client disconnected")
    assert engine.active == {}


@pytest.mark.parametrize("api", [Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT])
async def test_a_client_that_leaves_after_the_last_rounds_final_event_completed_the_loop(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, api: Api
) -> None:
    """Only the last round's final event reaches the client (the inner rounds' are hidden); once it has, the
    answer is whole, and a client that closes before the upstream's last bytes does not cancel it."""
    if api is Api.ANTHROPIC_MESSAGES:
        script(upstream, streamed(CALLS_ECHO), streamed(ANSWERS))
        job, final = make_job(anthropic_request()), b"message_stop"
    else:
        first = chat_round("chatcmpl-1", None, ECHO_CALL, finish="tool_calls")
        script(upstream, streamed(first), streamed(chat_round("chatcmpl-2", "It says hi.", finish="stop")))
        job, final = chat_job(chat_request()), b"[DONE]"
    await admitted(engine, job)
    body = (await engine.open(job)).body
    seen = b""
    while final not in seen:
        seen += await anext(body)
    await body.aclose()  # type: ignore[attr-defined]
    end = recorder.ended(job)
    assert (end.status, end.error) == ("completed", None)
    assert len(recorder.of(TokensUsed, job)) == 2


async def test_cancelling_the_reader_while_a_tool_runs_cancels_the_call(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    first = chat_round("chatcmpl-1", None, ("call_1", SLOW.name, "{}"), finish="tool_calls")
    script(upstream, streamed(first))
    job = await admitted(engine, chat_job(chat_request()))
    reader = asyncio.create_task(read(await engine.open(job)))
    await asyncio.wait_for(tools.slow_started.wait(), WAIT)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.wait_for(tools.cancelled.wait(), WAIT)
    assert recorder.ended(job).status == "cancelled"


async def test_cancelling_a_blocking_request_while_a_tool_runs_cancels_the_call(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools
) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": SLOW.name, "input": {}}
    script(upstream, whole(anthropic_body("msg_1", tool_use, stop="tool_use")))
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    opening = asyncio.create_task(engine.open(job))
    await asyncio.wait_for(tools.slow_started.wait(), WAIT)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await asyncio.wait_for(tools.cancelled.wait(), WAIT)
    assert recorder.ended(job).status == "cancelled"


# --- a later round fails ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT])
@pytest.mark.parametrize(
    ("failure", "http_status", "says"),
    [(bad_gateway, 502, "upstream answered round 2 with 502: bad gateway"), (refused, 200, "unreachable")],
    ids=["502", "connect-error"],
)
async def test_failing_second_round_ends_the_stream_with_an_error_event(
    engine: Engine,
    recorder: FakeRecorder,
    upstream: FakeUpstream,
    api: Api,
    failure: Responder,
    http_status: int,
    says: str,
) -> None:
    if api is Api.ANTHROPIC_MESSAGES:
        script(upstream, streamed(CALLS_ECHO), failure)
        job = make_job(anthropic_request())
    else:
        script(upstream, streamed(chat_round("chatcmpl-1", "Let me ask.", ECHO_CALL, finish="tool_calls")), failure)
        job = chat_job(chat_request())
    chunks = await read(await engine.open(await admitted(engine, job)))

    assert b"Let me ask." in b"".join(chunks[:-1])  # the first round reached the client
    (event,) = SSEParser().feed(chunks[-1])
    error = json.loads(event.data)
    if api is Api.ANTHROPIC_MESSAGES:
        assert (event.event, error["type"], error["error"]["type"]) == ("error", "error", "api_error")
    else:
        assert error["error"]["type"] == "server_error"
    assert says in error["error"]["message"]
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("failed", http_status)
    assert end.error is not None and says in end.error
    assert len(recorder.of(ToolCalled)) == 1  # the call that ran is recorded


async def test_error_event_in_the_second_round_is_relayed_and_recorded_failed(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    script(upstream, streamed(CALLS_ECHO), streamed([ANSWERS[0], error]))
    job = await admitted(engine, make_job(anthropic_request()))
    chunks = await read(await engine.open(job))
    assert chunks[-1] == error
    assert [name for name, _ in anthropic_events(chunks)].count("message_start") == 1
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("failed", "overloaded_error: Overloaded", 200)
    assert len(recorder.of(TokensUsed)) == 2


async def test_failing_second_round_of_a_blocking_request_relays_the_upstream_error(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {}}
    script(upstream, whole(anthropic_body("msg_1", tool_use, stop="tool_use")), bad_gateway)
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    reply = await engine.open(job)
    assert reply.status == 502
    assert b"".join(await read(reply)) == b"bad gateway"
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]
    end = recorder.ended(job)
    assert (end.status, end.http_status, end.error) == ("failed", 502, "upstream answered round 2 with 502")


async def test_unreachable_second_round_of_a_blocking_request_gives_a_provider_error(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {}}
    script(upstream, whole(anthropic_body("msg_1", tool_use, stop="tool_use")), refused)
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    reply = await engine.open(job)
    assert reply.status == 502
    error = json.loads(b"".join(await read(reply)))
    assert error["type"] == "error" and "unreachable" in error["error"]["message"]
    assert (recorder.ended(job).status, recorder.ended(job).http_status) == ("failed", 502)


async def test_blocking_loop_with_an_upstream_that_gzips_gives_a_readable_merged_answer(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    """The upstream may ignore `accept-encoding: identity` (the relay copes with that elsewhere)."""
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {}}
    script(
        upstream,
        whole(
            anthropic_body("msg_1", {"type": "text", "text": "Let me ask."}, tool_use, stop="tool_use"), gzipped=True
        ),
        whole(anthropic_body("msg_2", {"type": "text", "text": "It says hi."}), gzipped=True),
    )
    job = await admitted(engine, make_job(anthropic_request(stream=False)))
    reply = await engine.open(job)
    raw = b"".join(await read(reply))
    if header(reply, "content-encoding") == ["gzip"]:
        raw = gzip.decompress(raw)
    merged = json.loads(raw)
    assert merged["content"] == [{"type": "text", "text": "Let me ask."}, {"type": "text", "text": "It says hi."}]
    assert recorder.ended(job).status == "completed"


# --- requests that get no tools --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_haiku_on_the_anthropic_api_gets_no_tools(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, tools: FakeTools, stream: bool
) -> None:
    """Even a call named like an injected tool is relayed as it is: it is the client's to run."""
    body = anthropic_request(stream=stream, model="claude-3-5-Haiku-latest")
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": ECHO.name, "input": {"text": "hi"}}
    answer = anthropic_round("msg_1", echo_use(), stop="tool_use")
    blocking_answer = anthropic_body("msg_1", tool_use, stop="tool_use")
    script(upstream, streamed(answer) if stream else whole(blocking_answer))
    job = await admitted(engine, make_job(body))
    relayed = b"".join(await read(await engine.open(job)))
    (request,) = upstream.requests
    assert request.content == body
    assert relayed == (b"".join(answer) if stream else json.dumps(blocking_answer).encode())
    assert tools.calls == []
    assert recorder.of(ToolCalled)[0].injected is False
    assert recorder.ended(job).status == "completed"


async def test_chat_with_several_choices_gets_no_tools(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = chat_request(stream=False, n=2)
    script(upstream, whole({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 1}}))
    job = await admitted(engine, chat_job(body))
    await read(await engine.open(job))
    assert upstream.requests[0].content == body
    assert recorder.ended(job).status == "completed"


async def test_haiku_on_the_chat_api_still_gets_tools(engine: Engine, upstream: FakeUpstream) -> None:
    script(upstream, streamed(chat_round("chatcmpl-1", "Hi.", finish="stop")))
    job = await admitted(engine, chat_job(chat_request(model="claude-haiku-4-5")))
    await read(await engine.open(job))
    assert [t["function"]["name"] for t in sent(upstream.requests[0])["tools"]] == [ECHO.name, SLOW.name, FAIL.name]


async def test_without_a_tool_source_nothing_is_injected(
    recorder: FakeRecorder, client: FakeUpstream, upstream: FakeUpstream
) -> None:
    engine = Engine(recorder, client)
    script(upstream, streamed(ANSWERS))
    body = anthropic_request()
    job = await admitted(engine, make_job(body))
    assert await read(await engine.open(job)) == ANSWERS
    assert upstream.requests[0].content == body
