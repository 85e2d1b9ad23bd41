"""Everything the bridge does not intercept goes through byte for byte, streamed; other hosts are tunnelled."""

import ssl
import threading
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.mock_upstream import Answer, MockUpstream, sse_event
from tests.support.proxy import Proxy

RESPONSES_EVENTS = [
    sse_event(
        "response.created",
        {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress"}},
    ),
    sse_event(
        "response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hi"}
    ),
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",   "delta":" there"}\n\n',
    sse_event(
        "response.completed",
        {
            "type": "response.completed",
            "sequence_number": 3,
            "response": {"id": "resp_1", "status": "completed", "usage": {"input_tokens": 5, "output_tokens": 2}},
        },
    ),
]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "https://api.anthropic.com/v1/models"),
        ("GET", "https://api.anthropic.com/v1/models/claude-sonnet-4-5?x=1"),
        ("GET", "https://api.openai.com/v1/models"),
        ("POST", "https://api.anthropic.com/v1/messages/count_tokens"),
        ("GET", "https://api.anthropic.com/api/claude_code/settings"),
        ("GET", "https://api.anthropic.com/v1/messages"),  # only POST is bridged
        ("DELETE", "https://api.openai.com/v1/responses/resp_1"),
    ],
)
def test_passthrough_is_byte_for_byte(method: str, url: str, mock: MockUpstream, proxy: Proxy) -> None:
    body = b'{"weird":  "spacing" ,"n":1.50}'
    mock.enqueue(Answer(200, {"content-type": "application/json", "x-upstream": "yes"}, b'{"data": [ 1,2 ] }'))
    with httpx.Client() as client:
        response = client.request(
            method, url, content=body if method != "GET" else None, headers={"x-api-key": "k", "x-custom": "v"}
        )
    assert response.status_code == 200
    assert response.content == b'{"data": [ 1,2 ] }'
    assert response.headers["x-upstream"] == "yes"
    assert "x-aibridge-interception-id" not in response.headers
    seen = mock.requests[0]
    assert seen.method == method and url.endswith(seen.path)
    assert seen.header("x-custom") == "v" and seen.header("x-api-key") == "k"
    if method != "GET":
        assert seen.body == body
    proxy.stop()
    assert proxy.rows("SELECT count(*) AS n FROM interceptions") == [{"n": 0}]


@pytest.mark.parametrize("stream", [True, False])
def test_responses_api_is_passed_through_unchanged(stream: bool, mock: MockUpstream, proxy: Proxy) -> None:
    request = (
        b'{"model":"gpt-5","stream":%s,"input":[{"type":"message","role":"user","content":"hi"}],'
        b'"tools":[{"type":"namespace","name":"multi_agent_v1","tools":[]}]}' % (b"true" if stream else b"false")
    )
    gate = threading.Event()
    if stream:
        mock.enqueue(Answer.sse(RESPONSES_EVENTS, gate=gate))
    else:
        mock.enqueue(Answer(200, {"content-type": "application/json"}, b'{"id":"resp_1", "output":[] }'))
    chunks = []
    with (
        httpx.Client() as client,
        client.stream(
            "POST", "https://api.openai.com/v1/responses", content=request, headers={"authorization": "Bearer sk-x"}
        ) as response,
    ):
        for chunk in response.iter_raw():
            chunks.append(chunk)
            gate.set()
    assert mock.requests[0].body == request
    if stream:
        assert b"".join(chunks) == b"".join(RESPONSES_EVENTS)
        assert not mock.gate_timed_out, "the passthrough stream was buffered"
    else:
        assert b"".join(chunks) == b'{"id":"resp_1", "output":[] }'


def test_other_hosts_are_tunnelled_with_their_own_certificate(tmp_path: Path, proxy: Proxy) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    origin = MockUpstream(server_context).start()
    try:
        origin.enqueue(Answer.json({"origin": True}))
        ca_file = tmp_path / "origin-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        # Trusting only the origin's own CA: this succeeds only if the proxy did not intercept.
        with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(ca_file))) as client:
            response = client.get(f"{origin.url}/anything")
        assert response.json() == {"origin": True}
    finally:
        origin.stop()
