"""How an interception ends at the edges of an answer: a blocking answer cut off right after its headers, and a
client that leaves as soon as it has the final event, before the provider's last bytes.

The first must not leave the client waiting for a body that will never come; the second is a finished answer,
not a cancelled one. Real mitmdump, the official SDKs or httpx through `HTTPS_PROXY`, the mock provider.
"""

import json
import time
from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, live_interceptions, provider_config
from tests.support.scenarios import anthropic_events, chat_chunks, responses_events

A_URL = "https://api.anthropic.com/v1/messages"
R_URL = "https://api.openai.com/v1/responses"
A_KEY, O_KEY = "sk-ant-api03-endings-0123456789", "sk-proj-endings-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]
HEAD_ONLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 303\r\nrequest-id: req_cut\r\n\r\n"
"""A blocking answer's head, promising 303 bytes the provider never sends."""
CLIENT_TIMEOUT = 30.0
"""Far longer than any of these answers should take: a client that waits this long was left hanging."""


def ended(db: Callable[[], list[dict]], count: int, within: float = 10.0) -> list[dict]:
    """The interceptions once `count` of them have ended (the audit writer commits once a second)."""
    deadline = time.monotonic() + within
    while True:
        rows = db()
        if sum(1 for r in rows if r["status"]) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def live(proxy: Proxy) -> Callable[[], list[dict]]:
    return lambda: json.loads(live_interceptions(proxy.db_path, 1))["interceptions"][::-1]


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_a_blocking_answer_cut_off_after_its_headers_gets_a_provider_shaped_error(
    api: str, mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(provider_config(mock.url), args=("--set", "aibridge_read_timeout=1"))
    mock.enqueue(
        Answer(raw_response=HEAD_ONLY),  # a clean close before the body
        Answer(raw_response=HEAD_ONLY, raw_hold=0.2, raw_reset=True),  # a reset
        Answer(raw_response=HEAD_ONLY, raw_hold=5),  # a stall past the read timeout
    )
    errors = []
    for _ in range(3):
        if api == "anthropic":
            client = anthropic.Anthropic(api_key=A_KEY, max_retries=0, timeout=CLIENT_TIMEOUT)
            with pytest.raises(anthropic.APIStatusError) as err:
                client.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
            body = err.value.body["error"]  # type: ignore[index]
        else:
            o_client = openai.OpenAI(api_key=O_KEY, max_retries=0, timeout=CLIENT_TIMEOUT)
            with pytest.raises(openai.APIStatusError) as err:  # type: ignore[assignment]
                o_client.chat.completions.create(model="gpt-x", messages=MESSAGES)
            body = err.value.body  # the SDK hands over the `error` object
        assert "upstream" in body["message"], body  # type: ignore[index]
        errors.append((err.value.status_code, body["type"]))  # type: ignore[index]
    kind = "api_error" if api == "anthropic" else "server_error"
    assert errors == [(502, kind), (502, kind), (504, kind)]

    proxy.stop()
    rows = proxy.rows("SELECT status, http_status, error FROM interceptions ORDER BY started_at")
    assert [(r["status"], r["http_status"]) for r in rows] == [("failed", 502), ("failed", 502), ("failed", 504)]
    assert all(r["error"].startswith("upstream failed mid-response") for r in rows[:2]), rows
    assert "timed out" in rows[2]["error"]


def test_a_tapped_blocking_answer_cut_off_after_its_headers_ends_the_client_connection(
    mock: MockUpstream, proxy: Proxy
) -> None:
    mock.enqueue(Answer(raw_response=HEAD_ONLY), Answer(raw_response=HEAD_ONLY, raw_hold=0.2, raw_reset=True))
    client = openai.OpenAI(api_key=O_KEY, max_retries=0, timeout=CLIENT_TIMEOUT)
    for _ in range(2):
        with pytest.raises(openai.APIConnectionError) as err:
            client.responses.create(model="gpt-5", input="hi")
        assert not isinstance(err.value, openai.APITimeoutError)  # ended at once, not waited out
    proxy.stop()
    rows = proxy.rows("SELECT status FROM interceptions ORDER BY started_at")
    assert [r["status"] for r in rows] == ["failed", "failed"]


def _read_until(response: httpx.Response, final: str) -> str:
    """Read an event stream up to and including the line that holds `final`, then stop (and close)."""
    seen = []
    for line in response.iter_lines():
        seen.append(line)
        if final in line:
            return "\n".join(seen)
    raise AssertionError(f"the stream ended without {final!r}: {seen}")


def test_a_client_that_leaves_right_after_the_final_event_is_recorded_completed(
    mock: MockUpstream, proxy: Proxy
) -> None:
    """The provider is slow with its last bytes (the chunked terminator) and every client has closed by then:
    the OpenAI SDK after `[DONE]`, raw clients after `message_stop` and `response.completed`."""
    tools = [("call_1", "read_file", '{"path": "a"}'), ("call_2", "list_dir", '{"path": "."}')]
    mock.enqueue(
        Answer.sse(chat_chunks([], tools=tools), linger=60),
        Answer.sse(anthropic_events(["done"]), linger=60),
        Answer.sse(responses_events("done"), linger=60),
    )
    client = openai.OpenAI(api_key=O_KEY, max_retries=0, timeout=CLIENT_TIMEOUT)
    chunks = list(client.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    with httpx.Client(timeout=CLIENT_TIMEOUT) as raw:
        body = {"model": "claude-x", "max_tokens": 8, "stream": True, "messages": MESSAGES}
        with raw.stream("POST", A_URL, json=body, headers={"x-api-key": A_KEY}) as response:
            assert "message_stop" in _read_until(response, '"type": "message_stop"')
        body = {"model": "gpt-5", "input": "hi", "stream": True}
        headers = {"authorization": f"Bearer {O_KEY}"}
        with raw.stream("POST", R_URL, json=body, headers=headers) as response:
            assert "response.completed" in _read_until(response, '"type": "response.completed"')

    # Asked while the provider still holds every stream open: the ends are the clients' leaving.
    rows = ended(live(proxy), 3)
    assert mock.holding == 3  # every stream's last bytes still unsent: the ends came from the clients leaving
    assert [(r["provider_name"], r["status"]) for r in rows] == [
        ("openai", "completed"),
        ("anthropic", "completed"),
        ("openai", "completed"),
    ], rows
    assert all(r["error"] is None for r in rows), rows
    assert [r["output_tokens"] for r in rows] == [9, 42, 9]
    proxy.stop()
    calls = proxy.rows("SELECT tool FROM tool_usages ORDER BY tool")
    assert [c["tool"] for c in calls] == ["list_dir", "read_file"]
