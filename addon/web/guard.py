"""Who may see the web view, and the headers every answer carries.

The view shows prompts, so off the loopback interface it needs an access token (`needs_token` says when). With
a token, a request shows it as `Authorization: Bearer <token>`, or once as `?token=` (answered with a redirect
to the same URL without it and an HttpOnly, SameSite=Strict cookie, so the token leaves the address bar and
history), then by that cookie. The cookie holds an HMAC of the token, not the token. Comparisons take constant
time. The token is never logged or echoed.
"""

import hashlib
import hmac
import ipaddress
from http.cookies import CookieError, SimpleCookie
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE: Final = "aibridge_web"
TOKEN_ENV: Final = "AIBRIDGE_WEB_TOKEN"
HEADERS: Final = {
    # no inline scripts or styles anywhere: everything comes from /static
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",  # prompts stay out of shared caches and the disk cache
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def needs_token(host: str, token: str | None) -> str | None:
    """Why the view must not start on `host` with this token (None: it may)."""
    if token is not None and not token.strip():
        return "the access token is empty: give a real one with --token or $AIBRIDGE_WEB_TOKEN"
    if token is None and not is_loopback(host):
        return (
            f"--host {host} is reachable from other machines and the view shows prompts: give it an access token "
            f"with --token <secret> or ${TOKEN_ENV}=<secret> (visitors then open it once with ?token=<secret>), "
            "or keep the default --host 127.0.0.1"
        )
    return None


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"aibridge web cookie", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware: the token rule (when there is a token) and the security headers on every answer."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._cookie = cookie_value(token).encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present),
                ]
            await send(message)

        if self._token is None:
            await self.app(scope, receive, send_with_headers)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = [v for k, v in query if k == "token"]
        if offered:
            if not self._same(offered[-1].encode(), self._token):
                await _refuse(send_with_headers, 403, "wrong access token")
                return
            # the token in the URL once: set the cookie and drop it from the address bar
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self._cookie.decode()}; HttpOnly; SameSite=Strict; Path=/"  # type: ignore[union-attr]
            await _answer(
                send_with_headers, 303, b"", [(b"location", location.encode()), (b"set-cookie", cookie.encode())]
            )
            return
        headers = dict(scope.get("headers", []))
        bearer = headers.get(b"authorization", b"")
        if bearer:
            scheme, _, value = bearer.partition(b" ")
            if scheme.lower() != b"bearer" or not self._same(value.strip(), self._token):
                await _refuse(send_with_headers, 403, "wrong access token")
                return
            await self.app(scope, receive, send_with_headers)
            return
        jar = SimpleCookie()
        try:
            jar.load(headers.get(b"cookie", b"").decode("latin-1"))
        except CookieError:  # a malformed Cookie header counts as none
            jar = SimpleCookie()
        if COOKIE in jar:
            if not self._same(jar[COOKIE].value.encode(), self._cookie):  # type: ignore[arg-type]
                await _refuse(send_with_headers, 403, "wrong access token (an old cookie?): open the view with ?token=")
                return
            await self.app(scope, receive, send_with_headers)
            return
        await _refuse(
            send_with_headers,
            401,
            "this view needs its access token: open it once with ?token=<token>, or send Authorization: Bearer <token>",
        )

    @staticmethod
    def _same(a: bytes, b: bytes | None) -> bool:
        return b is not None and hmac.compare_digest(a, b)


async def _refuse(send: Send, status: int, why: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="aibridge web"'))
    await _answer(send, status, why.encode() + b"\n", headers)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
