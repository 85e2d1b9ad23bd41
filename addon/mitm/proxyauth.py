"""Proxy authentication for the configured users: when there are any, the proxy is closed to everyone else.
(The class is `ProxyUsers`: mitmproxy's own addon is called `proxyauth`.)

A tunnel (`CONNECT`) opens only with valid `Proxy-Authorization: Basic <user>:<token>` and stays its user's; a
plain-HTTP proxy request carries its own credentials. Anything else gets a 407. The header never goes upstream.
Runs before the Bridge (see `addons()`), which reads the user from the flow's metadata.
"""

import weakref
from collections.abc import Callable, MutableMapping

from mitmproxy import connection, http

from addon.config import User
from addon.policy.access import Users

META_USER = "aibridge_user"


class ProxyUsers:
    def __init__(self, users: Callable[[], Users]) -> None:
        self.users = users
        """The configured users, as they are now (the Bridge's configuration)."""
        self._tunnels: MutableMapping[connection.Client, User] = weakref.WeakKeyDictionary()
        """Who opened each tunnel; a request in it is theirs while they are still configured as they were."""

    def http_connect(self, flow: http.HTTPFlow) -> None:
        users = self.users()
        if not users.required:
            return
        if (name := users.check_basic(flow.request.headers.get("proxy-authorization"))) is None:
            flow.response = _auth_required()
        elif (user := users.get(name)) is not None:
            self._tunnels[flow.client_conn] = user

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        users = self.users()
        if not users.required or flow.response is not None:
            return
        user = None
        if (opener := self._tunnels.get(flow.client_conn)) is not None and users.get(opener.name) == opener:
            user = opener.name  # a removed user's tunnel, or one whose token changed, is theirs no longer
        elif opener is None:  # a plain-HTTP proxy request carries its own credentials
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
