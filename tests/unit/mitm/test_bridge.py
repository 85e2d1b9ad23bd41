"""The `Bridge` addon in a mitmproxy test context (no hop server, no network): its options (`configure`), which
TLS connections it intercepts, the provider-shaped 413 for over-large bodies, and what `request` does with
passthrough, refused and non-provider flows. Bridged requests need `running()`: the e2e tests cover them."""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mitmproxy import exceptions, http, tls
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons, tflow

from addon.config import hash_token
from addon.gateway import MAX_REQUEST_BODY
from addon.mitm.bridge import META_ROUTE, Bridge
from addon.mitm.proxyauth import META_USER

ANTHROPIC = "https://api.anthropic.com"
OPENAI = "https://api.openai.com"
OWN_ANTHROPIC_KEY = "sk-ant-api03-OWNKEY-0000111122223333"
OWN_OPENAI_KEY = "sk-proj-OWNKEY-4444555566667777"
CENTRAL_KEY = "sk-ant-api03-CENTRAL-a1b2c3d4e5f6g7h8"
ALICE_TOKEN = "aib_alice-0123456789abcdef"
UPSTREAM_CONFIG = """
[providers.anthropic]
upstream = "http://127.0.0.1:9/base"
extra_headers = { "x-team" = "blue", "anthropic-beta" = "bridge-1" }
"""


@dataclass
class Harness:
    bridge: Bridge
    tctx: taddons.context
    tmp_path: Path

    def write(self, text: str, name: str = "aibridge.toml") -> str:
        path = self.tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def use(self, text: str, name: str = "aibridge.toml") -> None:
        """Configure the Bridge with this TOML (as `--set aibridge_config=...` would, at run time)."""
        self.tctx.configure(self.bridge, aibridge_config=self.write(text, name))


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    umask = os.umask(0o022)
    os.umask(umask)
    bridge = Bridge()
    try:
        with taddons.context(bridge) as tctx:
            try:
                # mitmdump's first configure names every option; here the defaults have to be named.
                tctx.configure(bridge, aibridge_db=str(tmp_path / "a.duckdb"), aibridge_config=None)
                yield Harness(bridge, tctx, tmp_path)
            finally:
                await bridge.done()
    finally:
        os.umask(umask)  # Bridge.load() makes it 0077: not for the rest of this worker


def make_flow(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> http.HTTPFlow:
    return tflow.tflow(req=http.Request.make(method, url, body, headers or {}))


def json_body(response: http.Response | None) -> Any:
    assert response is not None
    assert response.headers["content-type"] == "application/json"
    return json.loads(response.get_text() or "")


def assert_anthropic_error(response: http.Response | None, status: int, kind: str, says: str) -> None:
    assert response is not None and response.status_code == status
    body = json_body(response)
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert body["error"]["type"] == kind and says in body["error"]["message"]


def assert_openai_error(response: http.Response | None, status: int, says: str) -> None:
    assert response is not None and response.status_code == status
    body = json_body(response)
    assert set(body) == {"error"}
    assert isinstance(body["error"]["type"], str) and says in body["error"]["message"]


async def request(bridge: Bridge, flow: http.HTTPFlow) -> None:
    """The request hook, bounded: a flow wrongly taken for a bridged one would wait for `running()`."""
    await asyncio.wait_for(bridge.request(flow), 5)


# --- configure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (None, ""),  # no such file
        ("syntax.toml", "[providers.anthropic\n"),
        ("value.toml", "max_tool_rounds = 0\n"),
        ("key.toml", "max_tool_round = 3\n"),
    ],
)
async def test_a_bad_configuration_is_an_options_error(harness: Harness, name: str | None, text: str) -> None:
    path = harness.write(text, name) if name else str(harness.tmp_path / "missing.toml")
    config, gateway = harness.bridge.config, harness.bridge.gateway
    with pytest.raises(exceptions.OptionsError) as raised:
        harness.tctx.configure(harness.bridge, aibridge_config=path)
    assert str(raised.value).startswith("aibridge_config:")
    assert path in str(raised.value)
    # Rolled back: the option and the configuration in use are the earlier ones.
    assert harness.tctx.options.aibridge_config is None
    assert harness.bridge.config == config and harness.bridge.gateway is gateway
    assert harness.bridge.config.provider_for_host("api.anthropic.com") is not None


