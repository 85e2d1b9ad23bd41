"""Where the CLI's answers come from: the running proxy's endpoint, the audit file opened read-only, or
PostgreSQL.

All run the same `queries.run`, so they answer alike. For a file, the endpoint is tried first (a socket beside
the file); without a proxy, the file is attached read-only; when neither works, the message says why. A
`postgresql://` URL is queried directly, whatever proxies write to it.
"""

import json
import os
import socket
from pathlib import Path
from typing import Any, Protocol

import click

from addon.audit import queries
from addon.audit.duckfile import DuckReader, open_read_only
from addon.audit.endpoint import socket_path
from addon.audit.postgres import connect_reader
from addon.audit.store import AuditFileError, AuditFileLocked, StoreError, is_postgres, masked


class Source(Protocol):
    description: str

    def run(self, name: str, params: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None:
        """Let go of the file (a long-running reader, such as `aibridge web`, must not keep the proxy out)."""
        ...


class Live:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"live, through the proxy ({path})"

    def run(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(str(self.path))
            sock.sendall(json.dumps({"query": name, "params": params}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        if not data:
            raise click.ClickException(f"the proxy closed the connection on {self.path} without an answer")
        answer = json.loads(data)
        if not answer.get("ok"):
            raise click.ClickException(answer.get("error", "the proxy refused the query"))
        return answer["result"]

    def close(self) -> None:
        pass  # one connection per query


class Direct:
    """Queries run here, on the file attached read-only or on PostgreSQL."""

    def __init__(self, reader: queries.Reader, description: str, instance: str) -> None:
        self.description = description
        self._reader = reader
        self._instance = instance

    def run(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return queries.run(self._reader, name, params, instance=self._instance)
        except (queries.QueryError, StoreError) as e:
            raise click.ClickException(str(e)) from None

    def close(self) -> None:
        self._reader.close()  # type: ignore[attr-defined]  # DuckReader and the PostgreSQL reader both have it


def open_source(db: str) -> Source:
    if is_postgres(db):
        try:
            reader = connect_reader(db)
        except StoreError as e:
            raise click.ClickException(f"{e}. Check --db (or $AIBRIDGE_DB) and that the server runs.") from None
        return Direct(reader, f"from PostgreSQL ({masked(db)})", f"{os.uname().nodename}-postgresql")
    db_path = Path(db)
    sock = socket_path(db)
    if sock.exists():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(2)
                probe.connect(str(sock))
            return Live(sock)
        except OSError:
            pass  # a socket left behind by a proxy that is gone
    if not db_path.exists():
        raise click.ClickException(f"no audit file at {db_path} (and no proxy answering at {sock}); use --db")
    try:
        # the instance as the proxy's endpoint names its exports
        reader = DuckReader(open_read_only(db_path))
        return Direct(reader, f"from the file ({db_path}; no proxy running)", f"{os.uname().nodename}-{db_path.stem}")
    except AuditFileLocked as e:
        raise click.ClickException(
            f"{db_path} is held by {e.holder}, and no proxy query endpoint answers at {sock}. "
            "If that is the proxy, it predates live queries: restart it; otherwise close that process."
        ) from None
    except AuditFileError as e:
        raise click.ClickException(f"cannot open {db_path}: {e}") from None
