"""Faults not covered by test_faults_e2e.py: malformed and cut-off SSE, 529, a first byte past the read timeout,
very large answers, malformed MCP results, clients that leave early, over-large and compressed bodies.

Each test ends by checking that the same proxy still serves an ordinary request (`still_serving`), and reads
the audit file after shutdown: every interception that started has ended, with the right status.
The map of faults to tests is in tests/FAULTS.md.
"""

import gzip
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import anthropic
import brotli
import httpx
import pytest
import zstandard

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import ROOT, Proxy, provider_config
from tests.support.scenarios import anthropic_events, anthropic_message, chat_chunks

A_URL = "https://api.anthropic.com/v1/messages"
O_URL = "https://api.openai.com/v1/chat/completions"
A_KEY = "sk-ant-api03-morefaults-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]
A_STREAM = {"model": "claude-x", "max_tokens": 8, "stream": True, "messages": MESSAGES}
O_STREAM = {"model": "gpt-x", "stream": True, "messages": MESSAGES}


def still_serving(mock: MockUpstream) -> None:
    mock.enqueue(Answer.json(anthropic_message("still here")))
    message = anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
        model="claude-x", max_tokens=8, messages=MESSAGES
    )
    assert message.content[0].text == "still here"  # type: ignore[union-attr]


def ended(proxy: Proxy) -> list[dict]:
    """Every interception after shutdown, oldest first; none may be left without an end."""
    proxy.stop()
    rows = proxy.rows("SELECT status, http_status, error, ended_at FROM interceptions ORDER BY started_at")
    assert all(row.pop("ended_at") is not None for row in rows), rows
    return rows


def tunnel(proxy: Proxy, host: str = "api.anthropic.com") -> ssl.SSLSocket:
    """A raw TLS connection to `host` through the proxy's CONNECT, for requests no HTTP client would send."""
    parts = urlsplit(proxy.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=15)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])
    return context.wrap_socket(sock, server_hostname=host)


def sse_data(text: str) -> list[str]:
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


# --- upstream -----------------------------------------------------------------------------------------------


def test_malformed_sse_events_are_relayed_as_sent_and_the_stream_completes(mock: MockUpstream, proxy: Proxy) -> None:
    """Broken lines and invalid JSON in `data:` are the provider's bytes: relayed unchanged, skipped by the audit."""
    events = anthropic_events(["a", "b"])
    bad = [b"event: content_block_delta\ndata: {not json\n\n", b"a line with no field\r\n\n", b": comment\n\n"]
    mock.enqueue(Answer.sse([*events[:3], *bad, *events[3:]]))
    chunks = chat_chunks(["a", "b"])
    mock.enqueue(Answer.sse([b"data: {oops\n\n", b"data:\n\n", *chunks]))
    with httpx.Client() as client:
        a = client.post(A_URL, json=A_STREAM, headers={"x-api-key": A_KEY})
        o = client.post(O_URL, json={**O_STREAM, "stream_options": {"include_usage": True}})
    assert a.content == b"".join([*events[:3], *bad, *events[3:]])
    assert o.content == b"".join([b"data: {oops\n\n", b"data:\n\n", *chunks])
    still_serving(mock)
    rows = ended(proxy)
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert proxy.rows("SELECT sum(output_tokens) AS n FROM token_usages WHERE output_tokens = 42") == [{"n": 42}]


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_a_stream_that_ends_without_its_final_event_gets_an_error_event(
    api: str, mock: MockUpstream, proxy: Proxy
) -> None:
    """A clean close before `message_stop` / `[DONE]` is a cut-off answer: the client must not take it as whole."""
    if api == "anthropic":
        events = anthropic_events(["a", "b"])[:-1]  # no message_stop
        url, body = A_URL, A_STREAM
    else:
        events = chat_chunks(["a", "b"])[:-1]  # no [DONE]
        url, body = O_URL, {**O_STREAM, "stream_options": {"include_usage": True}}
    mock.enqueue(Answer.sse(events))
    with httpx.Client() as client:
        response = client.post(url, json=body)
    assert response.status_code == 200
    assert response.content.startswith(b"".join(events))
    error = json.loads(sse_data(response.text)[-1])
    assert "ended before its final event" in error["error"]["message"]
    if api == "anthropic":
        assert error["type"] == "error" and response.text.rstrip().splitlines()[-2] == "event: error"
    still_serving(mock)
    first, last = ended(proxy)
    assert first["status"] == "failed" and "ended before its final event" in first["error"]
    assert last["status"] == "completed"


