"""Real AI clients, headless, through a real mitmdump against the mock provider: Claude Code (`claude -p`),
Codex (`codex exec`, Responses API, after a WebSocket attempt), opencode (`opencode run`) and Gemini CLI
(`gemini -p`).

Each client is configured only by the lines the proxy prints (tests/support/clients.py), in a throwaway HOME.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from addon.cli.users import new_token
from addon.config import hash_token
from addon.wire.framing import EVENT_STREAM
from tests.e2e.test_tool_loop_e2e import mcp_test_server
from tests.support import sigv4
from tests.support.clients import binary, client_env, run
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import (
    anthropic_events,
    bedrock_frames,
    converse_frames,
    gemini_chunks,
    gemini_sse,
    responses_events,
)

pytestmark = pytest.mark.e2e

ANTHROPIC_KEY = "sk-ant-api03-clients-0123456789"
OPENAI_KEY = "sk-proj-clients-0123456789"
CLAUDE_QUIET = {
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
CODEX_CONFIG = """\
model = "gpt-5"
model_provider = "openai-ws"

[model_providers.openai-ws]
name = "OpenAI"
base_url = "https://api.openai.com/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
supports_websockets = true   # as the built-in provider: a WebSocket first, SSE when the provider declines
"""


@pytest.fixture
def llm_mock(mock: MockUpstream) -> MockUpstream:
    """Scripted answers go to the LLM calls only; the clients' side calls (settings, ...) get `200 {}`."""
    mock.queued_paths = {"/v1/messages", "/v1/responses"}
    return mock


def llm_calls(mock: MockUpstream, path: str) -> list[Any]:
    return [r for r in mock.requests if r.method == "POST" and r.path.split("?")[0] == path]


