"""Replay Coder AI Bridge's recorded provider exchanges (`../shared/conformance/coder-aibridge/`) through a
real mitmdump: what clients receive, what the upstream receives, and what the audit records.

The recordings are read in place. Where the folder is absent these tests skip, saying so.
"""

import json
import os
import ssl
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import txtar
from tests.support.mock_upstream import MockUpstream
from tests.support.proxy import Proxy, provider_config

pytestmark = pytest.mark.conformance

ROOT = Path(os.environ.get("AIBRIDGE_CONFORMANCE_DIR", Path(__file__).resolve().parents[3] / "shared/conformance"))
RECORDINGS = ROOT / "coder-aibridge"
if not RECORDINGS.is_dir():
    pytest.skip(
        f"conformance recordings not found at {RECORDINGS} (set AIBRIDGE_CONFORMANCE_DIR)", allow_module_level=True
    )

# Injected-tool recordings need configured MCP servers (the tool-injection feature); Bedrock is not a route here.
_NOT_BRIDGE_CASES = ("injected", "bedrock")
URLS = {"anthropic": "https://api.anthropic.com/v1/messages", "chat": "https://api.openai.com/v1/chat/completions"}


@dataclass
class Case:
    id: str
    api: str
    streaming: bool
    request: bytes
    upstream: bytes
    """The section the mock answers with."""
    status: int = 0
    received: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seen_body: bytes = b""


def _bridge_cases() -> list[Case]:
    cases = []
    for api, folder in (("anthropic", RECORDINGS / "anthropic"), ("chat", RECORDINGS / "openai/chatcompletions")):
        for path in sorted(folder.glob("*.txtar")):
            archive = txtar.load(path)
            if "request" not in archive.sections or any(word in path.stem for word in _NOT_BRIDGE_CASES):
                continue
            for streaming, section in ((True, "streaming"), (False, "non-streaming")):
                if section not in archive.sections:
                    continue
                body = json.loads(archive.sections["request"])
                body["stream"] = streaming
                cases.append(
                    Case(
                        f"{api}/{path.stem}/{section}",
                        api,
                        streaming,
                        json.dumps(body).encode(),
                        archive.sections[section],
                    )
                )
    return cases


def _responses_cases() -> list[Case]:
    cases = []
    for path in sorted((RECORDINGS / "openai/responses").glob("*/*.txtar")):
        archive = txtar.load(path)
        streaming = path.parent.name == "streaming"
        section = archive.sections["streaming" if streaming else "non-streaming"]
        cases.append(
            Case(
                f"responses/{path.parent.name}/{path.stem}",
                "responses",
                streaming,
                archive.sections["request"],
                section,
            )
        )
    return cases


def _fallthrough_cases() -> list[Case]:
    return [
        Case(f"{api}/fallthrough", api, False, b"", txtar.load(folder / "fallthrough.txtar").sections["non-streaming"])
        for api, folder in (
            ("anthropic-models", RECORDINGS / "anthropic"),
            ("openai-models", RECORDINGS / "openai/chatcompletions"),
        )
    ]


BRIDGE_CASES, RESPONSES_CASES, FALLTHROUGH_CASES = _bridge_cases(), _responses_cases(), _fallthrough_cases()


