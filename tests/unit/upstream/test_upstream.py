"""Which headers cross the bridge's own upstream calls, TLS settings, and `send` reaching the transport
(addon/upstream/__init__.py)."""

import ssl

import httpx

from addon import upstream
from addon.config import Upstream
from addon.upstream import HOP_BY_HOP, make_ssl_context, make_transport, request_headers, response_headers
from addon.upstream.transport import Http1Transport


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [n.lower() for n, _ in headers]


# --- request_headers ----------------------------------------------------------------------------------------


def test_request_headers_drop_hop_by_hop_and_transport_headers() -> None:
    client = [
        ("Host", "api.anthropic.com"),
        ("Content-Length", "12"),
        ("Accept-Encoding", "gzip, br"),
        ("Content-Encoding", "gzip"),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "x"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("x-api-key", "sk-ant-key"),
        ("Content-Type", "application/json"),
    ]
    assert request_headers(client, []) == [
        ("x-api-key", "sk-ant-key"),
        ("Content-Type", "application/json"),
        ("accept-encoding", "identity"),
    ]


def test_every_hop_by_hop_header_is_dropped() -> None:
    client = [(name.title(), "v") for name in sorted(HOP_BY_HOP)] + [("X-Kept", "1")]
    assert request_headers(client, []) == [("X-Kept", "1"), ("accept-encoding", "identity")]


def test_headers_named_in_connection_are_dropped() -> None:
    client = [
        ("Connection", "close, X-Secret-Hop ,x-other"),
        ("X-Secret-Hop", "1"),
        ("x-OTHER", "2"),
        ("X-Kept", "3"),
    ]
    assert request_headers(client, []) == [("X-Kept", "3"), ("accept-encoding", "identity")]


def test_extra_headers_override_client_headers_case_insensitively() -> None:
    client = [("Anthropic-Beta", "client"), ("User-Agent", "ua"), ("anthropic-beta", "client-2")]
    extra = [("anthropic-beta", "provider"), ("X-Org", "acme")]
    assert request_headers(client, iter(extra)) == [
        ("User-Agent", "ua"),
        ("anthropic-beta", "provider"),
        ("X-Org", "acme"),
        ("accept-encoding", "identity"),
    ]


def test_identity_encoding_is_always_asked_exactly_once() -> None:
    for client in ([], [("accept-encoding", "gzip")], [("Accept-Encoding", "br"), ("accept-encoding", "zstd")]):
        headers = request_headers(client, [])
        assert [(n, v) for n, v in headers if n.lower() == "accept-encoding"] == [("accept-encoding", "identity")]


def test_client_header_order_and_repeats_are_kept() -> None:
    client = [("B", "1"), ("a", "2"), ("B", "3")]
    assert request_headers(client, [])[:3] == client


# --- response_headers ---------------------------------------------------------------------------------------


UPSTREAM = httpx.Headers(
    [
        ("content-type", "text/event-stream"),
        ("content-length", "42"),
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("request-id", "req_1"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("content-encoding", "gzip"),
    ]
)


def test_response_headers_drop_hop_by_hop_and_keep_the_rest() -> None:
    assert response_headers(UPSTREAM, keep_length=True) == [
        ("content-type", "text/event-stream"),
        ("content-length", "42"),
        ("request-id", "req_1"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("content-encoding", "gzip"),
    ]


def test_response_headers_drop_the_length_of_a_reframed_body() -> None:
    headers = response_headers(UPSTREAM, keep_length=False)
    assert "content-length" not in names(headers)
    assert names(headers) == ["content-type", "request-id", "set-cookie", "set-cookie", "content-encoding"]


# --- TLS and the transport ----------------------------------------------------------------------------------


def test_an_insecure_context_verifies_nothing() -> None:
    assert make_ssl_context(insecure=True, ca_file=None, ca_path=None) is False
    assert make_ssl_context(insecure=True, ca_file="/nonexistent.pem", ca_path=None) is False


def test_a_secure_context_verifies_hosts() -> None:
    context = make_ssl_context(insecure=False, ca_file=None, ca_path=None)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_make_transport_is_the_lean_transport() -> None:
    assert isinstance(make_transport(False, read_timeout=5.0), Http1Transport)


class Recording(Http1Transport):
    """A transport that records what `send` is asked, and answers 204."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[str, str, int], str, str, list[tuple[str, str]], bytes]] = []

    async def send(
        self,
        method: str,
        origin: tuple[str, str, int],
        authority: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> httpx.Response:
        self.calls.append((method, origin, authority, target, headers, body))
        return httpx.Response(204)


async def test_send_reaches_the_transport_with_origin_authority_and_prefix() -> None:
    transport = Recording()
    target = Upstream(scheme="http", host="127.0.0.1", port=9000, path="/base")
    headers = [("x-api-key", "k")]
    response = await upstream.send(transport, "POST", target, "/v1/messages?beta=true", headers, b"{}")
    assert response.status_code == 204
    assert transport.calls == [
        ("POST", ("http", "127.0.0.1", 9000), "127.0.0.1:9000", "/base/v1/messages?beta=true", headers, b"{}")
    ]


async def test_send_to_a_default_port_names_only_the_host() -> None:
    transport = Recording()
    target = Upstream(scheme="https", host="api.openai.com", port=443, path="")
    await upstream.send(transport, "GET", target, "/v1/models", [], b"")
    assert transport.calls == [("GET", ("https", "api.openai.com", 443), "api.openai.com", "/v1/models", [], b"")]


def test_extra_headers_cannot_add_framing_or_encoding_headers() -> None:
    """A provider's `extra_headers` naming Host, a length or an encoding would make the framing ambiguous."""
    extra = [("Accept-Encoding", "gzip"), ("Host", "evil"), ("Content-Length", "0"), ("Transfer-Encoding", "chunked")]
    assert request_headers([("x-api-key", "k")], extra) == [("x-api-key", "k"), ("accept-encoding", "identity")]