async def test_an_empty_audit_path_is_an_options_error(harness: Harness) -> None:
    writer = harness.bridge.writer
    with pytest.raises(exceptions.OptionsError) as raised:
        harness.tctx.configure(harness.bridge, aibridge_db="")
    assert str(raised.value) == "aibridge_db: a path is required"
    assert harness.tctx.options.aibridge_db == str(harness.tmp_path / "a.duckdb")
    assert harness.bridge.writer is writer and writer is not None and writer.path == harness.tctx.options.aibridge_db


async def test_a_new_configuration_is_applied_to_the_same_gateway(harness: Harness) -> None:
    bridge = harness.bridge
    gateway = bridge.gateway
    assert gateway is not None
    engine, writer = gateway.engine, gateway.writer
    assert engine.max_tool_rounds == 16 and not bridge.users.required
    harness.use(f'max_tool_rounds = 3\n[users.alice]\ntoken = "{hash_token(ALICE_TOKEN)}"\n')
    assert bridge.gateway is gateway and gateway.engine is engine and gateway.writer is writer
    assert bridge.config.max_tool_rounds == 3 and engine.max_tool_rounds == 3
    assert gateway.config is bridge.config
    assert bridge.users.required and bridge.users.check_basic(None) is None
    harness.use("max_tool_rounds = 5\n", "other.toml")
    assert bridge.gateway is gateway and engine.max_tool_rounds == 5 and not bridge.users.required


async def test_a_new_audit_path_swaps_the_writer_only(harness: Harness) -> None:
    bridge = harness.bridge
    gateway, old = bridge.gateway, bridge.writer
    path = str(harness.tmp_path / "b.duckdb")
    harness.tctx.configure(bridge, aibridge_db=path)
    assert bridge.gateway is gateway and bridge.writer is not old
    assert bridge.writer is not None and bridge.writer.path == path
    assert old is not None and old.path == str(harness.tmp_path / "a.duckdb")


# --- TLS scope ---------------------------------------------------------------------------------------------


def client_hello(sni: str | None, address: tuple[str, int] | None = None) -> tls.ClientHelloData:
    context = Context(tflow.tclient_conn(), SimpleNamespace())  # type: ignore[arg-type]
    context.server.address = address
    return tls.ClientHelloData(context, SimpleNamespace(sni=sni))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sni", "address"),
    [
        ("api.anthropic.com", None),
        ("api.openai.com", ("api.openai.com", 443)),
        ("API.Anthropic.COM.", None),
        (None, ("api.anthropic.com", 443)),  # no SNI: the address the client asked for
    ],
)
async def test_provider_hosts_are_intercepted(harness: Harness, sni: str | None, address: tuple[str, int]) -> None:
    data = client_hello(sni, address)
    harness.bridge.tls_clienthello(data)
    assert data.ignore_connection is False


@pytest.mark.parametrize(
    ("sni", "address"),
    [
        ("example.org", ("example.org", 443)),
        ("api.anthropic.com.evil.example", None),
        ("example.org", ("api.anthropic.com", 443)),  # the SNI decides
        (None, ("10.0.0.1", 443)),
        (None, None),
    ],
)
async def test_other_hosts_are_not_intercepted(harness: Harness, sni: str | None, address: tuple[str, int]) -> None:
    data = client_hello(sni, address)
    harness.bridge.tls_clienthello(data)
    assert data.ignore_connection is True


