"""The mitmproxy addon: which flows the bridge takes, which it passes through, and which it never sees."""

import asyncio
import logging
import os
import weakref
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from mitmproxy import connection, ctx, exceptions, http, tls

from addon import upstream
from addon.audit import AuditFileLocked, AuditWriter
from addon.audit.endpoint import QueryEndpoint
from addon.audit.lineage import Lineage
from addon.config import Config, Provider, load_config
from addon.engine.core import Engine, Job, Reply, error_body
from addon.engine.tap import ResponseTap
from addon.mitm import gc_policy
from addon.mitm.certs import protect_private_key, shell_lines, write_ca_bundle
from addon.mitm.server import LocalServer
from addon.policy.access import Access, Users, resolve
from addon.policy.budgets import Ledger, month_start
from addon.policy.pricing import PriceBook, load_book
from addon.providers.routing import Route, classify
from addon.tools import ToolManager
from addon.upstream.transport import Http1Transport

logger = logging.getLogger(__name__)

META_ROUTE = "aibridge_route"
META_USER = "aibridge_user"
META_JOB = "aibridge_job"
META_TAP = "aibridge_tap"
TOOLS_STARTUP_GRACE = 10.0
"""Seconds the first bridged requests wait for MCP servers still connecting at start-up."""
_TLS_OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir"}
_TRANSPORT_OPTIONS = _TLS_OPTIONS | {"aibridge_read_timeout"}
MAX_REQUEST_BODY = 32 * 1024 * 1024
"""Bytes a recorded request's body may have (the providers' own limit is 32 MB); larger ones get a
provider-shaped 413 and go nowhere."""

# Library INFO logs would land in mitmdump's output for every request.
for _name in ("httpx",):
    logging.getLogger(_name).setLevel(logging.WARNING)


