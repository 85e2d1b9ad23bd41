"""A fleet: `n` real `mitmdump -s addon/aibridge.py` processes sharing one CA (one confdir) and one PostgreSQL
audit database, behind HAProxy in TCP mode, so that clients set HTTPS_PROXY to one address.

HAProxy only moves bytes: a client's CONNECT, its TLS (to the proxy's CA) and every request on that tunnel go
to the one proxy the connection landed on. The balance is per TCP connection, not per request: a client that
keeps its connection alive stays on one proxy.

`python -m tests.support.fleet` (what scripts/fleet runs) starts one for a developer; `Fleet` is the same for
the tests."""

import argparse
import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import quote

import psycopg
from psycopg import sql

from addon.audit.store import masked
from addon.mitm.certs import BUNDLE_NAME, shell_lines
from tests.support.postgres import PostgresServer, _free_port
from tests.support.proxy import _EXPORT, ROOT, Proxy

BACKEND = "proxies"
PROXY_READY_TIMEOUT = 30.0  # seconds for one mitmdump to print its export lines
BALANCER_READY_TIMEOUT = 15.0  # seconds for HAProxy to listen and see every proxy UP
STOP_TIMEOUT = 15.0  # seconds for a process to stop cleanly before it is killed
KILL_TIMEOUT = 5.0  # seconds to reap a killed process
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux
_BIND_TRIES = 5  # a free port another process took before HAProxy bound it
_KEEP_LINES = 20_000  # scripts/fleet keeps this many lines a process: health checks log 4 a second a proxy
_CLEARED = ("SSL_CERT_DIR",)  # besides every *_proxy variable: a client must not go around, nor trust otherwise


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    if found is None:
        raise RuntimeError("haproxy not found: run scripts/setup, or apt-get install haproxy")
    return found


def haproxy_config(port: int, servers: Iterable[tuple[str, int]], stats_socket: Path, maxconn: int = 1000) -> str:
    """HAProxy in TCP mode on 127.0.0.1:`port` in front of `servers` (name, port on 127.0.0.1).

    roundrobin, not leastconn: each new connection goes to the next proxy in turn, so N connections in a row
    spread evenly whatever is still open (a test can count on it); leastconn would pile a burst of short
    connections on whichever proxy closed its last one first. `redispatch 1` moves every retry of a refused
    connection to another proxy at once: a proxy that died before its health checks noticed (fall 2 x inter
    500ms, about a second) costs the client nothing. The 10 minute client and server timeouts are idle
    timeouts: a long stream with gaps between its events stays up."""
    lines = [
        "global",
        f"    maxconn {maxconn}",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    log stdout format raw local0 info",
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    option redispatch 1",
        "    retries 3",
        "    timeout connect 5s",
        "    timeout client 10m",
        "    timeout server 10m",
        f"    maxconn {maxconn}",
        "",
        "frontend aibridge",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
    ]
    lines += [f"    server {name} 127.0.0.1:{p} check inter 500ms fall 2 rise 2" for name, p in servers]
    return "\n".join(lines) + "\n"


