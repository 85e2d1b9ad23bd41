"""The access rules of the web view: when a token is required to start, how a request shows it (bearer, once in
the URL then by cookie), what is refused (401 without, 403 with a wrong one), and the headers on every answer."""

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from addon.web.guard import COOKIE, HEADERS, Guard, cookie_value, is_loopback, needs_token

TOKEN = "s3cret-token-of-the-view"


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Route("/page", lambda request: PlainTextResponse(f"seen {request.url.query}"))])
    return TestClient(Guard(app, TOKEN), base_url="http://127.0.0.1:8765")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("myhost.example", False),  # a name may resolve to anything
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (needs_token(host, None) is None) is loopback
    assert needs_token(host, TOKEN) is None


def test_the_refusal_says_how_to_fix_it() -> None:
    why = needs_token("0.0.0.0", None)
    assert why is not None
    assert "--host 0.0.0.0" in why and "--token" in why and "AIBRIDGE_WEB_TOKEN" in why and "127.0.0.1" in why
    assert "empty" in (needs_token("127.0.0.1", "  ") or "")


def test_without_the_token_a_request_is_refused_401(client: TestClient) -> None:
    answer = client.get("/page")
    assert answer.status_code == 401
    assert "?token=" in answer.text and "Authorization: Bearer" in answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.headers["content-security-policy"] == HEADERS["content-security-policy"]


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"cookie": f"{COOKIE}=wrong"},
        {"cookie": f"{COOKIE}={TOKEN}"},  # the cookie holds an HMAC of the token, not the token
    ],
)
def test_a_wrong_token_is_refused_403(client: TestClient, headers: dict[str, str]) -> None:
    answer = client.get("/page", headers=headers)
    assert answer.status_code == 403
    assert TOKEN not in answer.text


def test_a_wrong_token_in_the_url_is_refused_and_sets_nothing(client: TestClient) -> None:
    answer = client.get("/page?token=nope", follow_redirects=False)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_the_bearer_token_is_accepted(client: TestClient) -> None:
    answer = client.get("/page?x=1", headers={"authorization": f"Bearer {TOKEN}"})
    assert (answer.status_code, answer.text) == (200, "seen x=1")
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_token_in_the_url_sets_a_strict_cookie_and_leaves_the_address_bar(client: TestClient) -> None:
    answer = client.get(f"/page?user=alice&token={TOKEN}&sort=cost", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/page?user=alice&sort=cost"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={cookie_value(TOKEN)};")
    assert {p.strip() for p in cookie.split(";")[1:]} == {"HttpOnly", "SameSite=Strict", "Path=/"}
    assert TOKEN not in cookie
    # the client keeps the cookie, as a browser does, and follows
    assert client.cookies[COOKIE] == cookie_value(TOKEN)
    followed = client.get(answer.headers["location"])
    assert (followed.status_code, followed.text) == (200, "seen user=alice&sort=cost")


def test_the_cookie_alone_is_accepted(client: TestClient) -> None:
    client.cookies.set(COOKIE, cookie_value(TOKEN))
    assert client.get("/page").status_code == 200


def test_a_malformed_cookie_header_counts_as_none(client: TestClient) -> None:
    assert client.get("/page", headers={"cookie": 'x="\\'}).status_code == 401


def test_without_a_token_everything_passes_with_the_headers() -> None:
    app = Starlette(routes=[Route("/page", lambda request: PlainTextResponse("ok"))])
    answer = TestClient(Guard(app, None)).get("/page")
    assert (answer.status_code, answer.text) == (200, "ok")
    for name, value in HEADERS.items():
        assert answer.headers[name] == value
