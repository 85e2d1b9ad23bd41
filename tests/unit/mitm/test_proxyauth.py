"""`ProxyUsers`, the proxy authentication addon: open without users; with users, a 407 for CONNECTs and plain
requests without valid Basic credentials, tunnels remembered per client connection, and `proxy-authorization`
never passed on."""

import base64

import pytest
from mitmproxy import connection, http
from mitmproxy.test import tflow

from addon.config import User, hash_token
from addon.mitm.proxyauth import META_USER, ProxyUsers
from addon.policy.access import Users

ALICE_TOKEN = "aib_alice-0123456789abcdef"
BOB_TOKEN = "aib_bob-fedcba9876543210"
USERS = Users(
    (
        User(name="alice", token_hash=hash_token(ALICE_TOKEN)),
        User(name="bob", token_hash=hash_token(BOB_TOKEN), groups=("eng",)),
    )
)
REALM = 'Basic realm="aibridge"'


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def connect_flow(proxy_authorization: str | None = None) -> http.HTTPFlow:
    """A `CONNECT api.anthropic.com:443` on a fresh client connection."""
    request = http.Request.make("CONNECT", "http://api.anthropic.com:443", b"", {})
    request.authority, request.scheme, request.path = "api.anthropic.com:443", "", ""
    if proxy_authorization is not None:
        request.headers["Proxy-Authorization"] = proxy_authorization
    return tflow.tflow(req=request)


def inner_flow(
    client: connection.Client | None = None, proxy_authorization: str | None = None, url: str = ""
) -> http.HTTPFlow:
    """A request, inside the tunnel of `client` (or a plain-HTTP proxy request on a fresh connection)."""
    request = http.Request.make("GET", url or "https://api.anthropic.com/v1/models", b"", {"x-api-key": "sk-own"})
    if proxy_authorization is not None:
        request.headers["Proxy-Authorization"] = proxy_authorization
    return tflow.tflow(client_conn=client, req=request)


def assert_407(flow: http.HTTPFlow) -> None:
    assert flow.response is not None
    assert flow.response.status_code == 407
    assert flow.response.headers["Proxy-Authenticate"] == REALM
    assert META_USER not in flow.metadata


def test_without_users_nothing_happens() -> None:
    auth = ProxyUsers(lambda: Users(()))
    connect = connect_flow()
    auth.http_connect(connect)
    assert connect.response is None
    request = inner_flow(connect.client_conn)
    auth.requestheaders(request)
    plain = inner_flow(url="http://api.anthropic.com/v1/models")
    auth.requestheaders(plain)
    for flow in (request, plain):
        assert flow.response is None
        assert META_USER not in flow.metadata


@pytest.mark.parametrize(
    "credentials",
    [
        None,
        basic("alice", "aib_wrong"),
        basic("alice", BOB_TOKEN),  # another user's token
        basic("mallory", ALICE_TOKEN),  # an unknown user
        basic("alice", ""),
        f"Bearer {ALICE_TOKEN}",
        "Basic not-base64!",
        "Basic " + base64.b64encode(ALICE_TOKEN.encode()).decode(),  # no user name
    ],
    ids=["none", "wrong-token", "others-token", "unknown-user", "empty-token", "bearer", "not-base64", "no-name"],
)
def test_a_connect_without_valid_credentials_gets_a_407(credentials: str | None) -> None:
    auth = ProxyUsers(lambda: USERS)
    connect = connect_flow(credentials)
    auth.http_connect(connect)
    assert_407(connect)
    # Nor is the refused tunnel remembered: a request on that connection is refused too.
    request = inner_flow(connect.client_conn)
    auth.requestheaders(request)
    assert_407(request)


def test_a_tunnel_opened_with_valid_credentials_is_its_users() -> None:
    auth = ProxyUsers(lambda: USERS)
    connect = connect_flow(basic("bob", BOB_TOKEN))
    auth.http_connect(connect)
    assert connect.response is None
    for _ in range(2):  # every later request on that client connection, not just the first
        request = inner_flow(connect.client_conn)
        auth.requestheaders(request)
        assert request.response is None
        assert request.metadata[META_USER] == "bob"
    stranger = inner_flow(tflow.tclient_conn())  # another client connection has no tunnel of bob's
    auth.requestheaders(stranger)
    assert_407(stranger)


def test_tunnels_are_remembered_per_client_connection() -> None:
    auth = ProxyUsers(lambda: USERS)
    alice, bob = connect_flow(basic("alice", ALICE_TOKEN)), connect_flow(basic("bob", BOB_TOKEN))
    auth.http_connect(alice)
    auth.http_connect(bob)
    for connect, user in ((bob, "bob"), (alice, "alice")):
        request = inner_flow(connect.client_conn)
        auth.requestheaders(request)
        assert request.metadata[META_USER] == user


def test_a_plain_http_proxy_request_with_its_own_credentials_passes() -> None:
    auth = ProxyUsers(lambda: USERS)
    request = inner_flow(proxy_authorization=basic("alice", ALICE_TOKEN), url="http://api.anthropic.com/v1/models")
    auth.requestheaders(request)
    assert request.response is None
    assert request.metadata[META_USER] == "alice"
    assert "proxy-authorization" not in request.request.headers
    assert request.request.headers["x-api-key"] == "sk-own"  # the rest is left as it came


def test_a_plain_http_proxy_request_without_valid_credentials_gets_a_407() -> None:
    auth = ProxyUsers(lambda: USERS)
    for credentials in (None, basic("alice", BOB_TOKEN)):
        request = inner_flow(proxy_authorization=credentials, url="http://api.anthropic.com/v1/models")
        auth.requestheaders(request)
        assert_407(request)
        assert "proxy-authorization" not in request.request.headers


def test_the_proxy_authorization_header_never_goes_on() -> None:
    auth = ProxyUsers(lambda: USERS)
    connect = connect_flow(basic("alice", ALICE_TOKEN))
    auth.http_connect(connect)
    # A request inside the tunnel that carries the header anyway (even another user's): the tunnel decides.
    request = inner_flow(connect.client_conn, proxy_authorization=basic("bob", BOB_TOKEN))
    auth.requestheaders(request)
    assert request.metadata[META_USER] == "alice"
    assert "proxy-authorization" not in request.request.headers


def test_users_are_read_as_they_are_now() -> None:
    current = [Users(())]
    auth = ProxyUsers(lambda: current[0])
    before = inner_flow(url="http://api.anthropic.com/v1/models")
    auth.requestheaders(before)
    assert before.response is None
    current[0] = USERS  # the configuration was reloaded with users
    after = inner_flow(url="http://api.anthropic.com/v1/models")
    auth.requestheaders(after)
    assert_407(after)


def test_a_request_already_answered_is_left_alone() -> None:
    auth = ProxyUsers(lambda: USERS)
    request = inner_flow(url="http://api.anthropic.com/v1/models")
    answer = http.Response.make(200, b"from an earlier addon")
    request.response = answer
    auth.requestheaders(request)
    assert request.response is answer
    assert request.response.status_code == 200
    assert META_USER not in request.metadata


def test_a_tunnel_of_a_removed_user_is_closed() -> None:
    current = [USERS]
    auth = ProxyUsers(lambda: current[0])
    connect = connect_flow(basic("bob", BOB_TOKEN))
    auth.http_connect(connect)
    current[0] = Users((User(name="alice", token_hash=hash_token(ALICE_TOKEN)),))  # bob revoked, alice remains
    request = inner_flow(connect.client_conn)
    auth.requestheaders(request)
    assert_407(request)
