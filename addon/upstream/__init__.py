"""The bridge's own HTTP client to providers, and which headers cross it.

TLS verification follows mitmproxy's options (`ssl_insecure`, `ssl_verify_upstream_trusted_ca`,
`ssl_verify_upstream_trusted_confdir`), so one setting governs bridged and passthrough connections alike.
No proxy settings are read from the environment: a proxy started from a shell exporting HTTPS_PROXY must not
send its own upstream calls back through itself.
"""

import ssl
from collections.abc import Iterable

import certifi
import httpx

from addon.config import Upstream
from addon.upstream.transport import Http1Transport

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "accept-encoding", "content-encoding"}


def make_ssl_context(*, insecure: bool, ca_file: str | None, ca_path: str | None) -> ssl.SSLContext | bool:
    if insecure:
        return False
    context = ssl.create_default_context(cafile=ca_file if (ca_file or ca_path) else certifi.where(), capath=ca_path)
    return context


READ_TIMEOUT = 600.0
"""Default seconds the provider may take to answer and between reads, as the reference allows a blocking call
(streams send events far more often)."""


def make_transport(verify: ssl.SSLContext | bool, read_timeout: float = READ_TIMEOUT) -> Http1Transport:
    """Connect in 30 s; `read_timeout` for the first byte and between reads."""
    return Http1Transport(verify, connect_timeout=30.0, read_timeout=read_timeout)


async def send(
    transport: Http1Transport,
    method: str,
    target: Upstream,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> httpx.Response:
    """One request to `target` (`path` after its prefix), its response streamed. Straight to the transport: an
    httpx client would add a cookie jar (shared by every user's requests) and redirect and auth handling the
    bridge must not do."""
    origin = (target.scheme, target.host, target.port)
    return await transport.send(method, origin, target.authority, target.path + path, headers, body)


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }


def request_headers(client_headers: list[tuple[str, str]], extra: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Client headers as they came, minus hop-by-hop and transport headers; then the provider's extras.

    `accept-encoding: identity` keeps upstream bytes readable by the audit and identical for the client.
    """
    dropped = _NOT_FORWARDED | _connection_tokens(client_headers)
    extra = [(n, v) for n, v in extra if n.lower() not in _NOT_FORWARDED]  # framing is the transport's
    overridden = {name.lower() for name, _ in extra}
    headers = [(n, v) for n, v in client_headers if n.lower() not in dropped and n.lower() not in overridden]
    headers.extend(extra)
    headers.append(("accept-encoding", "identity"))
    return headers


def response_headers(upstream: httpx.Headers, *, keep_length: bool) -> list[tuple[str, str]]:
    """Upstream response headers to relay: all but hop-by-hop (and content-length when re-framed)."""
    dropped = HOP_BY_HOP | _connection_tokens(upstream.multi_items())
    if not keep_length:
        dropped = dropped | {"content-length"}
    return [(n, v) for n, v in upstream.multi_items() if n.lower() not in dropped]
