"""Proxy authentication for the configured users: when there are any, the proxy is closed to everyone else.
(The class is `ProxyUsers`: mitmproxy's own addon is called `proxyauth`.)

A tunnel (`CONNECT`) opens only with valid `Proxy-Authorization: Basic <user>:<token>` and stays its user's; a
plain-HTTP proxy request carries its own credentials. Anything else gets a 407. The header never goes upstream.
Runs before the Bridge (see `addons()`), which reads the user from the flow's metadata.
"""

import weakref
from collections.abc import Callable, MutableMapping

from mitmproxy import connection, http

from addon.policy.access import Users

META_USER = "aibridge_user"


class ProxyUsers:
    def __init__(self, users: Callable[[], Users]) -> None:
        self.users = users
        """The configured users, as they are now (the Bridge's configuration)."""
        self._tunnel_users: MutableMapping[connection.Client, str] = weakref.WeakKeyDictionary()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        users = self.users()
        if not users.required:
            return
        if (user := users.check_basic(flow.request.headers.get("proxy-authorization"))) is None:
            flow.response = _auth_required()
        else:
            self._tunnel_users[flow.client_conn] = user

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        users = self.users()
        if not users.required or flow.response is not None:
            return
        user = self._tunnel_users.get(flow.client_conn)
        if user is None:  # a plain-HTTP proxy request carries its own credentials
            user = users.check_basic(flow.request.headers.get("proxy-authorization"))
        flow.request.headers.pop("proxy-authorization", None)
        if user is None:
            flow.response = _auth_required()
            return
        flow.metadata[META_USER] = user


def _auth_required() -> http.Response:
    return http.Response.make(
        407,
        b"aibridge: proxy authentication required (HTTPS_PROXY=http://<user>:<token>@host:port)\n",
        {"Proxy-Authenticate": 'Basic realm="aibridge"', "content-type": "text/plain"},
    )
