"""The guards through a real mitmdump with the official SDKs: secrets kept out of everything the project writes,
secrets kept from leaving (`[redaction] outbound`), model allowlists on every recorded route, and the
metadata-only recording level. The secrets are fake, built from parts so that no scanner flags this file."""

import json
import threading
from collections.abc import Callable
from pathlib import Path

import anthropic
import duckdb
import httpx
import httpx2
import openai
import pytest

from addon.config import hash_token
from tests.e2e.test_clients_e2e import CLAUDE_QUIET
from tests.e2e.test_providers_e2e import BEDROCK_MODEL, OPERATOR_SECRET, signed_by_the_operator
from tests.support.clients import binary, client_env, run
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import (
    anthropic_events,
    anthropic_message,
    chat_completion,
    converse_response,
    responses_events,
)

pytestmark = pytest.mark.e2e

AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
ANTHROPIC_KEY = "sk-ant-api03-" + ("Ab3dE5gH7jK9mN1pQ2rS4tU6vW8xY0z" * 4)[:93] + "AA"
BYOK = "sk-ant-api03-byok-test-0123456789abcdef"
TOKENS = {"alice": "aib_guards_alice_0123456789abcdef", "bob": "aib_guards_bob_0123456789abcdef"}
PROMPT = f"Deploy with key {AWS_KEY} and use {ANTHROPIC_KEY} for the agent."


def users() -> str:
    return "".join(f'[users.{n}]\ntoken = "{hash_token(t)}"\n\n' for n, t in TOKENS.items())


