"""A real, throwaway PostgreSQL server for tests: its own cluster (`initdb`) on 127.0.0.1 at a random port,
tuned for speed rather than durability, and the fixtures `postgres_server` (one per session, so one per xdist
worker) and `pg_url` (a fresh database per test). The binaries come from the Debian package `postgresql`,
which scripts/setup installs."""

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

USER = "aibridge"  # the cluster's superuser, the one every URL names (trust authentication: no password)
READY_TIMEOUT = 30.0  # seconds for a started server to accept connections
STOP_TIMEOUT = 30.0  # seconds for a fast shutdown before the server is killed instead
_COMMAND_TIMEOUT = 120.0  # seconds for initdb, useradd and pg_config
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; the socket's name itself is `.s.PGSQL.<port>`
_FRESH_PORT_TRIES = 5  # a random port another process took between our choosing it and the server binding it
_SETTINGS = {
    # A test's data need not survive a power cut: skip what only makes it durable against one. Commits still
    # reach the OS before they return (synchronous_commit stays on), so a killed server keeps every commit, as a
    # real one does.
    "fsync": "off",
    "full_page_writes": "off",
    # Room for several connection pools at once.
    "max_connections": "300",
    "shared_buffers": "64MB",
}


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<N>/bin with `initdb` and `postgres` in it, else `pg_config --bindir`."""
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        with contextlib.suppress(ValueError):
            candidates.append((float(bindir.parent.name), bindir))
    for _, bindir in sorted(candidates, reverse=True):
        if _has_server(bindir):
            return bindir
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=True
            )
            bindir = Path(done.stdout.strip())
            if _has_server(bindir):
                return bindir
    raise RuntimeError(
        "no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or `pg_config --bindir`:"
        " run scripts/setup, or apt-get install postgresql"
    )


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))


class PostgresServer:
    """One cluster in `root/data`, its log in `root/postgres.log`. The port is chosen on the first `start()` and
    kept, so a test can take the server away (`stop()`, `kill()`) and bring it back at the same URL.

    `persistent`: the cluster is kept for the next run (scripts/fleet's local audit database): it lives in
    `root/data` whoever runs it (when we are root, `root` is handed to the server's user rather than a
    throwaway directory taken instead), an existing one is started as it is, and `close()` leaves it."""

    def __init__(self, root: Path, *, persistent: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.bindir = find_bindir()
        self.port: int | None = None
        self.log = self.root / "postgres.log"
        self._temp: list[Path] = []  # directories of our own making, removed by close()
        self._process: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root: then it runs as an unprivileged system user.
        self._user = _server_user() if os.geteuid() == 0 else None
        home = self.root
        if self._user and not _reachable(self.root, self._user):
            if persistent:
                self._own(self.root)
                if not _reachable(self.root, self._user):
                    raise RuntimeError(
                        f"the PostgreSQL server's user {self._user.pw_name} cannot enter {self.root}"
                        " (a directory above it is closed to others): choose a root it can reach"
                    )
            else:
                # e.g. under pytest's /tmp/pytest-of-root, which only root may enter
                home = self._mkdtemp()
        self.data = home / "data"
        self.sockets = home / "s"
        if len(str(self.sockets / ".s.PGSQL.65535")) > _SOCKET_PATH_MAX:
            self.sockets = self._mkdtemp()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise RuntimeError("the server has no port before its first start()")
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        """Create the cluster the first time, then start the server and wait until it accepts connections."""
        if self.running:
            return
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        self._own(self.sockets)
        if self.port is not None:
            self._launch(self.port)
            return
        for attempt in range(_FRESH_PORT_TRIES):
            port = _free_port()
            try:
                self._launch(port)
            except _PortTaken:
                if attempt == _FRESH_PORT_TRIES - 1:
                    raise
                continue
            self.port = port
            return

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect the clients, roll back, write a checkpoint); killed if it hangs."""
        if not self.running:
            self._process = None
            return
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self._process = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crash would; the next start() recovers from the WAL."""
        if self._process is None:
            return
        postmaster = self._process.pid
        # Stopped first so it forks no more; its children are not in its process group (each calls setsid).
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGSTOP)
        doomed = [postmaster, *_children(postmaster)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Reaped here: an unreaped postmaster's pid in postmaster.pid makes the next start see a live server.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=STOP_TIMEOUT)
        # A backend still attached to the old shared memory would make the next start refuse to run.
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(_alive(pid) for pid in doomed):
            time.sleep(0.02)
        self._process = None

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name` if it exists, disconnecting whoever is still connected to it."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        """Stop the server and remove the cluster (unless persistent) and the directories made for it (the log
        stays in root)."""
        try:
            self.stop()
        finally:
            if not self.persistent:
                shutil.rmtree(self.data, ignore_errors=True)
            shutil.rmtree(self.sockets, ignore_errors=True)
            for path in self._temp:
                shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _initdb(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)  # what a failed initdb left
        self.data.mkdir(mode=0o700, parents=True)
        self._own(self.data)
        command = [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER]
        command += ["--encoding", "UTF8", "--no-sync"]
        # C.UTF-8 is built into glibc 2.35+; where it is not, the plain C locale.
        for locale in ("C.UTF-8", "C"):
            done = self._run([*command, "--locale", locale])
            if done.returncode == 0:
                return
            shutil.rmtree(self.data)
            self.data.mkdir(mode=0o700)
            self._own(self.data)
        raise RuntimeError(f"initdb failed:\n{done.stdout}")

    def _launch(self, port: int) -> None:
        command = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(port)]
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.sockets), **_SETTINGS}
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # not in our process group: a Ctrl-C in the terminal is for pytest
                **self._as_user(),
            )
        url = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._process.poll() is not None:
                self._process = None
                said = self.log.read_bytes()[start:].decode(errors="replace")
                if re.search(r"could not bind|could not create listen socket|Address already in use", said):
                    raise _PortTaken(said)
                raise RuntimeError(f"postgres exited on start (log {self.log}):\n{said[-4000:]}")
            try:
                psycopg.connect(url, connect_timeout=2).close()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"postgres did not accept connections in {READY_TIMEOUT:.0f}s (log {self.log})"
                    ) from error
                time.sleep(0.05)

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            **self._as_user(),
        )

    def _as_user(self) -> dict[str, Any]:
        """Popen's switch to the server's user when we are root, so that the Popen is the postmaster itself. Not
        runuser, which forks and waits (and stops itself when its child is stopped, as kill() does)."""
        if self._user is None:
            return {}
        groups = [g.gr_gid for g in grp.getgrall() if self._user.pw_name in g.gr_mem]
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": groups}

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _mkdtemp(self) -> Path:
        # short, under /tmp: it holds the server's Unix socket
        path = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
        self._temp.append(path)
        self._own(path)
        return path


class _PortTaken(RuntimeError):
    """The server could not listen on the port it was given."""


def _server_user() -> pwd.struct_passwd:
    """The Debian package's `postgres` user, else a system user of our own."""
    for name in ("postgres", "aibridge-pg"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "aibridge-pg"],
        check=True,
        capture_output=True,
        timeout=_COMMAND_TIMEOUT,
    )
    return pwd.getpwnam("aibridge-pg")


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may enter every directory down to `path` and write in it."""
    gids = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}

    def may(path: Path, bits: int) -> bool:
        st = path.stat()
        if st.st_uid == user.pw_uid:
            mode = st.st_mode >> 6
        elif st.st_gid in gids:
            mode = st.st_mode >> 3
        else:
            mode = st.st_mode
        return mode & bits == bits

    path = path.resolve()
    return all(may(parent, stat.S_IXOTH) for parent in path.parents) and may(path, stat.S_IXOTH | stat.S_IWOTH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_stat(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat from the state on (state, ppid, pgrp, ...), None once the process is gone."""
    try:
        # pid (comm) state ...: comm may hold spaces and parentheses, so split after the last ")"
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _children(ppid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(entry.name)) and int(fields[1]) == ppid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    """Running: not gone, nor a zombie (a killed orphan, until its new parent reaps it; it holds no shared memory)."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (under xdist, one per worker)."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database of the test's own, dropped after it."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.start()  # back, if the test took it away
    postgres_server.drop_database(name)