@dataclass
class Run:
    cases: dict[str, Case]
    rows: dict[str, dict[str, Any]]
    usages: dict[str, list[dict[str, Any]]]
    tools: dict[str, list[dict[str, Any]]]
    thoughts: dict[str, list[dict[str, Any]]]
    prompts: dict[str, list[str]]
    responses_rows: list[dict[str, Any]]
    """The Responses interceptions in start order: the cases were replayed one after another."""


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """One proxy replays every case in order; the audit file is read once it has stopped."""
    mock = MockUpstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        proxy = Proxy(Path(tmp), provider_config(mock.url)).start()
        try:
            trust = ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])
            with httpx.Client(proxy=proxy.url, verify=trust, timeout=30) as client:
                for case in BRIDGE_CASES + RESPONSES_CASES + FALLTHROUGH_CASES:
                    _replay(client, mock, case)
        finally:
            proxy.stop()
            mock.stop()
        rows = {str(r["id"]): r for r in proxy.rows("SELECT * FROM interceptions")}
        usages: dict[str, list] = {}
        for r in proxy.rows("SELECT * FROM token_usages ORDER BY created_at"):
            usages.setdefault(str(r["interception_id"]), []).append(r)
        tools: dict[str, list] = {}
        for r in proxy.rows("SELECT * FROM tool_usages ORDER BY created_at"):
            tools.setdefault(str(r["interception_id"]), []).append(r)
        thoughts: dict[str, list] = {}
        for r in proxy.rows("SELECT * FROM model_thoughts ORDER BY created_at"):
            thoughts.setdefault(str(r["interception_id"]), []).append(r)
        prompts: dict[str, list] = {}
        for r in proxy.rows("SELECT * FROM user_prompts ORDER BY created_at"):
            prompts.setdefault(str(r["interception_id"]), []).append(r["prompt"])
        responses_rows = proxy.rows("SELECT * FROM interceptions WHERE route = '/v1/responses' ORDER BY started_at, id")
        yield Run(
            {c.id: c for c in BRIDGE_CASES + RESPONSES_CASES + FALLTHROUGH_CASES},
            rows,
            usages,
            tools,
            thoughts,
            prompts,
            responses_rows,
        )


def _replay(client: httpx.Client, mock: MockUpstream, case: Case) -> None:
    mock.enqueue(txtar.answer(case.upstream, streaming=case.streaming))
    before = len(mock.requests)
    if case.api in ("anthropic-models", "openai-models"):
        host = "api.anthropic.com" if case.api == "anthropic-models" else "api.openai.com"
        request = client.build_request("GET", f"https://{host}/v1/models")
    else:
        url = URLS.get(case.api, "https://api.openai.com/v1/responses")
        request = client.build_request(
            "POST",
            url,
            content=case.request,
            headers={"content-type": "application/json", "authorization": "Bearer api-key"},
        )
    response = client.send(request, stream=True)
    try:
        case.received = b"".join(response.iter_raw())
    finally:
        response.close()
    case.status, case.headers = response.status_code, dict(response.headers)
    assert len(mock.requests) == before + 1, f"{case.id}: the upstream was called {len(mock.requests) - before} times"
    case.seen_body = mock.requests[-1].body


def _events(stream: bytes) -> list[tuple[str, Any]]:
    """(event name, parsed data) of an SSE body; unparsable data as a string."""
    events = []
    for block in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = "", []
        for line in block.decode().splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            text = "\n".join(data)
            try:
                events.append((name, json.loads(text)))
            except ValueError:
                events.append((name, text))
    return events


def _expected_client_bytes(case: Case) -> bytes:
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    body = b"".join(upstream.events) if upstream.events is not None else upstream.body
    if case.api != "chat" or not case.streaming:
        return body
    # The client did not ask for usage: the usage-only chunk the bridge asked for is not relayed.
    blocks = body.split(b"\n\n")
    kept = [
        b
        for b in blocks
        if not (b.startswith(b"data: {") and json.loads(b[6:]).get("choices") == [] and json.loads(b[6:]).get("usage"))
    ]
    return b"\n\n".join(kept)