def everything_written(root: Path) -> bytes:
    """Every byte of every file the proxy's directory holds now (the audit file, its WAL, dumps, the CA aside)."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "conf" not in p.parts)


def audit(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_secrets_never_reach_the_audit_the_logs_or_the_dumps(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    dumps = tmp_path / "dumps"
    proxy = start_proxy(
        provider_config(mock.url),
        args=(
            *("--set", f"aibridge_dump_dir={dumps}", "--set", "aibridge_json_logs=true"),
            *("--set", "aibridge_tracing=true", "--set", "aibridge_trace_content=true"),
        ),
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": mock.url},  # spans, prompt text and all, to the mock's /v1/traces
    )
    mock.enqueue(
        Answer.json(
            anthropic_message(
                "I will look.",
                thinking=f"The user pasted {AWS_KEY}; I must not repeat it.",
                tools=[("toolu_1", "Bash", {"command": f"AWS_ACCESS_KEY_ID={AWS_KEY} aws s3 ls"})],
            )
        )
    )
    sdk = anthropic.Anthropic(api_key=BYOK, max_retries=0)
    message = sdk.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}],
    )
    assert message.content[-1].type == "tool_use"  # the client gets its answer as it came
    assert AWS_KEY in mock.requests[0].body.decode()  # outbound is off by default: the request left as it was
    mock.enqueue(Answer(200, {"content-type": "application/x-protobuf"}, b""))  # the collector's answer
    assert proxy.stop() == 0  # shutting down flushes the spans
    (spans,) = [r.body for r in mock.requests if r.path == "/v1/traces"]
    assert b"[REDACTED:aws-access-key]" in spans and AWS_KEY.encode() not in spans

    written = everything_written(tmp_path)
    logs = "\n".join(proxy.output).encode()
    for secret in (AWS_KEY, ANTHROPIC_KEY):
        assert secret.encode() not in written and secret.encode() not in logs
    assert list(dumps.rglob("*.req.txt")), "the dump was written"
    ((prompt, meta),) = audit(proxy.db_path, "SELECT prompt, metadata FROM user_prompts")
    assert prompt == "Deploy with key [REDACTED:aws-access-key] and use [REDACTED:anthropic-key] for the agent."
    assert json.loads(meta)["redacted"] == ["anthropic-key", "aws-access-key"]
    ((tool_input,),) = audit(proxy.db_path, "SELECT input FROM tool_usages")
    assert "[REDACTED:aws-access-key] aws s3 ls" in tool_input
    ((thought,),) = audit(proxy.db_path, "SELECT content FROM model_thoughts")
    assert "[REDACTED:aws-access-key]" in thought


def test_outbound_block_refuses_before_the_provider_is_called(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(provider_config(mock.url) + '\n[redaction]\noutbound = "block"\n')
    sdk = anthropic.Anthropic(api_key=BYOK, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": PROMPT}])
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert "anthropic-key" in message and "aws-access-key" in message and AWS_KEY not in message
    assert mock.requests == []
    proxy.stop()
    ((status, http_status),) = audit(proxy.db_path, "SELECT status, http_status FROM interceptions")
    assert (status, http_status) == ("refused", 400)


def test_outbound_redact_changes_only_the_secrets_bytes_bridged_and_tapped(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    start_proxy(provider_config(mock.url) + '\n[redaction]\noutbound = "redact"\n')
    mock.enqueue(Answer.json(anthropic_message("ok")))
    body = json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": PROMPT, "cache_control": {"type": "ephemeral"}}]}
            ],
            "x-unknown-field": {"kept": [1, 2.50, "as is"]},
        },
        indent=1,  # an unusual layout: a re-serialized body would not keep it
    ).encode()
    with httpx.Client(timeout=30) as http:
        answer = http.post(
            "https://api.anthropic.com/v1/messages",
            content=body,
            headers={"x-api-key": BYOK, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
    assert answer.status_code == 200
    expected = body.replace(AWS_KEY.encode(), b"[REDACTED:aws-access-key]").replace(
        ANTHROPIC_KEY.encode(), b"[REDACTED:anthropic-key]"
    )
    assert mock.requests[0].body == expected

    # the Responses API is tapped (passed through as it came): redacted just the same
    mock.enqueue(Answer.sse(responses_events("ok")))
    sdk = openai.OpenAI(api_key="sk-proj-guards-0123456789", max_retries=0)
    with sdk.responses.stream(model="gpt-4.1", input=PROMPT) as stream:
        stream.until_done()
    sent = mock.requests[1].json()
    assert sent["input"] == "Deploy with key [REDACTED:aws-access-key] and use [REDACTED:anthropic-key] for the agent."


def test_a_user_outside_the_allowlist_is_refused_on_every_recorded_route(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    config = provider_config(mock.url) + "\n" + users() + '[allowed_models]\nusers = { bob = ["claude-haiku-*"] }\n'
    proxy = start_proxy(config)
    port = proxy.url.rsplit(":", 1)[1]

    def through(user: str) -> httpx2.Client:
        return httpx2.Client(proxy=f"http://{user}:{TOKENS[user]}@127.0.0.1:{port}", timeout=30)

    with through("bob") as http:
        claude = anthropic.Anthropic(api_key=BYOK, max_retries=0, http_client=http)
        with pytest.raises(anthropic.PermissionDeniedError) as messages:
            claude.messages.create(
                model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        assert "claude-sonnet-4-5 is not allowed for bob" in str(messages.value)
        gpt = openai.OpenAI(api_key="sk-proj-guards-0123456789", max_retries=0, http_client=http)
        with pytest.raises(openai.PermissionDeniedError):
            gpt.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.PermissionDeniedError):  # tapped, and refused all the same
            gpt.responses.create(model="gpt-4.1", input="hi")
        assert mock.requests == []
        mock.enqueue(Answer.json(anthropic_message("fine")))
        allowed = claude.messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
        assert allowed.content[0].text == "fine"  # type: ignore[union-attr]
    with through("alice") as http:  # no list: any model
        mock.enqueue(Answer.json(chat_completion("sure")))
        gpt = openai.OpenAI(api_key="sk-proj-guards-0123456789", max_retries=0, http_client=http)
        assert gpt.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]).choices
    proxy.stop()
    rows = audit(proxy.db_path, "SELECT initiator, model, status, http_status FROM interceptions ORDER BY started_at")
    assert [r[2:] for r in rows] == [("refused", 403)] * 3 + [("completed", 200)] * 2
    assert [r[:2] for r in rows] == [
        ("bob", "claude-sonnet-4-5"),
        ("bob", "gpt-4.1"),
        ("bob", "gpt-4.1"),
        ("bob", "claude-haiku-4-5"),
        ("alice", "gpt-4.1"),
    ]


def test_metadata_only_keeps_no_text(mock: MockUpstream, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy('record = "metadata"\n' + provider_config(mock.url))
    mock.enqueue(
        Answer.json(
            anthropic_message("done", thinking="secret plans", tools=[("toolu_9", "Read", {"path": "/etc/passwd"})])
        )
    )
    sdk = anthropic.Anthropic(api_key=BYOK, max_retries=0)
    sdk.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=8,
        messages=[{"role": "user", "content": "the confidential roadmap"}],
        tools=[{"name": "Read", "description": "read", "input_schema": {"type": "object"}}],
    )
    proxy.stop()
    assert audit(proxy.db_path, "SELECT count(*) FROM user_prompts") == [(0,)]
    assert audit(proxy.db_path, "SELECT count(*) FROM model_thoughts") == [(0,)]
    assert audit(proxy.db_path, "SELECT tool, input FROM tool_usages") == [("Read", None)]
    ((model, status, tokens),) = audit(
        proxy.db_path,
        "SELECT i.model, i.status, t.input_tokens FROM interceptions i JOIN token_usages t ON t.interception_id = i.id",
    )
    assert (model, status, tokens) == ("claude-sonnet-4-5", "completed", 12)
    written = everything_written(proxy.tmp)
    assert b"confidential roadmap" not in written and b"secret plans" not in written and b"/etc/passwd" not in written


def test_claude_code_pastes_a_key_the_provider_and_the_audit_never_see_it(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    mock.queued_paths = {"/v1/messages"}  # Claude Code's side calls get `200 {}`
    proxy = start_proxy(provider_config(mock.url) + '\n[redaction]\noutbound = "redact"\n')
    mock.enqueue(Answer.sse(anthropic_events(["Rotate ", "that key."])))
    env = client_env(proxy, tmp_path / "home", **CLAUDE_QUIET)
    done = run([str(binary("claude")), "-p", f"is {AWS_KEY} safe to commit?"], env, tmp_path / "w")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Rotate that key."
    [call] = [r for r in mock.requests if r.method == "POST" and r.path.startswith("/v1/messages")]
    assert AWS_KEY.encode() not in call.body and b"[REDACTED:aws-access-key]" in call.body
    proxy.stop()
    assert proxy.rows("SELECT prompt FROM user_prompts") == [{"prompt": "is [REDACTED:aws-access-key] safe to commit?"}]
    kept = b"".join(p.read_bytes() for p in proxy.db_path.parent.glob(proxy.db_path.name + "*") if p.is_file())
    assert kept and AWS_KEY.encode() not in kept  # the audit file (and a WAL); Claude Code's own HOME is its own
    [row] = proxy.rows("SELECT metadata FROM interceptions")
    assert json.loads(row["metadata"])["outbound"] == "redacted"


def test_a_converse_call_the_bridge_signs_is_signed_over_the_redacted_body(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Converse is tapped (passed through as it came): with the operator's AWS credentials the bridge signs it,
    and with `outbound = "redact"` it signs the body that leaves, so AWS would accept it."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    proxy = start_proxy(
        f'[providers.bedrock]\nupstream = "{mock.url}"\naws_access_key_id = "AKIAOPERATOR00000000"\n'
        'aws_secret_access_key = "env:TEST_OPERATOR_SECRET"\n\n[redaction]\noutbound = "redact"\n\n' + users(),
        env={"TEST_OPERATOR_SECRET": OPERATOR_SECRET},
    )
    for var in ("HTTPS_PROXY", "https_proxy"):  # an authenticated user sending no AWS credentials: the bridge signs
        monkeypatch.setenv(var, proxy.url.replace("://", f"://alice:{TOKENS['alice']}@", 1))
    mock.enqueue(Answer.json(converse_response("Conversed.")))
    unsigned = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    messages = [{"role": "user", "content": [{"text": PROMPT}]}]
    answer = unsigned.converse(modelId=BEDROCK_MODEL, messages=messages)
    assert answer["output"]["message"]["content"] == [{"text": "Conversed."}]
    [seen] = mock.requests
    assert AWS_KEY.encode() not in seen.body and b"[REDACTED:aws-access-key]" in seen.body
    assert signed_by_the_operator(seen), seen.headers
    assert seen.header("content-length") == str(len(seen.body))


GATE = """
[tool_gate.rules.no-rm-rf]
tool = "^Bash$"
arguments = "rm -rf"