def claude_adds(env: dict[str, str], tmp_path: Path) -> tuple[list[Any], dict[str, Any]]:
    """`claude -p "add 2 and 3"` in stream-json: its messages and result, which must be the mock's final answer
    with no injected tool in sight."""
    done = run(
        [str(binary("claude")), "-p", "add 2 and 3", "--output-format", "stream-json", "--verbose"], env, tmp_path / "w"
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    [result] = [m for m in lines if m["type"] == "result"]
    assert (result["result"], result["is_error"]) == ("The sum is 5.", False)
    assert "bmcp_" not in done.stdout, "an injected tool reached Claude Code"
    return lines, result


def test_claude_code_prints_the_mock_text(
    llm_mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = start_proxy(provider_config(llm_mock.url))
    llm_mock.enqueue(Answer.sse(anthropic_events(["Hello from ", "the mock."])))
    done = run(
        [str(binary("claude")), "-p", "say hi"], client_env(proxy, tmp_path / "home", **CLAUDE_QUIET), tmp_path / "w"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from the mock."

    [call] = llm_calls(llm_mock, "/v1/messages")
    session = call.header("x-claude-code-session-id")
    assert session and call.header("x-api-key") == ANTHROPIC_KEY
    proxy.stop()
    [row] = proxy.rows("SELECT * FROM interceptions")
    assert (row["client"], row["client_session_id"], row["session_id"]) == ("Claude Code", session, session)
    assert (row["status"], row["route"], row["streaming"]) == ("completed", "/v1/messages", True)
    assert proxy.rows("SELECT prompt FROM user_prompts") == [{"prompt": "say hi"}]


def test_claude_code_on_vertex_is_recorded_as_vertex(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """`CLAUDE_CODE_USE_VERTEX=1` (Google auth skipped, as behind a gateway): Claude Code calls
    `{region}-aiplatform.googleapis.com`, which the bridge intercepts by default and records as Vertex."""
    proxy = start_proxy(f'[providers.vertex]\nupstream = "{mock.url}"\n' + mcp_test_server())

    def answer(seen: Any) -> Answer:
        if seen.path.endswith(":streamRawPredict"):
            return Answer.sse(anthropic_events(["Hello from ", "Vertex."]))
        return Answer.json({})

    mock.responder = answer
    vertex = {"CLAUDE_CODE_USE_VERTEX": "1", "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1", "CLOUD_ML_REGION": "us-east5"}
    quiet = {k: v for k, v in CLAUDE_QUIET.items() if k != "ANTHROPIC_API_KEY"}
    env = client_env(proxy, tmp_path / "home", **quiet, **vertex, ANTHROPIC_VERTEX_PROJECT_ID="proj-1")
    done = run([str(binary("claude")), "-p", "say hi"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from Vertex."
    calls = [r for r in mock.requests if r.path.endswith(":streamRawPredict")]
    assert calls, [r.path for r in mock.requests]
    prefix = "/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/"
    assert all(c.path.startswith(prefix) for c in calls)
    assert any(name.startswith("bmcp_") for c in calls for name in (t.get("name", "") for t in c.json()["tools"]))
    proxy.stop()
    rows = proxy.rows("SELECT provider, client, model, status, client_session_id FROM interceptions")
    models = {c.path.removeprefix(prefix).removesuffix(":streamRawPredict") for c in calls}
    assert {(r["provider"], r["client"], r["status"]) for r in rows} == {("vertex", "Claude Code", "completed")}
    assert {r["model"] for r in rows} == models and all(r["client_session_id"] for r in rows)


def test_claude_code_never_sees_the_injected_tool(
    llm_mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = start_proxy(provider_config(llm_mock.url) + "\n" + mcp_test_server())
    llm_mock.enqueue(
        Answer.sse(anthropic_events([""], msg_id="msg_1", tools=[("toolu_1", "bmcp_test_add", {"a": 2, "b": 3})])),
        Answer.sse(anthropic_events(["The sum ", "is 5."], msg_id="msg_2")),
    )
    lines, result = claude_adds(client_env(proxy, tmp_path / "home", **CLAUDE_QUIET), tmp_path)
    blocks = [b for m in lines if m["type"] == "assistant" for b in m["message"]["content"]]
    assert blocks and all(b["type"] != "tool_use" for b in blocks)

    first, second = llm_calls(llm_mock, "/v1/messages")
    assert "bmcp_test_add" in [t["name"] for t in first.json()["tools"]]
    [tool_result] = second.json()["messages"][-1]["content"]
    assert tool_result["tool_use_id"] == "toolu_1" and tool_result["content"] == [{"type": "text", "text": "5"}]
    proxy.stop()
    [row] = proxy.rows("SELECT * FROM interceptions")
    assert (row["client"], row["client_session_id"], row["status"]) == (
        "Claude Code",
        result["session_id"],
        "completed",
    )
    assert proxy.rows("SELECT tool, injected, invocation_error FROM tool_usages") == [
        {"tool": "add", "injected": True, "invocation_error": None}
    ]
    assert len(proxy.rows("SELECT * FROM token_usages")) == 2  # one row per round


def test_codex_falls_back_from_websocket_and_completes_through_the_responses_passthrough(
    llm_mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = start_proxy(provider_config(llm_mock.url))
    llm_mock.websocket_status = 426  # what OpenAI answers when it will not speak WebSocket
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1000},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 1209,
    }
    events = responses_events("Hello from the mock.", response_id="resp_codex", usage=usage)
    llm_mock.enqueue(Answer.sse(events))
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex/config.toml").write_text(CODEX_CONFIG)
    env = client_env(proxy, home, CODEX_HOME=str(home / ".codex"), OPENAI_API_KEY=OPENAI_KEY)
    done = run([str(binary("codex")), "exec", "--skip-git-repo-check", "--json", "say hi"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr

    # What Codex received is what the upstream sent: its text and its usage, as Codex reports them.
    out = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    messages = [
        e["item"]["text"] for e in out if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"
    ]
    assert messages == ["Hello from the mock."]
    [turn] = [e for e in out if e["type"] == "turn.completed"]
    assert (
        turn["usage"]["input_tokens"],
        turn["usage"]["cached_input_tokens"],
        turn["usage"]["output_tokens"],
        turn["usage"]["reasoning_output_tokens"],
    ) == (1200, 1000, 9, 4)

    upgrade, post = llm_mock.requests[0], llm_calls(llm_mock, "/v1/responses")[0]
    assert (upgrade.method, upgrade.path, upgrade.header("upgrade")) == ("GET", "/v1/responses", "websocket")
    session = post.header("session-id")
    assert session and post.header("authorization") == f"Bearer {OPENAI_KEY}"
    [thread] = [e["thread_id"] for e in out if e["type"] == "thread.started"]
    assert session == thread

    proxy.stop()
    [row] = proxy.rows("SELECT * FROM interceptions")  # the declined upgrade is no interception
    assert (row["client"], row["client_session_id"], row["session_id"]) == ("Codex", session, session)
    assert (row["route"], row["model"], row["status"], row["streaming"]) == (
        "/v1/responses",
        "gpt-5",
        "completed",
        True,
    )
    [tokens] = proxy.rows("SELECT * FROM token_usages")
    assert (tokens["input_tokens"], tokens["cache_read_input_tokens"], tokens["output_tokens"]) == (200, 1000, 9)
    assert json.loads(tokens["metadata"]) == {"reasoning": 4}
    assert tokens["provider_response_id"] == "resp_codex" and tokens["cost_micros"] > 0
    assert proxy.rows("SELECT prompt FROM user_prompts") == [{"prompt": "say hi"}]


def test_opencode_completes_through_the_anthropic_route(
    llm_mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = start_proxy(provider_config(llm_mock.url))
    llm_mock.default = Answer.sse(anthropic_events(["Hello from ", "the mock."]))  # a title call, then the turn
    env = client_env(
        proxy,
        tmp_path / "home",
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
    )
    done = run([str(binary("opencode")), "run", "-m", "anthropic/claude-sonnet-4-5", "say hi"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr
    assert "Hello from the mock." in done.stdout

    calls = llm_calls(llm_mock, "/v1/messages")
    assert calls and all(c.header("user-agent").startswith("opencode/") for c in calls)
    proxy.stop()
    rows = proxy.rows("SELECT * FROM interceptions")
    assert len(rows) == len(calls)
    assert {(r["client"], r["route"], r["status"]) for r in rows} == {("OpenCode", "/v1/messages", "completed")}
    assert "claude-sonnet-4-5" in {r["model"] for r in rows}
    assert {r["client_session_id"] for r in rows} == {calls[-1].header("x-session-affinity")}


AWS_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY000000", "AWS_SECRET_ACCESS_KEY": "secret-example"}


def adding_bedrock(seen: Any) -> Answer:
    """Bedrock's side of `claude_adds`: the injected `add` called, then the sum; other calls get `{}`."""
    if not seen.path.endswith("/invoke-with-response-stream"):
        return Answer.json({})
    body = seen.json()
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("tool_use_id") == "toolu_1" for b in last if isinstance(b, dict)):
        events = anthropic_events(["The sum ", "is 5."], msg_id="msg_2")
    elif "bmcp_test_add" in [t["name"] for t in body.get("tools", [])]:
        events = anthropic_events([""], msg_id="msg_1", tools=[("toolu_1", "bmcp_test_add", {"a": 2, "b": 3})])
    else:
        events = anthropic_events(["(no tools)"])
    return Answer(headers={"content-type": EVENT_STREAM}, events=bedrock_frames(events))


def test_claude_code_on_bedrock_is_recorded_and_passed_through_signed(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """`CLAUDE_CODE_USE_BEDROCK=1` with AWS keys: Claude Code SigV4-signs InvokeModel calls to
    `bedrock-runtime.{region}.amazonaws.com`; the bridge records them and forwards them as they were signed."""
    proxy = start_proxy(f'[providers.bedrock]\nupstream = "{mock.url}"\n' + mcp_test_server())

    def answer(seen: Any) -> Answer:
        if seen.path.endswith("/invoke-with-response-stream"):
            frames = bedrock_frames(anthropic_events(["Hello from ", "Bedrock."]))
            return Answer(headers={"content-type": EVENT_STREAM}, events=frames)
        return Answer.json({})

    mock.responder = answer
    quiet = {k: v for k, v in CLAUDE_QUIET.items() if k != "ANTHROPIC_API_KEY"}
    env = client_env(proxy, tmp_path / "home", **quiet, **AWS_KEYS, CLAUDE_CODE_USE_BEDROCK="1", AWS_REGION="us-east-1")
    done = run([str(binary("claude")), "-p", "say hi"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from Bedrock."
    calls = [r for r in mock.requests if r.path.startswith("/model/")]  # its model probes (`/invoke`) too
    assert any(c.path.endswith("/invoke-with-response-stream") for c in calls), [r.path for r in mock.requests]
    assert all(c.header("authorization").startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY000000/") for c in calls)
    assert all("bmcp_" not in c.body.decode() for c in calls)  # signed bodies: nothing injected
    proxy.stop()
    rows = proxy.rows("SELECT provider, client, model, status, client_session_id, metadata FROM interceptions")
    models = {unquote(c.path.removeprefix("/model/").rsplit("/", 1)[0]) for c in calls}
    assert {(r["provider"], r["client"], r["status"]) for r in rows} == {("bedrock", "Claude Code", "completed")}
    assert {r["model"] for r in rows} == models and all(r["client_session_id"] for r in rows)
    assert all(json.loads(r["metadata"])["tapped"] == "the body is SigV4-signed" for r in rows)  # and why
    assert {"prompt": "say hi"} in proxy.rows("SELECT prompt FROM user_prompts")  # besides its probes' "."


def test_claude_code_on_bedrock_mantle_with_an_api_key_is_bridged(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """`CLAUDE_CODE_USE_MANTLE=1` with a Bedrock API key: Anthropic's Messages API on
    `bedrock-mantle.{region}.api.aws`, whose key the bridge reuses for the tool loop: tools are injected."""
    proxy = start_proxy(f'[providers.bedrock-mantle]\nupstream = "{mock.url}"\n' + mcp_test_server())

    def answer(seen: Any) -> Answer:
        if seen.path.split("?")[0] == "/anthropic/v1/messages":
            return Answer.sse(anthropic_events(["Hello from ", "Mantle."]))
        return Answer.json({})

    mock.responder = answer
    quiet = {k: v for k, v in CLAUDE_QUIET.items() if k != "ANTHROPIC_API_KEY"}
    key = "ABSKbedrock-api-key-0123456789"
    mantle = {"CLAUDE_CODE_USE_MANTLE": "1", "AWS_REGION": "us-east-1", "AWS_BEARER_TOKEN_BEDROCK": key}
    done = run(
        [str(binary("claude")), "-p", "say hi"], client_env(proxy, tmp_path / "home", **quiet, **mantle), tmp_path / "w"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from Mantle."
    calls = [r for r in mock.requests if r.path.split("?")[0] == "/anthropic/v1/messages"]
    assert calls, [r.path for r in mock.requests]
    assert any(t["name"].startswith("bmcp_") for c in calls for t in c.json().get("tools", []))
    proxy.stop()
    rows = proxy.rows("SELECT provider, client, status, client_session_id, credential_hint FROM interceptions")
    assert {(r["provider"], r["client"], r["status"]) for r in rows} == {("bedrock-mantle", "Claude Code", "completed")}
    assert all(r["client_session_id"] for r in rows) and key not in json.dumps(rows, default=str)


def test_claude_code_on_bedrock_with_an_api_key_gets_the_injected_tools(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """`AWS_BEARER_TOKEN_BEDROCK`: a key the bridge can reuse, so InvokeModel is bridged. The loop runs in the
    bridge, its event-stream frames rewritten with valid checksums; Claude Code sees one answer, no injected
    call."""
    proxy = start_proxy(f'[providers.bedrock]\nupstream = "{mock.url}"\n' + mcp_test_server())
    mock.responder = adding_bedrock
    quiet = {k: v for k, v in CLAUDE_QUIET.items() if k != "ANTHROPIC_API_KEY"}
    key = "ABSKbedrock-api-key-0123456789"
    bedrock = {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1", "AWS_BEARER_TOKEN_BEDROCK": key}
    claude_adds(client_env(proxy, tmp_path / "home", **quiet, **bedrock), tmp_path)
    streamed = [r for r in mock.requests if r.path.endswith("/invoke-with-response-stream")]
    assert all(r.header("authorization") == f"Bearer {key}" for r in streamed)
    assert any(r.json()["messages"][-1]["content"][0].get("tool_use_id") == "toolu_1" for r in streamed)
    proxy.stop()
    rows = proxy.rows("SELECT provider, client, status FROM interceptions")
    assert {(r["provider"], r["client"], r["status"]) for r in rows} == {("bedrock", "Claude Code", "completed")}
    assert proxy.rows("SELECT tool, injected, invocation_error FROM tool_usages") == [
        {"tool": "add", "injected": True, "invocation_error": None}
    ]


def test_claude_code_on_bedrock_signed_by_the_bridge_gets_the_injected_tools(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """The operator gives the bridge AWS credentials; Claude Code skips its own Bedrock auth
    (`CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`, meant for gateways) and authenticates to the proxy as its user. Every
    InvokeModel call, the tool loop's too, reaches Bedrock SigV4-signed by the bridge for its own body."""
    token = new_token()
    proxy = start_proxy(
        f'[providers.bedrock]\nupstream = "{mock.url}"\naws_access_key_id = "AKIAOPERATOR00000000"\n'
        'aws_secret_access_key = "env:TEST_OPERATOR_SECRET"\n\n'
        f'[users.alice]\ntoken = "{hash_token(token)}"\n' + mcp_test_server(),
        env={"TEST_OPERATOR_SECRET": "operator-secret-0123456789"},
    )
    mock.responder = adding_bedrock
    quiet = {k: v for k, v in CLAUDE_QUIET.items() if k != "ANTHROPIC_API_KEY"}
    bedrock = {"CLAUDE_CODE_USE_BEDROCK": "1", "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1", "AWS_REGION": "us-west-2"}
    env = client_env(proxy, tmp_path / "home", **quiet, **bedrock)
    env["HTTPS_PROXY"] = env["https_proxy"] = proxy.url.replace("://", f"://alice:{token}@", 1)
    claude_adds(env, tmp_path)
    streamed = [r for r in mock.requests if r.path.endswith("/invoke-with-response-stream")]
    assert any(r.json()["messages"][-1]["content"][0].get("tool_use_id") == "toolu_1" for r in streamed)
    for seen in (r for r in mock.requests if r.path.startswith("/model/")):
        assert sigv4.scope(seen.header("authorization"))["region"] == "us-west-2"
        assert sigv4.valid(seen.method, seen.path, seen.headers, seen.body, "operator-secret-0123456789"), seen.path
    proxy.stop()
    rows = proxy.rows("SELECT provider, client, status, initiator, credential_kind FROM interceptions")
    assert {tuple(r.values()) for r in rows} == {("bedrock", "Claude Code", "completed", "alice", "centralized")}
    assert proxy.rows("SELECT tool, injected, invocation_error FROM tool_usages") == [
        {"tool": "add", "injected": True, "invocation_error": None}
    ]


def test_claude_code_on_a_prefixed_anthropic_compatible_endpoint(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """`ANTHROPIC_BASE_URL=https://api.z.ai/api/anthropic`, as Z.ai documents it: a provider of type anthropic on
    that host records `/api/anthropic/v1/messages` and injects the tools there."""
    config = f'[providers.zai]\ntype = "anthropic"\nhost = "api.z.ai"\nupstream = "{mock.url}"\n'
    proxy = start_proxy(config + mcp_test_server())

    def answer(seen: Any) -> Answer:
        if seen.method == "POST" and seen.path.split("?")[0] == "/api/anthropic/v1/messages":
            return Answer.sse(anthropic_events(["Hello from ", "Z.ai."]))
        return Answer.json({})

    mock.responder = answer
    env = client_env(proxy, tmp_path / "home", **CLAUDE_QUIET, ANTHROPIC_BASE_URL="https://api.z.ai/api/anthropic")
    done = run([str(binary("claude")), "-p", "say hi"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from Z.ai."
    calls = [r for r in mock.requests if r.method == "POST" and r.path.split("?")[0] == "/api/anthropic/v1/messages"]
    assert any(t["name"].startswith("bmcp_") for c in calls for t in c.json().get("tools", []))
    proxy.stop()
    rows = proxy.rows("SELECT provider_name, client, status, client_session_id FROM interceptions")
    assert {(r["provider_name"], r["client"], r["status"]) for r in rows} == {("zai", "Claude Code", "completed")}
    assert all(r["client_session_id"] for r in rows)


def test_opencode_on_bedrock_converse_is_recorded(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """opencode's `amazon-bedrock` provider calls ConverseStream, SigV4-signed: recorded, relayed unchanged."""
    proxy = start_proxy(f'[providers.bedrock]\nupstream = "{mock.url}"\n')

    def answer(seen: Any) -> Answer:
        if seen.path.endswith("/converse-stream"):
            return Answer(headers={"content-type": EVENT_STREAM}, events=converse_frames(["Hello from ", "Converse."]))
        return Answer.json({})

    mock.responder = answer
    env = client_env(
        proxy,
        tmp_path / "home",
        **AWS_KEYS,
        AWS_REGION="us-east-1",
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
    )
    model = "amazon-bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
    done = run([str(binary("opencode")), "run", "-m", model, "say hi"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr + str([r.path for r in mock.requests])
    assert "Hello from Converse." in done.stdout
    calls = [r for r in mock.requests if r.path.endswith("/converse-stream")]
    assert calls and all(c.header("authorization").startswith("AWS4-HMAC-SHA256 ") for c in calls)
    proxy.stop()
    rows = proxy.rows("SELECT provider, client, model, status, streaming FROM interceptions")
    assert len(rows) == len(calls)
    assert {(r["provider"], r["client"], r["status"], r["streaming"]) for r in rows} == {
        ("bedrock", "OpenCode", "completed", True)
    }
    assert {"prompt": '"say hi"'} in proxy.rows("SELECT prompt FROM user_prompts")  # as opencode sends it
    usage = proxy.rows("SELECT input_tokens, cost_micros FROM token_usages")
    assert usage and all(u["input_tokens"] == 11 and u["cost_micros"] for u in usage)


def gemini_adding(seen: Any) -> Answer:
    """Gemini's side of "add 2 and 3": the injected `add` called, then the sum; other calls get `{}`."""
    if ":streamGenerateContent" not in seen.path:
        return Answer.json({})
    body = seen.json()
    last = body["contents"][-1]["parts"]
    declared = [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
    if any(p.get("functionResponse", {}).get("name") == "bmcp_test_add" for p in last):
        chunks = gemini_chunks(["The sum ", "is 5."], response_id="resp-2")
    elif "bmcp_test_add" in declared:
        chunks = gemini_chunks([], thought="I can use add.", calls=[("bmcp_test_add", {"a": 2, "b": 3})])
    else:
        chunks = gemini_chunks(["(no tools)"])
    for chunk in chunks:
        chunk["modelVersion"] = "gemini-2.5-flash"
    return Answer(headers={"content-type": "text/event-stream"}, events=gemini_sse(chunks))


def test_gemini_cli_never_sees_the_injected_tool(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Gemini CLI in headless mode with an API key: it streams with `alt=sse` and declares its own tools in
    `parametersJsonSchema`; the bridge adds the MCP tools, runs the `add` the model calls, and the CLI prints
    the answer of the second round, never having seen the call."""
    proxy = start_proxy(f'[providers.gemini]\nupstream = "{mock.url}"\n' + mcp_test_server())
    mock.responder = gemini_adding
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    settings = {"privacy": {"usageStatisticsEnabled": False}, "general": {"maxAttempts": 1}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))  # no usage logging, no retries
    (tmp_path / "tmp").mkdir()
    env = client_env(
        proxy,
        home,
        GEMINI_API_KEY="AIzaSy-gemini-cli-0123456789",
        GEMINI_CLI_TRUST_WORKSPACE="true",
        TMPDIR=str(tmp_path / "tmp"),
    )
    done = run(
        [str(binary("gemini")), "-p", "add 2 and 3", "-m", "gemini-2.5-flash", "-o", "json"], env, tmp_path / "w"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["response"] == "The sum is 5."
    assert "bmcp_" not in done.stdout, "an injected tool reached Gemini CLI"
    calls = [r for r in mock.requests if ":streamGenerateContent" in r.path]
    assert [r.path for r in calls] == ["/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"] * 2
    first, second = (c.json() for c in calls)
    own = [d["name"] for d in first["tools"][0]["functionDeclarations"]]
    assert "read_file" in own and all(not n.startswith("bmcp_") for n in own)  # the CLI's own, first
    assert "bmcp_test_add" in [d["name"] for d in first["tools"][-1]["functionDeclarations"]]
    assert second["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "bmcp_test_add", "response": {"output": "5"}}}
    ]
    proxy.stop()
    [row] = proxy.rows("SELECT provider, client, model, status, streaming FROM interceptions")
    assert row == {
        "provider": "gemini",
        "client": "Gemini CLI",
        "model": "gemini-2.5-flash",
        "status": "completed",
        "streaming": True,
    }
    assert {"prompt": "add 2 and 3"} in proxy.rows("SELECT prompt FROM user_prompts")  # not its session context
    usage = proxy.rows("SELECT input_tokens, output_tokens FROM token_usages")
    assert len(usage) == 2 and all(u["output_tokens"] > 0 for u in usage)
    assert proxy.rows("SELECT tool, injected, invocation_error FROM tool_usages") == [
        {"tool": "add", "injected": True, "invocation_error": None}
    ]