def _expected_usage(case: Case) -> tuple[int, int, int, int] | None:
    """(input, output, cache read, cache write) as the provider reported it, the bridge's semantics applied."""
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    if upstream.status != 200:
        return None
    if case.api == "anthropic":
        usage: dict[str, Any] = {}
        if case.streaming:
            for name, data in _events(b"".join(upstream.events or [])):
                if name == "message_start":
                    usage.update(data["message"]["usage"])
                elif name == "message_delta":
                    usage.update({k: v for k, v in data.get("usage", {}).items() if v is not None})
        else:
            usage = json.loads(upstream.body)["usage"]
        return (
            usage["input_tokens"],
            usage["output_tokens"],
            usage.get("cache_read_input_tokens") or 0,
            usage.get("cache_creation_input_tokens") or 0,
        )
    if case.streaming:
        chunks = [d for _, d in _events(b"".join(upstream.events or [])) if isinstance(d, dict) and d.get("usage")]
        if not chunks:
            return None
        usage = chunks[-1]["usage"]
    else:
        usage = json.loads(upstream.body)["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return usage["prompt_tokens"] - cached, usage["completion_tokens"], cached, 0


def _tokens(usage: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_write_input_tokens"],
    )


def _expected_tools(case: Case) -> list[tuple[str, str]]:
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    if upstream.status != 200:
        return []
    if case.api == "anthropic":
        if case.streaming:
            return [
                (d["content_block"]["id"], d["content_block"]["name"])
                for name, d in _events(b"".join(upstream.events or []))
                if name == "content_block_start" and d["content_block"]["type"] == "tool_use"
            ]
        return [(b["id"], b["name"]) for b in json.loads(upstream.body)["content"] if b["type"] == "tool_use"]
    if case.streaming:
        return [
            (c["id"], c["function"]["name"])
            for _, d in _events(b"".join(upstream.events or []))
            if isinstance(d, dict)
            for choice in d.get("choices", [])
            for c in (choice.get("delta", {}).get("tool_calls") or [])
            if c.get("id")
        ]
    return [
        (c["id"], c["function"]["name"])
        for choice in json.loads(upstream.body)["choices"]
        for c in (choice["message"].get("tool_calls") or [])
    ]


@pytest.mark.parametrize("case_id", [c.id for c in BRIDGE_CASES])
def test_bridged_exchange(run: Run, case_id: str) -> None:
    case = run.cases[case_id]
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    assert case.status == upstream.status
    assert case.received == _expected_client_bytes(case)
    sent = json.loads(case.seen_body)
    if case.api == "chat" and case.streaming:
        assert sent.pop("stream_options") == {"include_usage": True}
    else:
        assert case.seen_body == case.request, "the request body reached the upstream changed"
    assert sent == json.loads(case.request)

    row = run.rows[case.headers["x-aibridge-interception-id"]]
    assert row["streaming"] is case.streaming
    assert row["model"] == json.loads(case.request)["model"]
    stream_error = case.streaming and any(
        name == "error" or (isinstance(d, dict) and "error" in d) for name, d in _events(case.received)
    )
    if upstream.status != 200 or stream_error:
        assert row["status"] == "failed" and row["error"], row
    else:
        assert row["status"] == "completed", row
    assert row["http_status"] == upstream.status and row["ended_at"] is not None

    expected = _expected_usage(case)
    usages = run.usages.get(str(row["id"]), [])
    if expected is None:
        assert all(u["input_tokens"] >= 0 for u in usages)
    else:
        [usage] = usages
        assert _tokens(usage) == expected
    recorded = [(t["provider_tool_call_id"], t["tool"]) for t in run.tools.get(str(row["id"]), [])]
    assert recorded == _expected_tools(case)
    if "thinking" in case.id and upstream.status == 200:
        assert run.thoughts.get(str(row["id"])), "thinking was not recorded"


def _final_response(case: Case) -> dict[str, Any] | None:
    """The Responses API response object as the recording's upstream sent it, if it sent a whole one."""
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    if upstream.status != 200:
        return None
    if case.streaming:
        finals = [
            d["response"]
            for _, d in _events(b"".join(upstream.events or []))
            if isinstance(d, dict) and d.get("type") in ("response.completed", "response.incomplete", "response.failed")
        ]
        return finals[-1] if finals else None
    try:
        return json.loads(upstream.body)
    except ValueError:
        return None


@pytest.mark.parametrize("case_id", [c.id for c in RESPONSES_CASES])
def test_responses_exchange_is_recorded(run: Run, case_id: str) -> None:
    """What the Responses audit tap records of a passthrough exchange: the recording's own facts."""
    case = run.cases[case_id]
    row = run.responses_rows[RESPONSES_CASES.index(case)]
    request = json.loads(case.request)
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    final = _final_response(case)
    assert (row["provider"], row["provider_name"], row["route"]) == ("openai", "openai", "/v1/responses")
    assert row["model"] == request["model"]
    assert row["streaming"] is (request.get("stream") is True)
    assert row["credential_kind"] == "byok" and row["credential_hint"] == "a...y", "the key is masked"
    assert row["http_status"] == upstream.status and row["ended_at"] is not None
    failed = upstream.status != 200 or any(
        n in ("error", "response.failed") for n, _ in _events(b"".join(upstream.events or []))
    )
    if failed:
        assert row["status"] == "failed" and row["error"], row
    else:
        assert row["status"] == "completed" and row["error"] is None, row
    if final is not None:
        assert row["response_model"] == final.get("model", row["response_model"])

    usages = run.usages.get(str(row["id"]), [])
    if final is None or not final.get("usage"):
        assert usages == []
    else:
        u = final["usage"]
        cached = u["input_tokens_details"]["cached_tokens"]
        [usage] = usages
        assert _tokens(usage) == (u["input_tokens"] - cached, u["output_tokens"], cached, 0)
        reasoning = u["output_tokens_details"]["reasoning_tokens"]
        assert json.loads(usage["metadata"] or "{}").get("reasoning", 0) == reasoning
        assert usage["provider_response_id"] == final["id"]

    output = (final or {}).get("output") or []
    expected_tools = [(o["call_id"], o["name"]) for o in output if o["type"] in ("function_call", "custom_tool_call")]
    tools = run.tools.get(str(row["id"]), [])
    assert [(t["provider_tool_call_id"], t["tool"]) for t in tools] == expected_tools
    assert all(t["injected"] is False and t["server_url"] is None for t in tools)
    custom = [o for o in output if o["type"] == "custom_tool_call"]
    assert [t["input"] for t in tools if t["provider_tool_call_id"] in {o["call_id"] for o in custom}] == [
        o["input"] for o in custom
    ]

    expected_thoughts = [
        (s["text"], "reasoning") for o in output if o["type"] == "reasoning" for s in o.get("summary") or []
    ] + [
        (c["text"], "commentary")
        for o in output
        if o["type"] == "message" and o.get("phase") == "commentary"
        for c in o["content"]
    ]
    recorded = [(t["content"], json.loads(t["metadata"])["source"]) for t in run.thoughts.get(str(row["id"]), [])]
    assert sorted(recorded) == sorted(expected_thoughts)

    prompt = request["input"] if isinstance(request["input"], str) else None
    if isinstance(request["input"], list):
        last_user = [i for i in request["input"] if i.get("role") == "user"][-1]["content"]
        prompt = last_user if isinstance(last_user, str) else last_user[-1]["text"]
    assert run.prompts.get(str(row["id"])) == [prompt]


@pytest.mark.parametrize("case_id", [c.id for c in RESPONSES_CASES + FALLTHROUGH_CASES])
def test_passthrough_exchange_is_byte_identical(run: Run, case_id: str) -> None:
    case = run.cases[case_id]
    upstream = txtar.answer(case.upstream, streaming=case.streaming)
    assert case.status == upstream.status
    assert case.received == (b"".join(upstream.events) if upstream.events is not None else upstream.body)
    assert case.seen_body == case.request
    assert "x-aibridge-interception-id" not in case.headers


def test_only_bridged_and_responses_exchanges_are_recorded_and_all_ended(run: Run) -> None:
    assert len(run.rows) == len(BRIDGE_CASES) + len(RESPONSES_CASES)
    assert len(run.responses_rows) == len(RESPONSES_CASES)
    assert all(r["ended_at"] is not None and r["status"] in ("completed", "failed") for r in run.rows.values())


# --- injected tools: the recorded two-round exchanges, with the `coder` MCP server ------------------------

CODER_SERVER = (
    f"[mcp_servers.coder]\ncommand = {json.dumps(sys.executable)}\n"
    'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]\n'
    f'env = {{ "PYTHONPATH" = {json.dumps(str(Path(__file__).resolve().parents[2]))} }}\n'
)


@dataclass
class LoopCase:
    id: str
    api: str
    streaming: bool
    request: bytes
    rounds: tuple[bytes, bytes]
    received: bytes = b""
    status: int = 0
    interception: str = ""
    upstream_bodies: list[bytes] = field(default_factory=list)


def _loop_cases() -> list[LoopCase]:
    cases = []
    for api, folder in (("anthropic", RECORDINGS / "anthropic"), ("chat", RECORDINGS / "openai/chatcompletions")):
        for path in sorted(folder.glob("*injected_tool*.txtar")):
            archive = txtar.load(path)
            for streaming, section in ((True, "streaming"), (False, "non-streaming")):
                if section not in archive.sections:
                    continue
                body = json.loads(archive.sections["request"])
                body["stream"] = streaming
                cases.append(
                    LoopCase(
                        f"{api}/{path.stem}/{section}",
                        api,
                        streaming,
                        json.dumps(body).encode(),
                        (archive.sections[section], archive.sections[f"{section}/tool-call"]),
                    )
                )
    return cases


LOOP_CASES = _loop_cases()


@pytest.fixture(scope="module")
def loop_run() -> Iterator[tuple[dict[str, LoopCase], Proxy]]:
    mock = MockUpstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        proxy = Proxy(Path(tmp), provider_config(mock.url) + "\n" + CODER_SERVER).start()
        try:
            trust = ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])
            with httpx.Client(proxy=proxy.url, verify=trust, timeout=60) as client:
                for case in LOOP_CASES:
                    before = len(mock.requests)
                    mock.enqueue(*(txtar.answer(r, streaming=case.streaming) for r in case.rounds))
                    with client.stream(
                        "POST", URLS[case.api], content=case.request, headers={"content-type": "application/json"}
                    ) as response:
                        case.received = b"".join(response.iter_raw())
                        case.status = response.status_code
                        case.interception = response.headers.get("x-aibridge-interception-id", "")
                    case.upstream_bodies = [r.body for r in mock.requests[before:]]
        finally:
            proxy.stop()
            mock.stop()
        yield {c.id: c for c in LOOP_CASES}, proxy


