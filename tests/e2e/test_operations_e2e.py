"""Operating a real mitmdump: the metrics endpoint scraped after traffic, API dumps, JSON logs and the circuit
breaker, with the official SDK as the client and the scripted provider behind."""

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import anthropic_error, anthropic_events, responses_events

KEY = "sk-ant-api03-test-0123456789abcdef"
OPENAI_KEY = "sk-proj-responses-0123456789"
MESSAGES = [{"role": "user", "content": "What is 2+2?"}]
BREAKER = "[circuit_breaker]\nfailure_threshold = 2\ntimeout = 600\n"


def metrics_url(proxy: Proxy) -> str:
    for line in proxy.output:
        if match := re.search(r"Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)", line):
            return match.group(1)
    raise AssertionError("no metrics address logged:\n" + "\n".join(proxy.output))


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with httpx.Client(trust_env=False) as http:  # straight to the endpoint, not through the proxy
        response = http.get(url)
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_dumps_logs_and_breaker_through_a_real_proxy(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    dumps = tmp_path / "dumps"
    proxy = start_proxy(
        provider_config(mock.url, breaker=BREAKER),
        args=(
            "--set",
            "aibridge_metrics=0",
            "--set",
            f"aibridge_dump_dir={dumps}",
            "--set",
            "aibridge_json_logs=true",
        ),
    )
    url = metrics_url(proxy)
    client = anthropic.Anthropic(api_key=KEY, max_retries=0)

    mock.enqueue(Answer.sse(anthropic_events(["Fo", "ur."], start_usage={"input_tokens": 12, "output_tokens": 1})))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "Four."
    mock.enqueue(Answer(200, {"content-type": "application/json"}, b'{"data": []}'))
    responses = responses_events("Hi from the tap.")
    mock.enqueue(Answer.sse(responses))
    with httpx.Client() as http:  # through the proxy (HTTPS_PROXY from its printed lines)
        assert http.get("https://api.anthropic.com/v1/models", headers={"x-api-key": KEY}).status_code == 200
        tapped = http.post(  # Responses: passed through unchanged, recorded by the tap, dumped by us
            "https://api.openai.com/v1/responses",
            content=b'{"model":"gpt-5","stream":true,"input":"say hi"}',
            headers={"authorization": f"Bearer {OPENAI_KEY}", "content-type": "application/json"},
        )
        assert tapped.content == b"".join(responses)

    # two overloaded answers in a row open the breaker; the third request never reaches the provider
    mock.enqueue(*[anthropic_error(529, "overloaded_error", "Overloaded")] * 2)
    for _ in range(2):
        with pytest.raises(anthropic.APIStatusError) as e:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
        assert e.value.status_code == 529
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    assert e.value.status_code == 503 and int(e.value.response.headers["retry-after"]) > 500
    assert e.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "circuit breaker is open"},
    }
    assert len(mock.requests) == 5

    m = scrape(url)
    model = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    row = {**model, "client": "Unknown", "route": "/v1/messages"}

    def at(name: str, **labels: str) -> float | None:
        return m.get((name, frozenset(labels.items())))

    assert at("aibridge_interceptions_total", **row, status="completed") == 1
    assert at("aibridge_interceptions_total", **row, status="failed") == 2
    assert at("aibridge_interceptions_total", **row, status="refused") == 1
    assert at("aibridge_interceptions_inflight", **model, route="/v1/messages") == 0
    assert at("aibridge_time_to_first_token_seconds_count", **model) == 1
    assert at("aibridge_interception_duration_seconds_count", **model) == 4
    assert at("aibridge_tokens_total", **model, type="input") == 12
    assert at("aibridge_upstream_calls_total", **model, status="529") == 2
    tap_row = {"provider": "openai", "model": "gpt-5", "client": "Unknown", "route": "/v1/responses"}
    assert at("aibridge_interceptions_total", **tap_row, status="completed") == 1
    assert at("aibridge_tokens_total", provider="openai", model="gpt-5", type="output") == 9
    route = {"provider": "anthropic", "route": "/v1/models", "method": "GET"}
    assert at("aibridge_passthrough_total", **route, status="200") == 1
    assert at("aibridge_circuit_breaker_state", **model) == 1
    assert at("aibridge_circuit_breaker_trips_total", **model) == 1
    assert at("aibridge_circuit_breaker_rejects_total", **model) == 1
    assert at("aibridge_audit_queue_depth") is not None and at("aibridge_audit_write_errors_total") == 0
    assert (at("process_resident_memory_bytes") or 0) > 0
    assert not any(KEY in name or any(KEY in v for _, v in labels) for name, labels in m)

    proxy.stop()
    # dumps: one pair per upstream call, the key masked everywhere
    bridged = sorted((dumps / "anthropic" / "claude-sonnet-4-5").iterdir())
    assert len([p for p in bridged if p.name.endswith(".req.txt")]) == 3
    assert len([p for p in bridged if p.name.endswith(".resp.txt")]) == 3
    passthrough = sorted((dumps / "anthropic" / "passthrough").iterdir())
    assert [p.name.rsplit(".", 2)[1:] for p in passthrough] == [["req", "txt"], ["resp", "txt"]]
    tap_dumps = sorted((dumps / "openai" / "passthrough").iterdir())
    assert [p.name.rsplit(".", 2)[1:] for p in tap_dumps] == [["req", "txt"], ["resp", "txt"]]
    assert tap_dumps[1].read_bytes().split(b"\r\n\r\n", 1)[1] == b"".join(responses)
    everything = b"".join(p.read_bytes() for p in (*bridged, *passthrough, *tap_dumps))
    assert KEY.encode() not in everything and b"sk-a...cdef" in everything
    assert OPENAI_KEY.encode() not in everything and b"sk-p...6789" in everything
    streamed = next(p for p in bridged if p.name.endswith(".resp.txt") and b"text/event-stream" in p.read_bytes())
    assert streamed.read_bytes().split(b"\r\n\r\n", 1)[1] == b"".join(
        anthropic_events(["Fo", "ur."], start_usage={"input_tokens": 12, "output_tokens": 1})
    )
    # JSON logs: a start and an end line per interception
    lines = [json.loads(line[line.index("{") :]) for line in proxy.output if '"interception log"' in line]
    kinds = [line["record_type"] for line in lines]
    assert kinds.count("interception_start") == kinds.count("interception_end") == 5
    assert KEY not in "\n".join(proxy.output)
    # the audit: the refusal is recorded like any interception
    rows = proxy.rows(
        "SELECT status, http_status, error FROM interceptions WHERE provider = 'anthropic' ORDER BY started_at"
    )
    assert [(r["status"], r["http_status"]) for r in rows] == [
        ("completed", 200),
        ("failed", 529),
        ("failed", 529),
        ("refused", 503),
    ]
    assert rows[-1]["error"] == "circuit breaker is open"