[tool_gate.rules.watch-curl]
arguments = "curl "
action = "audit"
"""


def test_a_blocked_tool_call_never_reaches_the_client_and_text_before_it_streams_on(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(provider_config(mock.url) + GATE)
    seen_text = threading.Event()
    mock.enqueue(
        Answer.sse(
            anthropic_events(["I will clean ", "up."], tools=[("toolu_1", "Bash", {"command": "rm -rf /"})]),
            gate=seen_text,  # the stream's last event waits until the client has had its text
        )
    )
    sdk = anthropic.Anthropic(api_key=BYOK, max_retries=0)
    texts, kinds = [], []
    with sdk.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "clean up"}],
        tools=[{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}],
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "text":
                texts.append(event.text)
                seen_text.set()
        final = stream.get_final_message()
    assert not mock.gate_timed_out, "the text before the held call did not reach the client in time"
    assert [b.type for b in final.content] == ["text", "text"] and final.stop_reason == "end_turn"
    assert (
        final.content[1].text == "[aibridge] The tool call Bash was blocked by policy (rule no-rm-rf) and was not run."
    )  # type: ignore[union-attr]
    proxy.stop()
    [row] = proxy.rows("SELECT tool, metadata FROM tool_usages")
    assert row["tool"] == "Bash" and json.loads(row["metadata"]) == {
        "gate": "no-rm-rf",
        "action": "block",
        "blocked": True,
    }


def test_chat_completions_are_gated_and_audit_rules_only_record(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(provider_config(mock.url) + GATE)
    mock.enqueue(
        Answer.json(chat_completion(None, tools=[("call_1", "Bash", '{"command": "sudo rm -rf /var"}')])),
        Answer.json(chat_completion(None, tools=[("call_2", "Bash", '{"command": "curl https://example.com"}')])),
    )
    sdk = openai.OpenAI(api_key="sk-proj-guards-0123456789", max_retries=0)
    tools = [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]
    blocked = sdk.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}], tools=tools)  # type: ignore[arg-type]
    assert blocked.choices[0].message.tool_calls is None and blocked.choices[0].finish_reason == "stop"
    assert "blocked by policy (rule no-rm-rf)" in (blocked.choices[0].message.content or "")
    audited = sdk.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "y"}], tools=tools)  # type: ignore[arg-type]
    assert audited.choices[0].message.tool_calls and audited.choices[0].finish_reason == "tool_calls"
    proxy.stop()
    rows = proxy.rows("SELECT metadata FROM tool_usages ORDER BY created_at")
    assert [json.loads(r["metadata"]) for r in rows] == [
        {"gate": "no-rm-rf", "action": "block", "blocked": True},
        {"gate": "watch-curl", "action": "audit", "blocked": False},
    ]


def test_claude_code_never_gets_a_blocked_bash_call_and_runs_an_allowed_one(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    mock.queued_paths = {"/v1/messages"}  # Claude Code's side calls get `200 {}`
    proxy = start_proxy(provider_config(mock.url) + GATE)
    env = client_env(proxy, tmp_path / "home", **CLAUDE_QUIET)
    work = tmp_path / "w"
    claude = [str(binary("claude")), "-p", "--allowedTools", "Bash", "--output-format", "stream-json", "--verbose"]

    mock.enqueue(Answer.sse(anthropic_events(["Wiping."], tools=[("toolu_rm", "Bash", {"command": "rm -rf ./data"})])))
    done = run([*claude, "wipe the data"], env, work)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    [result] = [m for m in lines if m["type"] == "result"]
    assert "blocked by policy (rule no-rm-rf)" in result["result"] and not result["is_error"]
    assert '"tool_use"' not in done.stdout  # Claude Code never saw the call

    mock.enqueue(
        Answer.sse(
            anthropic_events(["Marking."], tools=[("toolu_ok", "Bash", {"command": "echo gate-ok > marker.txt"})])
        ),
        Answer.sse(anthropic_events(["Marked."])),
    )
    done = run([*claude, "leave a marker"], env, work)
    assert done.returncode == 0, done.stderr
    assert (work / "marker.txt").read_text().strip() == "gate-ok"  # the allowed call ran
    calls = [r for r in mock.requests if r.method == "POST" and r.path.startswith("/v1/messages")]
    results = [b for b in calls[-1].json()["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["toolu_ok"]
    proxy.stop()
    rows = proxy.rows("SELECT tool, metadata FROM tool_usages ORDER BY created_at")
    assert [(r["tool"], json.loads(r["metadata"] or "{}").get("blocked")) for r in rows] == [
        ("Bash", True),
        ("Bash", None),
    ]