@pytest.mark.parametrize("status", [429, 500, 529])
def test_overload_statuses_are_relayed_with_retry_after(status: int, mock: MockUpstream, proxy: Proxy) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    mock.enqueue(Answer.json(body, status, {"retry-after": "42", "x-should-retry": "true"}))
    with httpx.Client() as client:
        response = client.post(A_URL, json=A_STREAM, headers={"x-api-key": A_KEY})
    assert response.status_code == status
    assert response.headers["retry-after"] == "42" and response.headers["x-should-retry"] == "true"
    assert response.json() == body
    still_serving(mock)
    first, _ = ended(proxy)
    assert first == {"status": "failed", "http_status": status, "error": "overloaded_error: Overloaded"}


def test_a_first_byte_slower_than_the_read_timeout_is_a_504(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(provider_config(mock.url), args=("--set", "aibridge_read_timeout=1"))
    mock.enqueue(Answer.sse(anthropic_events(["late"]), first_byte_delay=3))
    with pytest.raises(anthropic.APIStatusError) as err:
        anthropic.Anthropic(api_key=A_KEY, max_retries=0).messages.create(
            model="claude-x", max_tokens=8, messages=MESSAGES, stream=True
        )
    assert err.value.status_code == 504 and err.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "timed out" in err.value.message
    time.sleep(2.5)  # let the late answer go by before the next request takes the mock's queue
    still_serving(mock)
    first, _ = ended(proxy)
    assert first["status"] == "failed" and first["http_status"] == 504


def test_far_larger_answers_than_usual_are_relayed_whole_and_recorded(mock: MockUpstream, proxy: Proxy) -> None:
    big_text = "x" * (24 * 1024 * 1024)  # 24 MiB in one blocking answer
    mock.enqueue(Answer.json(anthropic_message(big_text)))
    parts = ["y" * 1000] * 8000  # 8 MB in 8,000 events
    mock.enqueue(Answer.sse(anthropic_events(parts)))
    client = anthropic.Anthropic(api_key=A_KEY, max_retries=0, timeout=120)
    message = client.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert message.content[0].text == big_text  # type: ignore[union-attr]
    with client.messages.stream(model="claude-x", max_tokens=8, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "".join(parts)
    still_serving(mock)
    assert [r["status"] for r in ended(proxy)] == ["completed"] * 3


# --- MCP ----------------------------------------------------------------------------------------------------


def test_malformed_mcp_results_become_error_results_the_model_reads(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    server = (
        "[mcp_servers.raw]\n"
        f"command = {json.dumps(sys.executable)}\n"
        'args = ["-m", "tests.support.raw_mcp_server"]\n'
        f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}\n'
        "tool_timeout = 2\n"
    )
    proxy = start_proxy(provider_config(mock.url) + "\n" + server)
    calls = [(f"t_{name}", f"bmcp_raw_{name}", {}) for name in ("bad_shape", "bad_item", "not_json", "wrong_id")]
    mock.enqueue(
        Answer.json(anthropic_message("", msg_id="m1", tools=[*calls, ("t_ok", "bmcp_raw_ok", {})])),
        Answer.json(anthropic_message("Coped.", msg_id="m2")),
    )
    message = anthropic.Anthropic(api_key=A_KEY, max_retries=0, timeout=60).messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
    )
    assert message.content[-1].text == "Coped."  # type: ignore[union-attr]
    results = {r["tool_use_id"]: r for r in mock.requests[1].json()["messages"][-1]["content"]}
    for call_id, _, _ in calls:
        assert results[call_id]["is_error"] is True, results[call_id]
    assert results["t_ok"].get("is_error") is not True and results["t_ok"]["content"][0]["text"] == "fine"
    still_serving(mock)
    assert [r["status"] for r in ended(proxy)] == ["completed"] * 2
    errors = proxy.rows("SELECT tool, invocation_error FROM tool_usages WHERE injected ORDER BY tool")
    assert [e["tool"] for e in errors if e["invocation_error"]] == ["bad_item", "bad_shape", "not_json", "wrong_id"]


# --- clients ------------------------------------------------------------------------------------------------


def test_a_client_that_leaves_before_its_body_ends_starts_nothing(mock: MockUpstream, proxy: Proxy) -> None:
    with tunnel(proxy) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\ncontent-type: application/json\r\n"
            b"content-length: 100000\r\n\r\n" + json.dumps(A_STREAM).encode()[:20]
        )
    still_serving(mock)
    assert len(mock.requests) == 1  # only the ordinary request went upstream
    assert [r["status"] for r in ended(proxy)] == ["completed"]