def test_a_metrics_address_in_use_stops_start_up(start_proxy: Callable[..., Proxy], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proxy = Proxy(tmp_path, None, ("--set", f"aibridge_metrics=127.0.0.1:{port}")).spawn()
        try:
            assert proxy.wait_exit() != 0
        finally:
            proxy.stop()
    assert any(f"aibridge_metrics: cannot listen on 127.0.0.1:{port}" in line for line in proxy.output)


def test_traces_are_exported_over_otlp_as_the_otel_variables_say(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(
        provider_config(mock.url),
        args=("--set", "aibridge_tracing=true"),
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": mock.url, "OTEL_SERVICE_NAME": "bridge-under-test"},
    )
    mock.enqueue(Answer.sse(anthropic_events(["Four."])))
    mock.enqueue(Answer(200, {"content-type": "application/json"}, b'{"data": []}'))
    mock.enqueue(Answer(200, {"content-type": "application/x-protobuf"}, b""))  # the collector's answer
    client = anthropic.Anthropic(api_key=KEY, max_retries=0)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "Four."
    with httpx.Client() as http:
        assert http.get("https://api.anthropic.com/v1/models", headers={"x-api-key": KEY}).status_code == 200
    assert proxy.stop() == 0  # shutting down flushes the spans

    (export,) = [r for r in mock.requests if r.path == "/v1/traces"]
    assert export.header("content-type") == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(export.body)
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "bridge-under-test"
    spans = [span for scope in resource_spans.scope_spans for span in scope.spans]
    by_name = {span.name: span for span in spans}
    assert sorted(by_name) == ["aibridge.interception", "aibridge.passthrough", "chat claude-sonnet-4-5"]
    root, call = by_name["aibridge.interception"], by_name["chat claude-sonnet-4-5"]
    assert call.parent_span_id == root.span_id and call.trace_id == root.trace_id
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["gen_ai.request.model"].string_value == "claude-sonnet-4-5"
    assert attrs["aibridge.status"].string_value == "completed"
    passthrough = {a.key: a.value for a in by_name["aibridge.passthrough"].attributes}
    assert passthrough["url.path"].string_value == "/v1/models"
    assert passthrough["http.response.status_code"].int_value == 200
    assert by_name["aibridge.passthrough"].trace_id != root.trace_id  # a request of its own
    assert b"What is 2+2?" not in export.body and KEY.encode() not in export.body


def _grows_to(folder: Path, pattern: str, wanted: bytes, within: float = 10.0) -> bytes:
    """A dump file's content once it holds `wanted` (written by the dump thread as the stream goes)."""
    deadline = time.monotonic() + within
    content = b""
    while time.monotonic() < deadline:
        files = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if files and wanted in (content := files[-1].read_bytes()):
            return content
        time.sleep(0.05)
    raise AssertionError(f"{pattern} never held {wanted!r}; it had {content!r}")


def test_stream_dumps_can_be_read_while_the_stream_is_open(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Whoever debugs a hung stream needs what arrived so far: the file holds each event as it is relayed."""
    dumps = tmp_path / "dumps"
    start_proxy(provider_config(mock.url), args=("--set", f"aibridge_dump_dir={dumps}"))
    gates = threading.Event(), threading.Event()
    mock.enqueue(
        Answer.sse(anthropic_events(["So far, ", "so good."]), gate=gates[0]),
        Answer.sse(responses_events("So far so good."), gate=gates[1]),
    )
    with httpx.Client(timeout=30) as http:
        body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "stream": True, "messages": MESSAGES}
        with http.stream("POST", "https://api.anthropic.com/v1/messages", json=body, headers={"x-api-key": KEY}) as r:
            lines = r.iter_lines()
            while "so good." not in next(lines):  # the last event waits for the gate: the stream is open
                pass
            so_far = _grows_to(dumps / "anthropic" / "claude-sonnet-4-5", "*.resp.txt", b"so good.")
            assert so_far.startswith(b"HTTP/1.1 200 OK\r\n") and b"message_stop" not in so_far
            gates[0].set()
        body = {"model": "gpt-5", "input": "hi", "stream": True}
        headers = {"authorization": f"Bearer {OPENAI_KEY}"}
        with http.stream("POST", "https://api.openai.com/v1/responses", json=body, headers=headers) as r:
            lines = r.iter_lines()
            while "response.output_item.done" not in next(lines):
                pass
            so_far = _grows_to(dumps / "openai" / "passthrough", "*.resp.txt", b"response.output_item.done")
            assert b"response.completed" not in so_far
            gates[1].set()
            assert any("response.completed" in line for line in lines)
    assert not mock.gate_timed_out