async def test_a_configured_host_is_intercepted(harness: Harness) -> None:
    before = client_hello("llm.corp.example")
    harness.bridge.tls_clienthello(before)
    assert before.ignore_connection is True
    harness.use('[providers.corp]\ntype = "openai"\nhost = "llm.corp.example"\n')
    after = client_hello("llm.corp.example")
    harness.bridge.tls_clienthello(after)
    assert after.ignore_connection is False


async def test_a_disabled_default_provider_is_not_intercepted(harness: Harness) -> None:
    harness.use("[providers.openai]\nenabled = false\n")
    data = client_hello("api.openai.com")
    harness.bridge.tls_clienthello(data)
    assert data.ignore_connection is True


@pytest.mark.parametrize("option", ["allow_hosts", "ignore_hosts"])
async def test_the_users_own_host_rules_leave_the_bridge_out(harness: Harness, option: str) -> None:
    harness.tctx.configure(harness.bridge, **{option: ["example.net"]})
    for sni in ("example.org", "api.anthropic.com"):
        data = client_hello(sni)
        harness.bridge.tls_clienthello(data)
        assert data.ignore_connection is False  # mitmproxy's own rules decide, not the Bridge


# --- 413 for over-large bodies -----------------------------------------------------------------------------


def declared(method: str, url: str, length: int | str) -> http.HTTPFlow:
    flow = make_flow(method, url, headers={"x-api-key": OWN_ANTHROPIC_KEY})
    flow.request.headers["content-length"] = str(length)
    return flow


async def test_a_declared_over_large_anthropic_request_gets_a_413(harness: Harness) -> None:
    flow = declared("POST", f"{ANTHROPIC}/v1/messages?beta=true", MAX_REQUEST_BODY + 1)
    harness.bridge.requestheaders(flow)
    assert_anthropic_error(flow.response, 413, "request_too_large", f"of {MAX_REQUEST_BODY + 1} bytes exceeds")
    assert META_ROUTE not in flow.metadata  # refused before any interception started
    answer = flow.response
    await request(harness.bridge, flow)
    assert flow.response is answer and META_ROUTE not in flow.metadata


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_a_declared_over_large_openai_request_gets_a_413(harness: Harness, path: str) -> None:
    flow = declared("POST", f"{OPENAI}{path}", MAX_REQUEST_BODY + 1)
    harness.bridge.requestheaders(flow)
    assert_openai_error(flow.response, 413, "exceeds the bridge's limit")


async def test_an_undeclared_over_large_body_gets_a_413_once_read(harness: Harness) -> None:
    """A chunked body: no content-length to refuse it by, so `request` refuses it, before bridging."""
    flow = make_flow("POST", f"{ANTHROPIC}/v1/messages", b"x" * (MAX_REQUEST_BODY + 1))
    flow.request.headers.pop("content-length")
    flow.request.headers["transfer-encoding"] = "chunked"
    harness.bridge.requestheaders(flow)
    assert flow.response is None
    await request(harness.bridge, flow)
    assert_anthropic_error(flow.response, 413, "request_too_large", "exceeds the bridge's limit")
    assert META_ROUTE not in flow.metadata


@pytest.mark.parametrize(
    ("method", "url", "length"),
    [
        ("POST", f"{ANTHROPIC}/v1/messages", MAX_REQUEST_BODY),  # at the limit
        ("GET", f"{ANTHROPIC}/v1/models", MAX_REQUEST_BODY + 1),  # passthrough: the provider decides
        ("POST", f"{ANTHROPIC}/v1/messages/count_tokens", MAX_REQUEST_BODY + 1),
        ("POST", f"{OPENAI}/v1/files", MAX_REQUEST_BODY * 4),
        ("POST", "https://example.org/v1/messages", MAX_REQUEST_BODY + 1),  # not a provider's host
        ("POST", f"{ANTHROPIC}/v1/messages", "12x"),  # malformed: mitmproxy refuses it itself
    ],
)
async def test_other_sizes_and_routes_are_not_refused(harness: Harness, method: str, url: str, length: int) -> None:
    flow = declared(method, url, length)
    harness.bridge.requestheaders(flow)
    assert flow.response is None


