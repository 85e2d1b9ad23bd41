"""A real MCP server from npm over streamable HTTP: @modelcontextprotocol/server-everything, started on
127.0.0.1 by the test, its tools injected and run through the bridge, image results included."""

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import anthropic
import openai
import pytest

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import ROOT, Proxy, provider_config
from tests.support.scenarios import anthropic_events, anthropic_message, chat_chunks

SERVERS = ROOT / "tests/mcp-servers"
EVERYTHING = SERVERS / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
MESSAGES = [{"role": "user", "content": "Use the tools."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def everything_url() -> Iterator[str]:
    if not EVERYTHING.exists():
        pytest.fail(f"{EVERYTHING} is missing: run scripts/setup (it installs the npm MCP servers)")
    port = _free_port()
    process = subprocess.Popen(
        ["node", "--require", str(SERVERS / "loopback.cjs"), str(EVERYTHING), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        for line in process.stderr:
            if "listening on port" in line:
                break
            assert time.monotonic() < deadline, "server-everything did not start"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def proxy_with_everything(mock: MockUpstream, start_proxy: Callable[..., Proxy], everything_url: str) -> Proxy:
    return start_proxy(
        provider_config(mock.url) + f'\n[mcp_servers.everything]\nurl = "{everything_url}"\n'
        'deny = "^(trigger-long-running-operation|toggle-)"\n'
    )


def test_anthropic_stream_with_streamable_http_tools_and_an_image(
    mock: MockUpstream, proxy_with_everything: Proxy
) -> None:
    mock.enqueue(
        Answer.sse(
            anthropic_events(
                ["Computing. "],
                tools=[
                    ("t_sum", "bmcp_everything_get-sum", {"a": 2, "b": 3}),
                    ("t_img", "bmcp_everything_get-tiny-image", {}),
                ],
            )
        ),
        Answer.sse(anthropic_events(["2 + 3 = 5, and a tiny image."])),
    )
    client = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=128, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert "".join(b.text for b in final.content if b.type == "text") == "Computing. 2 + 3 = 5, and a tiny image."

    first = mock.requests[0].json()
    names = [t["name"] for t in first["tools"]]
    assert "bmcp_everything_get-sum" in names and "bmcp_everything_echo" in names
    assert not any("toggle" in n or "long-running" in n for n in names)  # denied
    results = {r["tool_use_id"]: r for r in mock.requests[1].json()["messages"][-1]["content"]}
    assert results["t_sum"]["content"][0]["text"] == "The sum of 2 and 3 is 5."
    image = next(c for c in results["t_img"]["content"] if c["type"] == "image")
    assert image["source"]["type"] == "base64" and image["source"]["media_type"] == "image/png"
    assert not results["t_img"]["is_error"]

    proxy_with_everything.stop()
    rows = proxy_with_everything.rows("SELECT tool, server_url, injected FROM tool_usages ORDER BY tool")
    url = rows[0]["server_url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
    assert [(r["tool"], r["injected"]) for r in rows] == [("get-sum", True), ("get-tiny-image", True)]


def test_chat_blocking_with_streamable_http_tools(mock: MockUpstream, proxy_with_everything: Proxy) -> None:
    mock.enqueue(
        Answer.json(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4.1",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_e",
                                    "type": "function",
                                    "function": {
                                        "name": "bmcp_everything_echo",
                                        "arguments": '{"message": "over http"}',
                                    },
                                }
                            ],
                        },
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            }
        ),
        Answer.json(
            {
                "id": "c2",
                "object": "chat.completion",
                "created": 2,
                "model": "gpt-4.1",
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "It echoed."}}
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
            }
        ),
    )
    completion = openai.OpenAI(api_key="sk-x", max_retries=0).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES
    )
    assert completion.choices[0].message.content == "It echoed."
    assert completion.usage is not None and completion.usage.total_tokens == 19
    tool_message = mock.requests[1].json()["messages"][-1]
    assert tool_message["tool_call_id"] == "call_e" and "over http" in tool_message["content"]


def test_chat_stream_is_incremental_across_rounds(mock: MockUpstream, proxy_with_everything: Proxy) -> None:
    gate = threading.Event()
    mock.enqueue(
        Answer.sse(chat_chunks(["Adding. "], tools=[("call_s", "bmcp_everything_get-sum", '{"a": 1, "b": 1}')])),
        Answer.sse(chat_chunks(["One ", "plus one is two."]), gate=gate),
    )
    pieces = []
    for chunk in openai.OpenAI(api_key="sk-x", max_retries=0).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if "One " in pieces:
                gate.set()
    assert not mock.gate_timed_out, "round two was not streamed incrementally"
    assert "".join(pieces) == "Adding. One plus one is two."
    assert json.loads(mock.requests[1].body)["messages"][-1]["content"] == "The sum of 1 and 1 is 2."


def test_anthropic_blocking_image_result(mock: MockUpstream, proxy_with_everything: Proxy) -> None:
    mock.enqueue(
        Answer.json(anthropic_message("", tools=[("t_i", "bmcp_everything_get-tiny-image", {})])),
        Answer.json(anthropic_message("Seen.")),
    )
    message = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=32, messages=MESSAGES
    )
    assert message.content[0].text == "Seen."
    [result] = mock.requests[1].json()["messages"][-1]["content"]
    assert {c["type"] for c in result["content"]} >= {"image"}


def test_loopback_only(everything_url: str) -> None:
    port = int(everything_url.split(":")[2].split("/")[0])
    listening = subprocess.run(["ss", "-ltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert "127.0.0.1:" in listening and "*:" not in listening.split("\n", 1)[1]
