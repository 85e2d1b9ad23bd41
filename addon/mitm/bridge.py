"""The Bridge addon: which flows the bridge takes, which it passes through, and which it never sees.

Only provider hosts are TLS-intercepted, unless the user sets `allow_hosts`/`ignore_hosts` themselves. Each
request on them goes where the front door (`addon.gateway`) decides: passed through to the provider's
upstream, refused, tapped (`ResponseTap` reads the response as mitmproxy streams it), or bridged: re-targeted
at the local hop server, which runs the engine and streams its reply back through mitmproxy. Bridged requests
that arrive before `running()` has started the hop server wait for it.
"""

import asyncio
import logging
import os
from pathlib import Path

from mitmproxy import ctx, exceptions, http, tls

from addon import upstream
from addon.audit import AuditFileError, AuditFileLocked, AuditWriter
from addon.audit.endpoint import QueryEndpoint
from addon.audit.store import is_postgres, masked
from addon.config import Config, load_config
from addon.engine.job import Job, Reply, Status
from addon.engine.tap import ResponseTap
from addon.gateway import MAX_REQUEST_BODY, Action, Decision, Gateway, too_large
from addon.mitm import gc_policy
from addon.mitm.certs import protect_private_key, shell_lines, write_ca_bundle
from addon.mitm.proxyauth import META_USER
from addon.mitm.server import LocalServer
from addon.observe.dumps import mask_target
from addon.policy.access import Users
from addon.policy.pricing import load_book
from addon.providers.routing import Route
from addon.tools import ToolManager
from addon.upstream.transport import Http1Transport

logger = logging.getLogger(__name__)

META_ROUTE = "aibridge_route"
META_JOB = "aibridge_job"
META_TAP = "aibridge_tap"
TOOLS_STARTUP_GRACE = 10.0
"""Seconds the first bridged requests wait for MCP servers still connecting at start-up."""
_TLS_OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir"}
_TRANSPORT_OPTIONS = _TLS_OPTIONS | {"aibridge_read_timeout"}

# Library INFO logs would land in mitmdump's output for every request.
for _name in ("httpx",):
    logging.getLogger(_name).setLevel(logging.WARNING)