async def test_a_request_already_answered_is_not_sized(harness: Harness) -> None:
    flow = declared("POST", f"{ANTHROPIC}/v1/messages", MAX_REQUEST_BODY + 1)
    answer = flow.response = http.Response.make(200, b"earlier addon")
    harness.bridge.requestheaders(flow)
    assert flow.response is answer


# --- routing in `request` ----------------------------------------------------------------------------------


async def test_a_passthrough_path_goes_to_the_provider_as_it_came(harness: Harness) -> None:
    flow = make_flow("GET", f"{ANTHROPIC}/v1/models?limit=5", headers={"x-api-key": OWN_ANTHROPIC_KEY})
    await request(harness.bridge, flow)
    assert flow.response is None
    assert flow.request.pretty_url == f"{ANTHROPIC}/v1/models?limit=5"
    assert flow.request.headers["x-api-key"] == OWN_ANTHROPIC_KEY
    route = flow.metadata[META_ROUTE]
    assert route.provider.name == "anthropic" and route.api is None


async def test_a_passthrough_path_goes_to_the_configured_upstream(harness: Harness) -> None:
    harness.use(UPSTREAM_CONFIG)
    flow = make_flow(
        "GET",
        f"{ANTHROPIC}/v1/models?limit=5",
        headers={"x-api-key": OWN_ANTHROPIC_KEY, "anthropic-version": "2023-06-01", "x-team": "red"},
    )
    await request(harness.bridge, flow)
    assert flow.response is None
    req = flow.request
    assert (req.scheme, req.host, req.port, req.path) == ("http", "127.0.0.1", 9, "/base/v1/models?limit=5")
    assert req.headers.get_all("x-team") == ["blue"]  # the provider's extra headers win over the client's
    assert req.headers["anthropic-beta"] == "bridge-1"
    assert req.headers["x-api-key"] == OWN_ANTHROPIC_KEY and req.headers["anthropic-version"] == "2023-06-01"
    assert flow.metadata[META_ROUTE].provider.name == "anthropic"


async def test_an_openai_passthrough_path_keeps_its_provider(harness: Harness) -> None:
    harness.use(UPSTREAM_CONFIG)  # only anthropic's upstream is moved
    flow = make_flow("GET", f"{OPENAI}/v1/models", headers={"authorization": f"Bearer {OWN_OPENAI_KEY}"})
    await request(harness.bridge, flow)
    assert flow.response is None
    assert flow.request.pretty_url == f"{OPENAI}/v1/models" and "x-team" not in flow.request.headers
    assert flow.metadata[META_ROUTE].provider.name == "openai"


async def test_a_client_key_is_refused_on_passthrough_without_byok(harness: Harness) -> None:
    harness.use("allow_byok = false\n" + UPSTREAM_CONFIG)
    flow = make_flow("GET", f"{ANTHROPIC}/v1/models", headers={"x-api-key": OWN_ANTHROPIC_KEY})
    await request(harness.bridge, flow)
    assert_anthropic_error(flow.response, 403, "permission_error", "bring-your-own-key is not enabled")
    # It goes nowhere: neither re-targeted at the upstream nor given the provider's headers.
    assert (flow.request.host, flow.request.port, flow.request.path) == ("api.anthropic.com", 443, "/v1/models")
    assert "x-team" not in flow.request.headers
    assert OWN_ANTHROPIC_KEY not in (flow.response.get_text() or "")