class Bridge:
    """Intercepts provider LLM calls (streamed back live through a local server), passes the rest through,
    reading the Responses API's exchanges on the way (`tap.ResponseTap`).

    Only provider hosts are TLS-intercepted, unless the user sets `allow_hosts`/`ignore_hosts` themselves.
    Bridged requests that arrive before `running()` has started the local server wait for it.
    """

    def __init__(self) -> None:
        self.config = Config()
        self.writer: AuditWriter | None = None
        self.engine: Engine | None = None
        self.server: LocalServer | None = None
        self.tools: ToolManager | None = None
        self.endpoint: QueryEndpoint | None = None
        self._transports: list[Http1Transport] = []
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tools_settled = False
        self.users = Users(())
        self._tunnel_users: MutableMapping[connection.Client, str] = weakref.WeakKeyDictionary()

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
            "Path of the DuckDB audit file every interception is recorded to.",
        )
        loader.add_option(
            "aibridge_read_timeout",
            int,
            int(upstream.READ_TIMEOUT),
            "Seconds a provider may take to send the first byte of its answer, and between reads after it; "
            "past it the client gets a provider-shaped 504 (or, mid-stream, an error event).",
        )

    def configure(self, updated: set[str]) -> None:
        if "aibridge_config" in updated:
            try:
                config = load_config(ctx.options.aibridge_config)
            except ValueError as e:
                raise exceptions.OptionsError(f"aibridge_config: {e}") from None
            self._use_tools(config)
            self.config = config
            self.users = Users(config.users)
        if updated & _TRANSPORT_OPTIONS or not self._transports:
            verify = upstream.make_ssl_context(
                insecure=ctx.options.ssl_insecure,
                ca_file=ctx.options.ssl_verify_upstream_trusted_ca,
                ca_path=ctx.options.ssl_verify_upstream_trusted_confdir,
            )
            self._transports.append(upstream.make_transport(verify, ctx.options.aibridge_read_timeout))
        if "aibridge_db" in updated or self.writer is None:
            self._open_audit(ctx.options.aibridge_db)
        assert self.writer is not None
        if self.engine is None:
            self.engine = Engine(self.writer, self._transports[-1], self.tools)  # type: ignore[arg-type]
            self.server = LocalServer(self.engine)
        self.engine.transport = self._transports[-1]
        if updated & {"aibridge_config", "aibridge_db"}:  # other options leave budgets and reservations be
            self.engine.max_tool_rounds = self.config.max_tool_rounds
            self.engine.keepalive_interval = self.config.keepalive_interval
            self.engine.prices = PriceBook(self.config.prices)
            self.engine.ledger = self._ledger()

    def _ledger(self) -> Ledger | None:
        """Budgets, with this month's spend rebuilt from the audit file."""
        budgets = self.config.budgets
        if not budgets.users and not budgets.groups:
            return None
        assert self.writer is not None
        ledger = Ledger(budgets, self.config.users)
        ledger.load(self.writer.spend_since(month_start(datetime.now(UTC))))
        return ledger

    def _use_tools(self, config: Config) -> None:
        """Swap the MCP servers when they changed; a running manager reconnects only what changed."""
        if self.tools is None or not self._ready.is_set():  # not started yet: nothing to reconnect
            self.tools = ToolManager(config.mcp_servers)
            if self.engine is not None:
                self.engine.tools = self.tools
        elif config.mcp_servers != self.config.mcp_servers:
            task = asyncio.ensure_future(self.tools.reconfigure(config.mcp_servers))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _open_audit(self, path: str) -> None:
        if self.writer is not None and self.writer.path == path:
            return
        if not path:
            raise exceptions.OptionsError("aibridge_db: a path is required")
        try:
            writer = AuditWriter(path)
        except AuditFileLocked as e:
            raise exceptions.OptionsError(f"aibridge_db: {e}") from None
        except (duckdb.Error, OSError) as e:
            raise exceptions.OptionsError(f"aibridge_db: cannot open {path}: {e}") from None
        writer.start()
        if self.writer is not None:
            self.writer.close()
        self.writer = writer
        if self.engine is not None:
            self.engine.recorder = writer
            self.engine.lineage = Lineage(writer.find_tool_call)

    async def running(self) -> None:
        assert self.server is not None and self.tools is not None and self.writer is not None
        await self.server.start()
        assert self.engine is not None
        self.engine.shutting_down = ctx.master.should_exit.is_set
        self.endpoint = QueryEndpoint(self.writer.reader, self.writer.path)
        await self.endpoint.start()
        await self.tools.start()  # connects in the background: start-up does not wait for MCP servers
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
            f"aibridge ready; audit file {self.writer.path if self.writer else '-'}. "
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

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A closed proxy: a tunnel opens only for a user with valid credentials, and stays theirs."""
        if not self.users.required:
            return
        if (user := self.users.check_basic(flow.request.headers.get("proxy-authorization"))) is None:
            flow.response = _auth_required()
        else:
            self._tunnel_users[flow.client_conn] = user

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.users.required and flow.response is None:
            user = self._tunnel_users.get(flow.client_conn)
            if user is None:  # a plain-HTTP proxy request carries its own credentials
                user = self.users.check_basic(flow.request.headers.get("proxy-authorization"))
            flow.request.headers.pop("proxy-authorization", None)
            if user is None:
                flow.response = _auth_required()
                return
            flow.metadata[META_USER] = user
        if flow.response is None:
            self._check_size(flow, flow.request.headers.get("content-length"))

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return
        route = classify(self.config, flow.request.host, flow.request.method, flow.request.path)
        if route is None:
            return
        if self._check_size(flow, len(flow.request.raw_content or b"")):  # a chunked body, now read whole
            return
        flow.metadata[META_ROUTE] = route
        access = resolve(
            self.config,
            self.users,
            route.provider,
            list(flow.request.headers.items(multi=True)),
            flow.metadata.get(META_USER),
        )
        if route.api is None:
            _pass_through(flow, route.provider, access)
            return
        if route.api.tapped:
            await self._tap(flow, route, access)
            return
        try:
            await self._bridge(flow, route, access)
        except Exception as e:  # boundary: mitmproxy would forward a half-handled flow as it stands
            logger.exception("aibridge: cannot bridge %s %s", flow.request.method, flow.request.pretty_url)
            job: Job | None = flow.metadata.get(META_JOB)
            if job is not None and self.engine is not None:
                self.engine.finish(job, "failed", f"bridge error: {e!r}", 500)
            flow.response = http.Response.make(500, b"internal bridge error", {"content-type": "text/plain"})

    def _check_size(self, flow: http.HTTPFlow, length: str | int | None) -> bool:
        """Answer a recorded route's over-large body with a provider-shaped 413 (before it is read, when its
        length is declared). Such a request goes nowhere and starts no interception."""
        try:
            size = int(length) if length is not None else 0
        except ValueError:
            return False  # mitmproxy itself refuses a malformed content-length
        if size <= MAX_REQUEST_BODY:
            return False
        route = classify(self.config, flow.request.host, flow.request.method, flow.request.path)
        if route is None or route.api is None:
            return False  # passthrough: the provider decides
        message = f"request body of {size} bytes exceeds the bridge's limit of {MAX_REQUEST_BODY} bytes"
        logger.warning("aibridge: %s %s refused: %s", flow.request.method, flow.request.pretty_url, message)
        flow.response = http.Response.make(
            413, error_body(route.provider.type, 413, message), {"content-type": "application/json"}
        )
        return True

    async def _bridge(self, flow: http.HTTPFlow, route: Route, access: Access) -> None:
        await self._ready.wait()
        if self.tools is not None and not self._tools_settled:
            # Right after start-up, give MCP servers a moment so early requests get their tools too.
            await self.tools.wait_until_settled(TOOLS_STARTUP_GRACE)
            self._tools_settled = True
        assert self.engine is not None and self.server is not None and self.server.port is not None
        job = _job(flow, route, access)
        flow.metadata[META_JOB] = job
        reply = await self.engine.admit(job, access.refusal)
        if reply is not None:
            flow.response = await _answer(reply)
            return
        # Re-target the flow at the local server; the job holds everything the upstream call needs.
        flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", self.server.port
        flow.request.authority = ""  # origin-form to the hop, even for an absolute-form request in a tunnel
        flow.request.path = self.server.submit(job)
        flow.request.headers = http.Headers(host=f"127.0.0.1:{self.server.port}")
        flow.request.content = b""

    async def _tap(self, flow: http.HTTPFlow, route: Route, access: Access) -> None:
        """Pass the request through unchanged, recording it; its response is read as it streams by."""
        await self._ready.wait()
        assert self.engine is not None
        job = _job(flow, route, access)
        try:
            reply = await self.engine.admit(job, access.refusal)
        except Exception as e:  # boundary: an audit failure must not cost the client its request
            logger.exception("aibridge: cannot record %s %s", flow.request.method, flow.request.pretty_url)
            self.engine.finish(job, "failed", f"bridge error: {e!r}")
            _pass_through(flow, route.provider, access)
            return
        if reply is not None:  # refused: access rules or a spent budget
            flow.response = await _answer(reply)
            return
        flow.metadata[META_TAP] = ResponseTap(self.engine, job)
        _pass_through(flow, route.provider, access)

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
        if job is not None and not job.ended and self.engine is not None and flow.response is not None:
            # Only reachable if the local server answered without running the job; it must still end.
            self.engine.finish(job, "failed", "the bridge server did not run the request", flow.response.status_code)

    def error(self, flow: http.HTTPFlow) -> None:
        message = flow.error.msg if flow.error else "flow failed"
        status = "cancelled" if "disconnect" in message.lower() else "failed"
        tap: ResponseTap | None = flow.metadata.get(META_TAP)
        if tap is not None:
            tap.fail(status, message)
            return
        job: Job | None = flow.metadata.get(META_JOB)
        if job is None or job.ended or self.server is None or self.engine is None:
            return
        if self.server.withdraw(flow.request.path) is not None:
            self.engine.finish(job, status, message)

    async def done(self) -> None:
        if self.engine is not None:
            self.engine.abort_all("proxy shut down")
        if self.server is not None:
            await self.server.stop()
        if self.tools is not None:
            await self.tools.stop()
        if self.endpoint is not None:
            await self.endpoint.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        for transport in self._transports:  # earlier ones too: jobs started before a TLS option changed
            await transport.aclose()
        self._transports.clear()


def _job(flow: http.HTTPFlow, route: Route, access: Access) -> Job:
    return Job.of(route, flow.request.path, flow.request.get_content(strict=False) or b"", access)


async def _answer(reply: Reply) -> http.Response:
    """A reply the engine decided on its own (a refusal, a malformed request), as the flow's response."""
    body = b"".join([chunk async for chunk in reply.body])
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    return http.Response.make(reply.status, body, headers)


def _auth_required() -> http.Response:
    return http.Response.make(
        407,
        b"aibridge: proxy authentication required (HTTPS_PROXY=http://<user>:<token>@host:port)\n",
        {"Proxy-Authenticate": 'Basic realm="aibridge"', "content-type": "text/plain"},
    )


def _pass_through(flow: http.HTTPFlow, provider: Provider, access: Access) -> None:
    """Forward unchanged but for the credential rules, to the provider's configured upstream."""
    if access.refusal is not None:
        status, message = access.refusal
        flow.response = http.Response.make(
            status, error_body(provider.type, status, message), {"content-type": "application/json"}
        )
        return
    flow.request.headers = http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in access.headers])
    target = provider.upstream
    if (target.scheme, target.host, target.port, target.path) != ("https", provider.host, 443, ""):
        flow.request.scheme, flow.request.host, flow.request.port = target.scheme, target.host, target.port
        if target.path:
            flow.request.path = target.path + flow.request.path
    for name, value in provider.extra_headers:
        flow.request.headers[name] = value