@pytest.mark.parametrize("case_id", [c.id for c in LOOP_CASES])
def test_injected_tool_exchange(loop_run: tuple[dict[str, LoopCase], Proxy], case_id: str) -> None:
    cases, proxy = loop_run
    case = cases[case_id]
    assert case.status == 200
    assert len(case.upstream_bodies) == 2, "the upstream must be called once per round"
    first, second = (json.loads(b) for b in case.upstream_bodies)
    assert any(
        (t.get("name") or t.get("function", {}).get("name", "")).startswith("bmcp_coder_coder_") for t in first["tools"]
    )
    # The second round carries the model's call and its result, "mock" from the MCP server.
    if case.api == "anthropic":
        call = next(b for b in second["messages"][-2]["content"] if b["type"] == "tool_use")
        [result] = second["messages"][-1]["content"]
        assert result["tool_use_id"] == call["id"] and result["content"] == [{"type": "text", "text": "mock"}]
    else:
        [call] = second["messages"][-2]["tool_calls"]
        assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": "mock"}
    name = call["name"] if case.api == "anthropic" else call["function"]["name"]
    assert name.startswith("bmcp_coder_coder_")

    assert b"bmcp_" not in case.received, "an injected tool reached the client"
    final_text = _text_of(txtar.answer(case.rounds[1], streaming=case.streaming), case)
    assert final_text and final_text in _text_of_body(case.received, case)
    if case.streaming and case.api == "anthropic":
        names = [n for n, _ in _events(case.received)]
        assert names.count("message_start") == 1 and names.count("message_stop") == 1
        indexes = [d["index"] for n, d in _events(case.received) if n == "content_block_start"]
        assert indexes == list(range(len(indexes)))
    elif case.streaming:
        assert case.received.count(b"data: [DONE]") == 1

    [row] = proxy.rows("SELECT status FROM interceptions WHERE id = ?", [case.interception])
    assert row["status"] == "completed"
    tools = proxy.rows(
        "SELECT tool, injected, invocation_error FROM tool_usages WHERE interception_id = ?", [case.interception]
    )
    assert tools == [{"tool": name.removeprefix("bmcp_coder_"), "injected": True, "invocation_error": None}]
    rounds = proxy.rows("SELECT count(*) AS n FROM token_usages WHERE interception_id = ?", [case.interception])
    assert rounds[0]["n"] in (1, 2)  # some recordings carry no usage in one round


def _text_of(answer, case: LoopCase) -> str:
    body = b"".join(answer.events) if answer.events is not None else answer.body
    return _text_of_body(body, case)


def _text_of_body(body: bytes, case: LoopCase) -> str:
    if not case.streaming:
        data = json.loads(body)
        if case.api == "anthropic":
            return "".join(b.get("text", "") for b in data["content"] if b["type"] == "text")
        return data["choices"][0]["message"].get("content") or ""
    if case.api == "anthropic":
        return "".join(d["delta"].get("text", "") for n, d in _events(body) if n == "content_block_delta")
    return "".join(
        c.get("delta", {}).get("content") or ""
        for _, d in _events(body)
        if isinstance(d, dict)
        for c in d.get("choices", [])
    )
