"""The mitmproxy adapters, and only they import mitmproxy: the Bridge addon (TLS scope, routing hooks), proxy
authentication, the Operations addon, the local hop server bridged flows stream from, CA files, GC policy."""

from addon.mitm.bridge import Bridge
from addon.mitm.operations import Operations
from addon.mitm.proxyauth import ProxyUsers


def addons() -> list[object]:
    """The addons in the order mitmproxy must run them: authentication before routing, and Operations after
    the Bridge, so it observes what the Bridge routed."""
    bridge = Bridge()
    return [ProxyUsers(lambda: bridge.users), bridge, Operations(bridge)]