class Bridge:
    def __init__(self) -> None:
        self.config = Config()
        self.gateway: Gateway | None = None
        self.server: LocalServer | None = None
        self.tools: ToolManager | None = None
        self.endpoint: QueryEndpoint | None = None
        self._transports: list[Http1Transport] = []
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tools_settled = False

    @property
    def writer(self) -> AuditWriter | None:
        return self.gateway.writer if self.gateway is not None else None

    @property
    def users(self) -> Users:
        return self.gateway.users if self.gateway is not None else Users(())

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        # What the proxy writes holds prompts and keys (audit file and its WAL, which DuckDB re-creates at will,
        # the CA key): private to its user. Public files (the CA bundle) are opened up explicitly.
        os.umask(os.umask(0o077) | 0o077)
        loader.add_option(
            "aibridge_config",
            str | None,
            None,
            "Path of the aibridge TOML configuration (providers, MCP servers, tool loop limits). Without it, "
            "the default providers anthropic (api.anthropic.com) and openai (api.openai.com) are bridged "
            "and no tools are injected.",
        )
        loader.add_option(
            "aibridge_db",
            str,
            "aibridge.duckdb",
            "Where every interception is recorded: the path of a DuckDB audit file, or a postgresql:// URL "
            "(one database a fleet of proxies shares).",
        )
        loader.add_option(
            "aibridge_read_timeout",
            int,
            int(upstream.READ_TIMEOUT),
            "Seconds a provider may take to send the first byte of its answer, and between reads after it; "
            "past it the client gets a provider-shaped 504 (or, mid-stream, an error event).",
        )

    def configure(self, updated: set[str]) -> None:
        if self.gateway is None and not {"aibridge_config", "aibridge_db"} <= updated:
            return  # options a later addon's load() adds, before the configure that names ours: nothing to open yet
        if "aibridge_config" in updated:
            try:
                config = load_config(ctx.options.aibridge_config)
            except ValueError as e:
                raise exceptions.OptionsError(f"aibridge_config: {e}") from None
            self._use_tools(config)
            self.config = config
        if updated & _TRANSPORT_OPTIONS or not self._transports:
            verify = upstream.make_ssl_context(
                insecure=ctx.options.ssl_insecure,
                ca_file=ctx.options.ssl_verify_upstream_trusted_ca,
                ca_path=ctx.options.ssl_verify_upstream_trusted_confdir,
            )
            self._transports.append(upstream.make_transport(verify, ctx.options.aibridge_read_timeout))
        writer = self._open_audit(ctx.options.aibridge_db) if "aibridge_db" in updated or not self.gateway else None
        if self.gateway is None:
            assert writer is not None
            self.gateway = Gateway(writer, self._transports[-1], self.tools)
            self.server = LocalServer(self.gateway.engine)
            self.gateway.apply(self.config)
        else:
            if writer is not None:
                self.gateway.use_writer(writer)
            if "aibridge_config" in updated:  # other options leave budgets and reservations be
                self.gateway.apply(self.config)
        self.gateway.engine.transport = self._transports[-1]

    def _use_tools(self, config: Config) -> None:
        """Swap the MCP servers when they changed; a running manager reconnects only what changed."""
        if self.tools is None or not self._ready.is_set():  # not started yet: nothing to reconnect
            self.tools = ToolManager(config.mcp_servers)
            if self.gateway is not None:
                self.gateway.engine.tools = self.tools
        elif config.mcp_servers != self.config.mcp_servers:
            task = asyncio.ensure_future(self.tools.reconfigure(config.mcp_servers))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _open_audit(self, path: str) -> AuditWriter | None:
        """A writer for the audit file at `path`; None when it is the one in use."""
        if self.writer is not None and self.writer.path == path:
            return None
        if not path:
            raise exceptions.OptionsError("aibridge_db: a path is required")
        try:
            writer = AuditWriter(path)
        except AuditFileLocked as e:
            raise exceptions.OptionsError(f"aibridge_db: {e}") from None
        except (AuditFileError, OSError) as e:
            raise exceptions.OptionsError(f"aibridge_db: cannot open {masked(path)}: {e}") from None
        writer.start()
        if self.writer is not None:
            self.writer.close()
        return writer

    async def running(self) -> None:
        assert self.server is not None and self.tools is not None and self.gateway is not None
        await self.server.start()
        self.gateway.engine.shutting_down = ctx.master.should_exit.is_set
        if not is_postgres(self.gateway.writer.path):  # PostgreSQL serves its readers itself
            self.endpoint = QueryEndpoint(self.gateway.writer.reader, self.gateway.writer.path)  # type: ignore[arg-type]
            await self.endpoint.start()
        await self.tools.start()  # connects in the background: start-up does not wait for MCP servers
        await self.gateway.start()
        self._ready.set()
        self._announce()
        load_book()  # the price book, loaded before it is frozen with the rest
        gc_policy.settle()

    def _announce(self) -> None:
        confdir = Path(ctx.options.confdir).expanduser()
        protect_private_key(confdir)
        try:
            bundle = write_ca_bundle(confdir)
        except OSError as e:
            logger.warning("aibridge: cannot write the CA bundle in %s: %s", confdir, e)
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = [a for a in proxyserver.listen_addrs() if len(a) >= 2] if proxyserver else []
        if not addrs:
            return
        host, port = addrs[0][0], addrs[0][1]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        lines = "\n".join(shell_lines(url, bundle))
        logger.info(
            f"aibridge ready; audit {self.writer.target if self.writer else '-'}. "
            f"Paste into a developer shell:\n{lines}"
        )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if ctx.options.allow_hosts or ctx.options.ignore_hosts:
            return  # the user chose which hosts to intercept
        host = data.client_hello.sni
        if not host and data.context.server.address:
            host = data.context.server.address[0]
        if not host or self.config.provider_for_host(host) is None:
            data.ignore_connection = True

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self._check_size(flow, flow.request.headers.get("content-length"), None)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or self.gateway is None:
            return
        request = flow.request
        headers = list(request.headers.items(multi=True))
        try:
            decision = self.gateway.decide(
                request.host, request.method, request.path, headers, flow.metadata.get(META_USER)
            )
        except Exception:  # boundary: fail closed, or mitmproxy forwards the request with its credentials
            logger.exception("aibridge: cannot route %s %s", request.method, mask_target(request.pretty_url))
            flow.response = http.Response.make(500, b"internal bridge error", {"content-type": "text/plain"})
            return
        if decision is None:
            return
        if self._check_size(flow, len(request.raw_content or b""), decision.route):  # a chunked body, read whole
            return
        flow.metadata[META_ROUTE] = decision.route
        if decision.path is not None:
            request.path = decision.path  # a bridge token taken out of the query
        if decision.action is Action.TAP:
            await self._tap(flow, decision)
        elif decision.action is Action.BRIDGE:
            await self._bridge(flow, decision)
        else:
            _pass_through(flow, decision)

    def _check_size(self, flow: http.HTTPFlow, length: str | int | None, route: Route | None) -> bool:
        """Answer a recorded route's over-large body with a provider-shaped 413 (before it is read, when its
        length is declared). Such a request goes nowhere and starts no interception. The route is looked up
        only for a body over the limit (`route`: already known)."""
        try:
            size = int(length) if length is not None else 0
        except ValueError:
            return False  # mitmproxy itself refuses a malformed content-length
        if size <= MAX_REQUEST_BODY or self.gateway is None:
            return False
        request = flow.request
        route = route or self.gateway.route(request.host, request.method, request.path)
        if (refused := too_large(route, size)) is None:
            return False
        status, body, message = refused
        logger.warning(
            "aibridge: %s %s refused: %s", flow.request.method, mask_target(flow.request.pretty_url), message
        )
        flow.response = http.Response.make(status, body, {"content-type": "application/json"})
        return True

    async def _bridge(self, flow: http.HTTPFlow, decision: Decision) -> None:
        try:
            await self._ready.wait()
            if self.tools is not None and not self._tools_settled:
                # Right after start-up, give MCP servers a moment so early requests get their tools too.
                await self.tools.wait_until_settled(TOOLS_STARTUP_GRACE)
                self._tools_settled = True
            assert self.gateway is not None and self.server is not None and self.server.port is not None
            job = flow.metadata[META_JOB] = self.gateway.job(decision, flow.request.path, _body(flow))
            reply = await self.gateway.engine.admit(job, decision.access.refusal)
            if reply is not None:
                flow.response = await _answer(reply)
                return
            # Re-target the flow at the local server; the job holds everything the upstream call needs.
            flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", self.server.port
            flow.request.authority = ""  # origin-form to the hop, even for an absolute-form request in a tunnel
            flow.request.path = self.server.submit(job)
            flow.request.headers = http.Headers(host=f"127.0.0.1:{self.server.port}")
            flow.request.content = b""
        except Exception as e:  # boundary: mitmproxy would forward a half-handled flow as it stands
            logger.exception("aibridge: cannot bridge %s %s", flow.request.method, mask_target(flow.request.pretty_url))
            job: Job | None = flow.metadata.get(META_JOB)
            if job is not None and self.gateway is not None:
                self.gateway.engine.finish(job, Status.FAILED, f"bridge error: {e!r}", 500)
            flow.response = http.Response.make(500, b"internal bridge error", {"content-type": "text/plain"})

    async def _tap(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Pass the request through unchanged, recording it; its response is read as it streams by."""
        await self._ready.wait()
        assert self.gateway is not None
        engine = self.gateway.engine
        sent = _body(flow)
        job = self.gateway.job(decision, flow.request.path, sent)
        try:
            reply = await engine.admit(job, decision.access.refusal)
        except Exception as e:  # boundary: an audit failure must not cost the client its request
            logger.exception("aibridge: cannot record %s %s", flow.request.method, mask_target(flow.request.pretty_url))
            engine.finish(job, Status.FAILED, f"bridge error: {e!r}")
            if job.metadata.get("outbound") == "blocked":  # ... nor let a secret out that was to be refused
                status, body = 400, decision.route.error_body(400, "the request holds a secret: not sent")
                flow.response = http.Response.make(status, body, {"content-type": "application/json"})
                return
            _pass_through(flow, decision, job.body if job.body is not sent else None)
            return
        if reply is not None:  # refused: access rules or a spent budget
            flow.response = await _answer(reply)
            return
        _pass_through(flow, decision, job.body if job.body is not sent else None)  # secrets replaced, or not
        if flow.response is not None:  # it could not be signed: answered here, so nothing comes to tap
            engine.finish(job, Status.FAILED, flow.response.get_text(strict=False) or "", flow.response.status_code)
            return
        flow.metadata[META_TAP] = ResponseTap(engine, job)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if META_ROUTE not in flow.metadata or flow.response is None:
            return
        tap: ResponseTap | None = flow.metadata.get(META_TAP)
        if tap is None:
            flow.response.stream = True
            return
        tap.start(flow.response.status_code, flow.response.headers)
        flow.response.stream = tap

    def response(self, flow: http.HTTPFlow) -> None:
        tap: ResponseTap | None = flow.metadata.get(META_TAP)
        if tap is not None:
            tap.end()
            return
        job: Job | None = flow.metadata.get(META_JOB)
        if job is not None and not job.ended and self.gateway is not None and flow.response is not None:
            # Only reachable if the local server answered without running the job; it must still end.
            message = "the bridge server did not run the request"
            self.gateway.engine.finish(job, Status.FAILED, message, flow.response.status_code)

    def error(self, flow: http.HTTPFlow) -> None:
        message = flow.error.msg if flow.error else "flow failed"
        status = Status.CANCELLED if "disconnect" in message.lower() else Status.FAILED
        tap: ResponseTap | None = flow.metadata.get(META_TAP)
        if tap is not None:
            tap.fail(status, message)
            return
        job: Job | None = flow.metadata.get(META_JOB)
        if job is None or job.ended or self.server is None or self.gateway is None:
            return
        if self.server.withdraw(flow.request.path) is not None:
            self.gateway.engine.finish(job, status, message)

    async def done(self) -> None:
        if self.gateway is not None:
            self.gateway.engine.abort_all("proxy shut down")
        if self.server is not None:
            await self.server.stop()
        if self.tools is not None:
            await self.tools.stop()
        if self.endpoint is not None:
            await self.endpoint.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.writer is not None:
            self.writer.close()
        for transport in self._transports:  # earlier ones too: jobs started before a TLS option changed
            await transport.aclose()
        self._transports.clear()


def _body(flow: http.HTTPFlow) -> bytes:
    return flow.request.get_content(strict=False) or b""


async def _answer(reply: Reply) -> http.Response:
    """A reply the engine decided on its own (a refusal, a malformed request), as the flow's response."""
    body = b"".join([chunk async for chunk in reply.body])
    return http.Response.make(reply.status, body, _mitm_headers(reply.headers))


def _pass_through(flow: http.HTTPFlow, decision: Decision, body: bytes | None = None) -> None:
    """Forward unchanged but for the credential rules (and `body`, where secrets were replaced in it), to the
    provider's configured upstream (signed last, where the bridge signs: the signature covers the headers and
    the body as they go)."""
    if decision.access.refusal is not None:
        status, error = decision.error()
        flow.response = http.Response.make(status, error, {"content-type": "application/json"})
        return
    access, route, request = decision.access, decision.route, flow.request
    extra = route.provider.extra_headers
    replaced = {n.lower() for n, _ in extra}
    headers = [*((n, v) for n, v in access.headers if n.lower() not in replaced), *extra]
    if body is not None:
        request.content = body  # encoded as the request's content-encoding says
        length = str(len(request.raw_content or b""))
        headers = [(n, length if n.lower() == "content-length" else v) for n, v in headers]
    if access.aws is not None:
        try:
            headers = route.sign(access.aws, request.method, request.path, headers, request.raw_content or b"")
        except ValueError as e:
            logger.error("aibridge: %s", e)
            flow.response = http.Response.make(502, route.error_body(502, str(e)), {"content-type": "application/json"})
            return
    request.headers = _mitm_headers(headers)
    _retarget(flow, route)


def _mitm_headers(headers: list[tuple[str, str]]) -> http.Headers:
    return http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers])


def _retarget(flow: http.HTTPFlow, route: Route) -> None:
    target = route.upstream
    if (target.scheme, target.host, target.port, target.path) != ("https", route.host, 443, ""):
        flow.request.scheme, flow.request.host, flow.request.port = target.scheme, target.host, target.port
        if target.path:
            flow.request.path = target.path + flow.request.path
