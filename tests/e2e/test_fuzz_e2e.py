"""Hostile input, fuzzed with hypothesis through one real mitmdump (HTTP/1.1 and HTTP/2 clients alike).

Whatever a client sends to a bridged route, it gets the provider's answer or a provider-shaped 4xx, never a
5xx or a dropped connection; unknown fields and tool types pass through byte for byte; and every
interception that started has ended in the audit file. Example counts are bounded to keep this fast.
"""

import json
import random
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import anthropic_message

pytestmark = pytest.mark.e2e

A_URL = "https://api.anthropic.com/v1/messages"
O_URL = "https://api.openai.com/v1/chat/completions"
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.mock = MockUpstream().start()
        self.mock.default = Answer.json(anthropic_message("fuzzed"))
        self.proxy = Proxy(tmp, provider_config(self.mock.url)).start()
        verify = ssl.create_default_context(cafile=self.proxy.env["SSL_CERT_FILE"])
        self.clients = [
            httpx.Client(proxy=self.proxy.url, verify=verify, timeout=60),
            httpx.Client(proxy=self.proxy.url, verify=verify, timeout=60, http2=True),
        ]
        self.bridged = 0

    def post(self, url: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        client = random.choice(self.clients)
        response = client.post(url, content=content, headers={"content-type": "application/json", **(headers or {})})
        self.bridged += 1
        assert response.status_code < 500, (response.status_code, response.text[:500])
        if response.status_code != 200:
            assert response.status_code == 400, response.text[:500]
            error = response.json()
            if url == A_URL:
                assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
            else:
                assert error["error"]["type"] == "invalid_request_error"
        return response

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.proxy.stop()
        self.mock.stop()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    bench = Bench(tmp_path_factory.mktemp("fuzz"))
    yield bench
    bench.close()
    rows = bench.proxy.rows("SELECT status, ended_at FROM interceptions")
    assert len(rows) == bench.bridged  # every request that reached a bridged route was recorded ...
    assert all(row["ended_at"] is not None for row in rows)  # ... and ended


@FUZZ
@given(body=json_values, url=st.sampled_from([A_URL, O_URL]))
def test_any_json_value_gets_an_answer_or_a_provider_shaped_400(bench: Bench, body: Any, url: str) -> None:
    bench.post(url, json.dumps(body).encode())


@FUZZ
@given(raw=st.binary(max_size=200), url=st.sampled_from([A_URL, O_URL]))
def test_arbitrary_bytes(bench: Bench, raw: bytes, url: str) -> None:
    bench.post(url, raw)


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "model": json_values,
            "messages": json_values,
            "max_tokens": json_values,
            "stream": json_values,
            "tools": json_values,
            "metadata": json_values,
            "system": json_values,
            "stream_options": json_values,
            "n": json_values,
        },
    ),
    url=st.sampled_from([A_URL, O_URL]),
)
def test_known_fields_of_the_wrong_type(bench: Bench, fields: dict[str, Any], url: str) -> None:
    bench.post(url, json.dumps(fields).encode())


@FUZZ
@given(depth=st.integers(min_value=1, max_value=200_000), where=st.sampled_from(["top", "messages", "tools"]))
def test_deeply_nested_json(bench: Bench, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    body = {
        "top": nested,
        "messages": f'{{"model": "m", "max_tokens": 8, "messages": {nested}}}',
        "tools": f'{{"model": "m", "max_tokens": 8, "messages": [], "tools": [{{"x": {nested}}}]}}',
    }[where]
    bench.post(A_URL, body.encode())


@FUZZ
@given(
    extra=st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in ("stream", "n")), json_values),
    tool_type=st.text(min_size=1, max_size=20),
    tool_extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    casing=st.lists(st.booleans(), min_size=32, max_size=32),
)
def test_unknown_fields_and_tool_types_pass_through_unchanged(
    bench: Bench, extra: dict[str, Any], tool_type: str, tool_extra: dict[str, Any], casing: list[bool]
) -> None:
    def oddly(name: str) -> str:  # the header name in a random casing
        return "".join(c.upper() if up else c.lower() for c, up in zip(name, casing, strict=False))

    body = {
        **extra,
        "model": "claude-x",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{**tool_extra, "type": tool_type, "name": "t"}],
    }
    raw = json.dumps(body).encode()
    before = len(bench.mock.requests)
    response = bench.post(A_URL, raw, {oddly("x-api-key"): "sk-ant-fuzz", oddly("anthropic-version"): "2023-06-01"})
    assert response.status_code == 200 and response.json()["content"][0]["text"] == "fuzzed"
    seen = bench.mock.requests[before]
    assert seen.body == raw
    assert seen.header("x-api-key") == "sk-ant-fuzz" and seen.header("anthropic-version") == "2023-06-01"