def test_a_client_that_leaves_while_waiting_for_the_first_byte_is_cancelled(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.sse(anthropic_events(["never seen"]), first_byte_delay=3))
    body = json.dumps(A_STREAM).encode()
    with tunnel(proxy) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%b" % (len(body), body)
        )
        deadline = time.monotonic() + 10
        while not mock.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mock.requests, "the request never reached the upstream"
    time.sleep(3.5)  # the late answer goes by unread
    still_serving(mock)
    first, last = ended(proxy)
    assert first["status"] == "cancelled" and last["status"] == "completed"


# --- bodies -------------------------------------------------------------------------------------------------


def test_bodies_over_the_limit_get_a_provider_shaped_413(mock: MockUpstream, proxy: Proxy) -> None:
    from addon.gateway import MAX_REQUEST_BODY

    huge = b'{"model": "claude-x", "messages": [], "pad": "' + b"z" * MAX_REQUEST_BODY + b'"}'
    mock.enqueue(Answer.json({"input_tokens": 3}))
    with httpx.Client(timeout=60) as client:
        declared = client.post(A_URL, content=huge, headers={"content-type": "application/json"})
        chunked = client.post(O_URL, content=iter([huge[: len(huge) // 2], huge[len(huge) // 2 :]]))
        passthrough = client.post(  # other paths are the provider's business
            "https://api.anthropic.com/v1/messages/count_tokens", content=huge[:1000]
        )
    assert declared.status_code == 413 and declared.json()["type"] == "error"
    assert declared.json()["error"]["type"] == "request_too_large"
    assert "exceeds the bridge's limit" in declared.json()["error"]["message"]
    assert chunked.status_code == 413 and "exceeds the bridge's limit" in chunked.json()["error"]["message"]
    assert passthrough.status_code == 200
    assert [r.path for r in mock.requests] == ["/v1/messages/count_tokens"]
    still_serving(mock)
    assert [r["status"] for r in ended(proxy)] == ["completed"]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("br", brotli.compress), ("zstd", zstandard.ZstdCompressor().compress)],
)
def test_compressed_request_bodies_are_read_and_sent_on_decoded(
    encoding: str, compress: Callable[[bytes], bytes], mock: MockUpstream, proxy: Proxy
) -> None:
    body = json.dumps({"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": encoding}]})
    mock.enqueue(Answer.json(anthropic_message("decoded")))
    with httpx.Client() as client:
        response = client.post(
            A_URL,
            content=compress(body.encode()),
            headers={"content-type": "application/json", "content-encoding": encoding, "x-api-key": A_KEY},
        )
    assert response.status_code == 200 and response.json()["content"][0]["text"] == "decoded"
    assert mock.requests[0].body == body.encode() and mock.requests[0].header("content-encoding") is None
    proxy.stop()
    assert proxy.rows("SELECT prompt FROM user_prompts") == [{"prompt": encoding}]
