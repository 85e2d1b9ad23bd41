"""Issue 6's second-core question, measured: the bridge's work after the hop in a process of its own.

mitmproxy runs on one core. Here it keeps the TLS interception and the relay (what the floor does), and sends
bridged requests whole, over plain HTTP on 127.0.0.1, to a worker process that does everything the in-process
bridge does after its hop: access rules, admission, the upstream call, parsing, MCP tools, recording (the worker
owns the audit file, so there is still one writer).

    python scripts/bench/worker_prototype.py --config aibridge.toml --db audit.duckdb --ca mock-ca.pem
        # prints READY http://127.0.0.1:PORT
    mitmdump -s scripts/bench/worker_prototype.py --set worker_hop=http://127.0.0.1:PORT ...

A prototype for the benchmark (`run.py --worker`), not a supported mode: it bridges the benchmark's API paths
and nothing else (no passthrough taps, proxy users, metrics or dumps), and the worker's CPU is counted with
mitmdump's.
"""

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mitmproxy import ctx, exceptions, http  # noqa: E402

from addon import upstream  # noqa: E402
from addon.audit import AuditWriter  # noqa: E402
from addon.config import load_config  # noqa: E402
from addon.gateway import Action, Gateway  # noqa: E402
from addon.mitm.server import LocalServer, _HopConnection  # noqa: E402
from addon.policy.pricing import load_book  # noqa: E402
from addon.tools import ToolManager  # noqa: E402

HOST_HEADER = "x-aibridge-worker-host"
BRIDGED_PATHS = ("/v1/messages", "/v1/chat/completions")
BRIDGED_SUFFIXES = (":streamGenerateContent", ":generateContent")
"""What the benchmark's clients call on the default hosts (the families' bridged endpoints without a prefix;
Gemini's `/v1beta/models/{model}:...`, the query kept)."""


# --- the mitmproxy side ----------------------------------------------------------------------------------------


class ToWorker:
    """Sends the recorded API calls to the worker, unchanged but for the target and a header naming the host."""

    def __init__(self) -> None:
        self.target: tuple[str, str, int] | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("worker_hop", str, "", "The worker's URL, as it printed it.")

    def configure(self, updated: set[str]) -> None:
        if "worker_hop" in updated and ctx.options.worker_hop:
            parts = urlsplit(ctx.options.worker_hop)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise exceptions.OptionsError(f"worker_hop: not an http URL with a port: {ctx.options.worker_hop!r}")
            self.target = ("http", parts.hostname, parts.port)

    def running(self) -> None:  # the lines the benchmark reads, as the bridge prints them
        proxyserver = ctx.master.addons.get("proxyserver")
        host, port = proxyserver.listen_addrs()[0][:2]
        ca = Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"
        print(f"export HTTPS_PROXY=http://{host}:{port}", flush=True)
        print(f"export SSL_CERT_FILE={ca}", flush=True)
        print(f"export CURL_CA_BUNDLE={ca}", flush=True)

    def request(self, flow: http.HTTPFlow) -> None:
        if self.target is None or flow.request.method != "POST":
            return
        path = flow.request.path.split("?", 1)[0]
        if path not in BRIDGED_PATHS and not path.endswith(BRIDGED_SUFFIXES):
            return
        flow.request.headers[HOST_HEADER] = flow.request.host
        flow.request.scheme, flow.request.host, flow.request.port = self.target
        flow.metadata["worker"] = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("worker") and flow.response is not None:
            flow.response.stream = True


addons = [ToWorker()]


# --- the worker ------------------------------------------------------------------------------------------------


class _WorkerConnection(_HopConnection):
    """The local server's connection, taking whole requests instead of parked jobs."""

    def __init__(self, server: "WorkerServer") -> None:
        super().__init__(server)
        self.worker = server
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = (self._url, self._headers, b"".join(self._body))
        self._url, self._headers, self._body = b"", [], []
        if self._task is None or self._task.done():
            self._start(request)  # type: ignore[arg-type]
        else:
            self._pending.append(request)  # type: ignore[arg-type]

    async def _answer(self, request: tuple[bytes, list[tuple[str, str]], bytes]) -> None:  # type: ignore[override]
        url, headers, body = request
        path = url.decode("latin-1")
        host = next((v for n, v in headers if n.lower() == HOST_HEADER), "")
        headers = [(n, v) for n, v in headers if n.lower() not in (HOST_HEADER, "host", "content-length")]
        gateway = self.worker.gateway
        decision = gateway.decide(host, "POST", path, headers, None)
        if decision is None or decision.action is not Action.BRIDGE:
            self._reply(404, b"not a bridged route")
            return
        job = gateway.job(decision, path, body)
        reply = await self.server.engine.admit(job, decision.access.refusal)
        if reply is not None:
            self._reply(reply.status, b"".join([chunk async for chunk in reply.body]))
            return
        await self._serve(job, self.server.engine.open(job))

    def _reply(self, status: int, body: bytes) -> None:
        self._write_head(status, [("content-type", "application/json"), ("content-length", str(len(body)))])
        self._write(body)


class WorkerServer(LocalServer):
    connection = _WorkerConnection

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway.engine)
        self.gateway = gateway


async def serve(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    writer = AuditWriter(args.db)
    writer.start()
    tools = ToolManager(config.mcp_servers)
    verify = upstream.make_ssl_context(insecure=False, ca_file=args.ca, ca_path=None)
    gateway = Gateway(writer, upstream.make_transport(verify), tools)
    gateway.apply(config)
    engine = gateway.engine
    server = WorkerServer(gateway)
    await server.start()
    await tools.start()
    await tools.wait_until_settled(10)
    load_book()
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"READY http://127.0.0.1:{server.port}", flush=True)
    await stop.wait()
    engine.abort_all("worker stopped")
    await server.stop()
    await tools.stop()
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="the bridge's TOML configuration")
    parser.add_argument("--db", default="aibridge.duckdb", help="the audit file (the worker is its one writer)")
    parser.add_argument("--ca", help="CA file the upstream's certificate is checked against")
    args = parser.parse_args()
    os.umask(0o077)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
