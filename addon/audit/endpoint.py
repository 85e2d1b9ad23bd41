"""The proxy's live query endpoint, so the CLI can read the audit while the proxy holds the file.

DuckDB lets no other process open a file another process has open, not even read-only. So the proxy serves
the fixed queries of `queries.run` on a Unix socket beside the audit file (`<file>.sock`, mode 0600: only the
proxy's own user can connect). One JSON request per connection: `{"query": name, "params": {...}}`, answered
with `{"ok": true, "result": ...}` or `{"ok": false, "error": message}`. Each query runs in a worker thread on
its own cursor, is interrupted after QUERY_TIMEOUT seconds, and returns capped pages, so no query can stall
the proxy or its writer.
"""

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import duckdb

from addon.audit import queries
from addon.audit.duckfile import DuckReader
from addon.audit.store import StoreError

logger = logging.getLogger(__name__)

QUERY_TIMEOUT: Final = 20.0
MAX_REQUEST: Final = 64 * 1024


def socket_path(db_path: str) -> Path:
    return Path(db_path).resolve().with_name(Path(db_path).name + ".sock")


class QueryEndpoint:
    def __init__(self, connect: Callable[[], DuckReader], db_path: str) -> None:
        self._connect = connect
        self.path = socket_path(db_path)
        self._instance = f"{os.uname().nodename}-{Path(db_path).stem}"
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        if len(str(self.path)) > 100:
            logger.warning("aibridge: %s is too long a path for a Unix socket; live queries are off", self.path)
            return
        self.path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)  # the socket is created 0600
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path), limit=MAX_REQUEST)
        except OSError as e:
            logger.warning("aibridge: cannot serve live queries on %s: %s", self.path, e)
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("query"), str):
                    raise ValueError('expected {"query": name, "params": {...}}')
                result = await asyncio.to_thread(self._run, request["query"], request.get("params") or {})
                answer = {"ok": True, "result": result}
            except (ValueError, duckdb.Error, StoreError) as e:  # QueryError is a ValueError
                answer = {"ok": False, "error": str(e)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _run(self, name: str, params: dict) -> dict:
        reader = self._connect()
        timer = threading.Timer(QUERY_TIMEOUT, reader.db.interrupt)
        timer.start()
        try:
            return queries.run(reader, name, params, instance=self._instance)
        except duckdb.InterruptException:
            raise queries.QueryError(f"the query took longer than {QUERY_TIMEOUT:.0f} s and was stopped") from None
        finally:
            timer.cancel()
            reader.close()