class _Lines(list[str]):
    """A process's output, a list as `Proxy.output` is: all of it, or about the last `keep` lines (the oldest
    dropped a tenth at a time); each line is also handed to `on_line` when given."""

    def __init__(self, keep: int | None, on_line: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._keep = keep
        self._on_line = on_line

    def append(self, line: str) -> None:
        super().append(line)
        if self._keep is not None and len(self) > self._keep + self._keep // 10:
            del self[: len(self) - self._keep]
        if self._on_line is not None:
            self._on_line(line)


class FleetProxy(Proxy):
    """One mitmdump of the fleet: a `Proxy` on the fleet's confdir and database, named for HAProxy."""

    def __init__(
        self,
        name: str,
        tmp: Path,
        *,
        confdir: Path,
        db: str,
        args: tuple[str, ...],
        cwd: Path | None = None,
        keep_lines: int | None = None,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(tmp, None, args, confdir=confdir, db=db, cwd=cwd)
        self.name = name
        self.output = _Lines(keep_lines, (lambda line: on_line(name, line)) if on_line else None)  # type: ignore[assignment]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = PROXY_READY_TIMEOUT) -> "FleetProxy":
        """As `Proxy.start`, but a process that exits (a database it cannot reach) fails at once."""
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                rc = self.stop()
                time.sleep(0.2)  # the reader thread takes the last lines
                raise RuntimeError(f"{self.name} did not become ready (exit {rc}):\n" + "\n".join(self.output))
        return self

    def kill(self) -> int:
        """SIGKILL, as a crash: no clean shutdown, open connections reset."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(KILL_TIMEOUT)

    # stop(), from Proxy: SIGTERM, which mitmdump handles as SIGINT (a clean shutdown), killed after 15 s


class Fleet:
    """`n` proxies on one CA (`confdir`, default `root/conf`) and one audit database (`db`, a postgresql://
    URL), behind HAProxy on 127.0.0.1:`port` (0: a free one). `config`: the aibridge TOML, as text (written
    to `root/aibridge.toml`) or the Path of a file; `args`: more mitmdump arguments; `cwd`: the proxies' working
    directory (default each its own under `root`). Output lines are all kept, or the last `keep_lines` of each
    process; `on_line(name, line)` sees every one, HAProxy's as `haproxy`."""

    def __init__(
        self,
        root: Path,
        db: str,
        n: int = 2,
        *,
        config: str | Path | None = None,
        args: Sequence[str] = (),
        port: int = 0,
        maxconn: int = 1000,
        confdir: Path | None = None,
        cwd: Path | None = None,
        keep_lines: int | None = None,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("a fleet needs at least one proxy")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.confdir = Path(confdir) if confdir is not None else self.root / "conf"
        self.config_path: Path | None = None
        if isinstance(config, Path):
            self.config_path = config.resolve()
        elif config is not None:
            self.config_path = self.root / "aibridge.toml"
            self.config_path.write_text(config)
        extra = ("--set", f"aibridge_config={self.config_path}") if self.config_path else ()
        self.proxies = [
            FleetProxy(
                f"proxy{i}",
                self._dir(f"proxy{i}"),
                confdir=self.confdir,
                db=db,
                args=(*extra, *args),
                cwd=cwd,
                keep_lines=keep_lines,
                on_line=on_line,
            )
            for i in range(1, n + 1)
        ]
        self.requested_port = port
        self.port = port
        self.maxconn = maxconn
        self.config_file = self.root / "haproxy.cfg"
        self._temp: list[Path] = []
        self.stats_socket = self.root / "haproxy.sock"
        if len(str(self.stats_socket)) > _SOCKET_PATH_MAX:
            self._temp.append(Path(tempfile.mkdtemp(prefix="fleet", dir="/tmp")))
            self.stats_socket = self._temp[-1] / "haproxy.sock"
        self.balancer_output: list[str] = _Lines(
            keep_lines, (lambda line: on_line("haproxy", line)) if on_line else None
        )
        self.balancer: subprocess.Popen[str] | None = None
        self.startup_seconds: float | None = None

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    # --- start and stop -----------------------------------------------------------------------------------

    def start(self, timeout: float = BALANCER_READY_TIMEOUT) -> "Fleet":
        """The first proxy alone (it creates the CA if there is none), then the others one by one (each rewrites
        the shared CA bundle through one temporary file name), then HAProxy; returns once HAProxy accepts
        connections and has seen every proxy pass a health check. Stops whatever started on failure."""
        began = time.monotonic()
        try:
            for proxy in self.proxies:
                proxy.start()
            self._start_balancer(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_balancer(self, timeout: float) -> None:
        for attempt in range(_BIND_TRIES):
            self.port = self.requested_port or _free_port()
            servers = [(p.name, p.port) for p in self.proxies]
            self.config_file.write_text(haproxy_config(self.port, servers, self.stats_socket, self.maxconn))
            self.stats_socket.unlink(missing_ok=True)
            command = [haproxy_binary(), "-f", str(self.config_file), "-db"]
            self.balancer = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            threading.Thread(target=self._read_balancer, args=(self.balancer,), daemon=True).start()
            try:
                self._wait_balancer(timeout)
                return
            except _BalancerExited as exited:
                bind_failed = "cannot bind socket" in str(exited) or "Address already in use" in str(exited)
                if self.requested_port or not bind_failed or attempt == _BIND_TRIES - 1:
                    raise RuntimeError(str(exited)) from None

    def _read_balancer(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.balancer_output.append(line.rstrip("\n"))

    def _wait_balancer(self, timeout: float) -> None:
        assert self.balancer is not None
        deadline = time.monotonic() + timeout
        accepted = False
        while True:
            if self.balancer.poll() is not None:
                time.sleep(0.2)  # the reader thread takes the last lines
                raise _BalancerExited(
                    f"haproxy exited with {self.balancer.returncode}:\n" + "\n".join(self.balancer_output)
                )
            with contextlib.suppress(OSError):
                # every proxy UP, one connection accepted, and that probe's session over (so that it is counted
                # and the round robin moved on before a test takes its first count)
                if self._all_up() and (accepted or self._accepts()):
                    accepted = True
                    if self._frontend_idle():
                        return
            if time.monotonic() > deadline:
                self._stop_balancer()
                raise RuntimeError(
                    f"haproxy did not see every proxy UP in {timeout:.0f}s: {self.backend_status()}\n"
                    + "\n".join(self.balancer_output)
                )
            time.sleep(0.05)

    def _all_up(self) -> bool:
        stats = self.server_stats()
        return len(stats) == len(self.proxies) and all(
            # L4OK: a check has passed (not the state a server is assumed in before its first check)
            s["status"] == "UP" and s["check_status"] == "L4OK"
            for s in stats.values()
        )

    def _accepts(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def _frontend_idle(self) -> bool:
        """The frontend has taken a connection (the probe) and holds none now."""
        return any(r["svname"] == "FRONTEND" and r["scur"] == "0" and int(r["stot"] or 0) > 0 for r in self.stats())

    def stop(self) -> None:
        """The balancer first (no new connection goes to a stopping proxy), then every proxy at once; bounded:
        what does not stop in STOP_TIMEOUT is killed."""
        self._stop_balancer()
        running = [p for p in self.proxies if p.alive]
        for proxy in running:
            assert proxy.process is not None
            with contextlib.suppress(ProcessLookupError):
                proxy.process.terminate()
        for proxy in self.proxies:
            proxy.stop()
        for path in self._temp:
            shutil.rmtree(path, ignore_errors=True)

    def _stop_balancer(self) -> None:
        if self.balancer is None or self.balancer.poll() is not None:
            return
        self.balancer.terminate()  # SIGTERM: HAProxy's immediate stop (SIGUSR1 would wait for open streams)
        try:
            self.balancer.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.balancer.kill()
            self.balancer.wait(KILL_TIMEOUT)

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what clients use -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The balancer, as a proxy URL: `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def bundle(self) -> Path:
        """The CA bundle every proxy writes in the shared confdir: the system CAs plus the fleet's CA."""
        return (self.confdir / BUNDLE_NAME).resolve()

    @property
    def balancer_pid(self) -> int | None:
        return self.balancer.pid if self.balancer is not None else None

    def proxy_url(self, user: str | None = None, token: str | None = None) -> str:
        """The balancer's URL, with `user:token@` when given (proxy authentication)."""
        if user is None and token is None:
            return self.url
        userinfo = quote(user or "", safe="") + (f":{quote(token, safe='')}" if token is not None else "")
        return f"http://{userinfo}@127.0.0.1:{self.port}"

    def exports(self, user: str | None = None, token: str | None = None) -> dict[str, str]:
        """What the proxies print for a developer's shell (HTTPS_PROXY and every CA variable the addon knows),
        with HTTPS_PROXY pointing at the balancer."""
        return dict(m.groups() for line in self.export_lines(user, token) if (m := _EXPORT.match(line)))

    def client_env(
        self, user: str | None = None, token: str | None = None, base: dict[str, str] | None = None
    ) -> dict[str, str]:
        """A whole environment for a client process: `base` (default os.environ) without its proxy variables
        (NO_PROXY, HTTP_PROXY, ALL_PROXY, ..., in either case) and SSL_CERT_DIR, plus `exports()`."""
        source = dict(os.environ if base is None else base)
        kept = {k: v for k, v in source.items() if not k.lower().endswith("_proxy") and k not in _CLEARED}
        return kept | self.exports(user, token)

    def export_lines(self, user: str | None = None, token: str | None = None) -> list[str]:
        return shell_lines(self.proxy_url(user, token), self.bundle)  # the addon's own lines

    # --- what HAProxy sees ----------------------------------------------------------------------------------

    def stats(self) -> list[dict[str, str]]:
        """`show stat` from the stats socket: one row per frontend, backend and server (HAProxy's CSV)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            chunks = []
            for _ in range(10_000):  # bounded; the answer ends when HAProxy closes the connection
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        text = b"".join(chunks).decode()
        rows = [line for line in text.splitlines() if line.strip()]
        if not rows or not rows[0].startswith("# "):
            return []
        rows[0] = rows[0][2:]
        return list(csv.DictReader(rows))

    def server_stats(self) -> dict[str, dict[str, str]]:
        """The backend's servers by name (`status` UP/DOWN/..., `stot` connections served, `check_status`,
        `wretr` retries, `wredis` redispatches, ...)."""
        return {r["svname"]: r for r in self.stats() if r["pxname"] == BACKEND and r["svname"] not in _AGGREGATES}

    def backend_status(self) -> dict[str, str]:
        """Each proxy's state as HAProxy's health checks see it ({} when the stats socket does not answer)."""
        try:
            return {name: row["status"] for name, row in self.server_stats().items()}
        except OSError:
            return {}

    def served(self) -> dict[str, int]:
        """Connections HAProxy has handed each proxy so far (health checks not counted)."""
        return {name: int(row["stot"] or 0) for name, row in self.server_stats().items()}

    def wait_status(self, want: dict[str, str], timeout: float = 10.0) -> float:
        """Wait until the named proxies are in the given states (e.g. {"proxy1": "DOWN"}); returns the seconds
        it took. Raises TimeoutError after `timeout`."""
        began = time.monotonic()
        deadline = began + timeout
        while True:
            status = self.backend_status()
            if all(status.get(name, "").startswith(state) for name, state in want.items()):
                return time.monotonic() - began
            if time.monotonic() > deadline:
                raise TimeoutError(f"haproxy sees {status}, not {want}, after {timeout:.0f}s")
            time.sleep(0.05)


_AGGREGATES = ("FRONTEND", "BACKEND")


class _BalancerExited(RuntimeError):
    """HAProxy exited before it was ready."""


# --- scripts/fleet -----------------------------------------------------------------------------------------

STATE = ROOT / ".fleet"
LOCAL_DB = "aibridge"
_QUIET = re.compile(r"\] client (connect|disconnect)$")  # every health check logs both, twice a second
_PASTE = " Paste into a developer shell:"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/fleet",
        usage="scripts/fleet [--proxies N] [--port PORT] [--db URL] [--config TOML] [-- extra mitmdump args]",
        description="Run N bridge proxies (mitmdump -s addon/aibridge.py) on one CA (certs/) and one PostgreSQL"
        " audit database, behind HAProxy in TCP mode on 127.0.0.1:PORT: clients set HTTPS_PROXY to that one"
        " address. Prints what runs where and the lines to paste into a developer's shell, then runs until"
        " Ctrl-C or SIGTERM.",
        epilog="Without --db a local PostgreSQL cluster runs under .fleet/postgres (kept between runs, so the"
        " audit survives; tuned for speed: it survives a crash of the server, not of the machine) with the"
        " database aibridge. Arguments after -- go to every mitmdump, e.g. -- --set aibridge_metrics=0.",
    )
    parser.add_argument("--proxies", type=int, default=2, metavar="N", help="how many proxies (default 2)")
    parser.add_argument("--port", type=int, default=8080, help="the balancer's port on 127.0.0.1 (default 8080)")
    parser.add_argument("--db", metavar="URL", help="a postgresql:// URL for the audit (default: a local cluster)")
    parser.add_argument("--config", type=Path, metavar="TOML", help="the aibridge configuration file")
    return parser


def _running_postmaster(data: Path) -> int | None:
    """The port of a live server already on `data` (one another fleet started, or left when it was killed)."""
    try:
        fields = (data / "postmaster.pid").read_text().splitlines()
        pid, port = int(fields[0]), int(fields[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        psycopg.connect(f"postgresql://aibridge@127.0.0.1:{port}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError:
        return None
    return port


def _local_postgres(say: Callable[[str], None]) -> tuple[str, Callable[[], None]]:
    """The local cluster's URL for the database `aibridge` (created if missing), and how to stop it."""
    server = PostgresServer(STATE / "postgres", persistent=True)
    if (port := _running_postmaster(server.data)) is not None:
        say(f"PostgreSQL already runs on {server.data} (port {port}): using it, and leaving it running")
        admin, url = f"postgresql://aibridge@127.0.0.1:{port}/postgres", f"postgresql://aibridge@127.0.0.1:{port}"

        def stop() -> None:
            pass
    else:
        fresh = not (server.data / "PG_VERSION").exists()
        say(("creating" if fresh else "starting") + f" the local PostgreSQL cluster in {server.data} ...")
        server.start()
        admin, url = server.url(), server.url("").rstrip("/")
        stop = server.stop
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DB,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LOCAL_DB)))
                say(f"created the database {LOCAL_DB}")
    except BaseException:
        stop()
        raise
    return f"{url}/{LOCAL_DB}", stop


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    options = _parser().parse_args(argv)
    if options.proxies < 1:
        _parser().error("--proxies must be at least 1")
    if options.config is not None and not options.config.is_file():
        _parser().error(f"--config: no file {options.config}")

    write_lock = threading.Lock()

    def say(text: str) -> None:
        with write_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def relay(name: str, line: str) -> None:
        if _QUIET.search(line) or _EXPORT.match(line):
            return
        say(f"[{name}] {line.removesuffix(_PASTE)}")

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    stop_db: Callable[[], None] = lambda: None  # noqa: E731
    if options.db:
        db = options.db
    else:
        try:
            db, stop_db = _local_postgres(say)
        except (RuntimeError, OSError, psycopg.Error) as error:
            say(f"scripts/fleet: no local PostgreSQL: {error}")
            return 1
    fleet = Fleet(
        STATE / f"run-{options.port}",
        db,
        options.proxies,
        config=options.config,
        args=extra,
        port=options.port,
        confdir=ROOT / "certs",
        cwd=Path.cwd(),
        keep_lines=_KEEP_LINES,
        on_line=relay,
    )
    try:
        say(f"starting {options.proxies} proxies and HAProxy ...")
        fleet.start()
        say("")
        say(f"aibridge fleet up in {fleet.startup_seconds:.1f}s:")
        say(f"  audit    {masked(db)}" + ("" if options.db else f" (local cluster in {STATE / 'postgres'})"))
        for proxy in fleet.proxies:
            say(f"  {proxy.name:<8} 127.0.0.1:{proxy.port}  pid {proxy.pid}")
        say(f"  haproxy  {fleet.url}  pid {fleet.balancer_pid}  (config {fleet.config_file})")
        say(f"  CA       {fleet.confdir}")
        say("Paste into a developer shell:")
        for line in fleet.export_lines():
            say(line)
        say("Ctrl-C stops the fleet.")
        reported: set[str] = set()
        while not stopping.wait(1.0):  # runs until a signal, by design
            assert fleet.balancer is not None
            if fleet.balancer.poll() is not None:
                say(f"haproxy exited with {fleet.balancer.returncode}: stopping the fleet")
                return 1
            for proxy in fleet.proxies:
                if not proxy.alive and proxy.name not in reported:
                    reported.add(proxy.name)
                    assert proxy.process is not None
                    say(f"{proxy.name} (pid {proxy.pid}) exited with {proxy.process.returncode}")
            if len(reported) == len(fleet.proxies):
                say("every proxy exited: stopping the fleet")
                return 1
        say("stopping the fleet ...")
        return 0
    except RuntimeError as error:
        say(f"scripts/fleet: {error}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stop itself is not interrupted
        try:
            fleet.stop()
        finally:
            stop_db()
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
