"""The benchmark's floor: what any streaming mitmproxy addon costs, and nothing more.

    mitmdump -s scripts/bench/floor_addon.py --set floor_upstream=https://127.0.0.1:PORT ...

It sends requests for the provider hosts to `floor_upstream` (as the bridge's `upstream` option does) and streams
`text/event-stream` responses (`flow.response.stream = True`; without it mitmproxy buffers a whole stream). Sync
hooks only: no parsing, no recording, no local server. Once listening it prints the lines a client needs, in the
bridge's `export NAME=value` form (HTTPS_PROXY, SSL_CERT_FILE = this proxy's CA, CURL_CA_BUNDLE last).

`--set floor_gc_policy=true` gives it the bridge's garbage-collection policy (`addon.mitm.gc_policy`), so a run can
tell what the bridge's data path costs apart from what that policy saves.
"""

import sys
from pathlib import Path
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions, http

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from addon.mitm import gc_policy  # a light import (gc only); the package is not installed

PROVIDER_HOSTS = frozenset({"api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com"})


class Floor:
    def __init__(self) -> None:
        self.target: tuple[str, str, int] | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "floor_upstream", str, "", "Where requests for the provider hosts go, e.g. https://127.0.0.1:8443."
        )
        loader.add_option("floor_gc_policy", bool, False, "Apply the bridge's garbage-collection policy once running.")

    def configure(self, updated: set[str]) -> None:
        if "floor_upstream" not in updated:
            return
        url = ctx.options.floor_upstream
        if not url:
            self.target = None
            return
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise exceptions.OptionsError(f"floor_upstream: not an http(s) URL: {url!r}")
        self.target = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    def running(self) -> None:
        if ctx.options.floor_gc_policy:
            gc_policy.settle()
        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = [a for a in proxyserver.listen_addrs() if len(a) >= 2] if proxyserver else []
        if not addrs:
            return
        ca = Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"
        host = addrs[0][0] if addrs[0][0] not in ("0.0.0.0", "::", "") else "127.0.0.1"
        print(f"export HTTPS_PROXY=http://{host}:{addrs[0][1]}", flush=True)
        print(f"export SSL_CERT_FILE={ca}", flush=True)
        print(f"export CURL_CA_BUNDLE={ca}", flush=True)

    def request(self, flow: http.HTTPFlow) -> None:
        if self.target is not None and flow.request.host in PROVIDER_HOSTS:
            flow.request.scheme, flow.request.host, flow.request.port = self.target

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.headers.get("content-type", "").startswith("text/event-stream"):
            flow.response.stream = True


addons = [Floor()]