async def test_a_client_key_is_refused_openai_shaped_without_byok(harness: Harness) -> None:
    harness.use("[providers.openai]\nallow_byok = false\n")
    flow = make_flow("GET", f"{OPENAI}/v1/models", headers={"authorization": f"Bearer {OWN_OPENAI_KEY}"})
    await request(harness.bridge, flow)
    assert_openai_error(flow.response, 403, "bring-your-own-key is not enabled")
    other = make_flow("GET", f"{ANTHROPIC}/v1/models", headers={"x-api-key": OWN_ANTHROPIC_KEY})
    await request(harness.bridge, other)  # only openai's BYOK is off
    assert other.response is None


async def test_an_unknown_bridge_token_is_refused_on_passthrough(harness: Harness) -> None:
    flow = make_flow("GET", f"{ANTHROPIC}/v1/models", headers={"x-api-key": "aib_nobody-0000"})
    await request(harness.bridge, flow)
    assert_anthropic_error(flow.response, 401, "authentication_error", "invalid bridge token")


CENTRAL_CONFIG = f"""
[providers.anthropic]
key = "{CENTRAL_KEY}"

[users.alice]
token = "{hash_token(ALICE_TOKEN)}"
"""


async def test_a_bridge_token_is_swapped_for_the_central_key_on_passthrough(harness: Harness) -> None:
    harness.use(CENTRAL_CONFIG)
    flow = make_flow("GET", f"{ANTHROPIC}/v1/models", headers={"x-api-key": ALICE_TOKEN})
    await request(harness.bridge, flow)
    assert flow.response is None
    assert flow.request.headers.get_all("x-api-key") == [CENTRAL_KEY]
    assert ALICE_TOKEN not in str(flow.request.headers)


async def test_the_proxy_user_gets_the_central_key_on_passthrough(harness: Harness) -> None:
    harness.use(CENTRAL_CONFIG)
    anonymous = make_flow("GET", f"{ANTHROPIC}/v1/models")
    await request(harness.bridge, anonymous)
    assert anonymous.response is None and "x-api-key" not in anonymous.request.headers
    flow = make_flow("GET", f"{ANTHROPIC}/v1/models")
    flow.metadata[META_USER] = "alice"  # what ProxyUsers set for alice's tunnel
    await request(harness.bridge, flow)
    assert flow.response is None
    assert flow.request.headers.get_all("x-api-key") == [CENTRAL_KEY]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "https://example.org/v1/models"),
        ("POST", "https://example.org/v1/messages"),  # a bridged path, on no provider's host
        ("POST", "http://api.anthropic.com.evil.example/v1/messages"),
    ],
)
async def test_a_non_provider_host_is_untouched(harness: Harness, method: str, url: str) -> None:
    harness.use("allow_byok = false\n" + UPSTREAM_CONFIG)
    flow = make_flow(method, url, b"{}", {"x-api-key": OWN_ANTHROPIC_KEY, "x-ai-bridge-actor-id": "mallory"})
    headers = flow.request.headers.copy()
    await request(harness.bridge, flow)
    assert flow.response is None
    assert flow.request.pretty_url == url and flow.request.headers == headers
    assert META_ROUTE not in flow.metadata


async def test_a_request_already_answered_is_not_routed(harness: Harness) -> None:
    harness.use(UPSTREAM_CONFIG)
    flow = make_flow("GET", f"{ANTHROPIC}/v1/models")
    answer = flow.response = http.Response.make(407, b"earlier addon")
    await request(harness.bridge, flow)
    assert flow.response is answer and flow.request.host == "api.anthropic.com"
    assert META_ROUTE not in flow.metadata


# --- responses ---------------------------------------------------------------------------------------------


async def test_passthrough_responses_are_streamed_and_others_are_not(harness: Harness) -> None:
    routed = make_flow("GET", f"{ANTHROPIC}/v1/models")
    other = make_flow("GET", "https://example.org/")
    for flow in (routed, other):
        await request(harness.bridge, flow)
        flow.response = http.Response.make(200, b"{}")
        harness.bridge.responseheaders(flow)
        harness.bridge.response(flow)
    assert routed.response is not None and routed.response.stream is True
    assert other.response is not None and other.response.stream is False
