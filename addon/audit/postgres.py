"""The audit in PostgreSQL: one store for a fleet of proxies, and for the CLI that reads what they all wrote.

The writer thread has a connection of its own and appends each batch with one `COPY` per table in one
transaction. A batch whose `COPY` fails on its data (a NUL character PostgreSQL's text cannot hold, text that is
not valid UTF-8), or on rows an earlier try already wrote (its acknowledgement lost with the connection), is
written again row by row, `ON CONFLICT DO NOTHING`, text made storable and a row that still fails dropped with
a logged error: one bad row never holds the others back. A connection that breaks is opened anew on the next
try, and the database is migrated whenever the writer (re)connects. Reads (lineage lookups, the start-up spend)
take a connection from a small pool.
"""

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import duckdb
import psycopg
import psycopg_pool
from psycopg_pool import ConnectionPool, PoolTimeout

from addon.audit import retention
from addon.audit.dialect import POSTGRES
from addon.audit.duckfile import open_database
from addon.audit.events import JSON_COLUMNS, TABLE_COLUMNS
from addon.audit.schema import migrate_postgres
from addon.audit.store import AuditFileError, StoreError, masked

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 5
"""Seconds to wait for a connection: the writer retries after it, and a read gives up."""
QUERY_TIMEOUT_MS: Final = 20_000
"""The CLI's queries are stopped after this long, as on the DuckDB file's live endpoint."""
_CONNECT: Final = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "aibridge"}


def connect(url: str, *, autocommit: bool = False, read_only: bool = False) -> psycopg.Connection[Any]:
    """A connection in UTC (times come back as the DuckDB file gives them); StoreError when there is none."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **_CONNECT)  # type: ignore[arg-type]
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to {masked(url)}: {_first_line(e)}") from None
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        if read_only:
            cur.execute(f"SET statement_timeout = {QUERY_TIMEOUT_MS}")
            cur.execute("SET default_transaction_read_only = on")
    if not autocommit:
        conn.commit()
    return conn


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _placeholders(sql: str) -> str:
    """`queries`' `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresReader:
    """`queries.Reader` over a psycopg connection in autocommit (each statement reads one snapshot)."""

    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(_placeholders(sql), list(params))
                names = [c.name for c in cur.description or ()]
                return names, cur.fetchall()
        except psycopg.errors.QueryCanceled:
            raise StoreError(f"the query took longer than {QUERY_TIMEOUT_MS // 1000} s and was stopped") from None
        except psycopg.Error as e:
            raise StoreError(_first_line(e)) from None

    @contextlib.contextmanager
    def as_duckdb(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Every table copied, from one snapshot of the database, into a temporary DuckDB file."""
        with tempfile.TemporaryDirectory(prefix="aibridge-copy-") as tmp:
            duck = open_database(str(Path(tmp) / "audit.duckdb"))
            try:
                with self.conn.transaction():
                    self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    self.conn.execute("SET LOCAL statement_timeout = 0")  # a copy of everything may take a while
                    for table, columns in TABLE_COLUMNS.items():
                        self._copy_table(duck, Path(tmp) / f"{table}.csv", table, ", ".join(columns))
                yield duck
            finally:
                duck.close()

    def _copy_table(self, duck: duckdb.DuckDBPyConnection, csv: Path, table: str, columns: str) -> None:
        sql = f"COPY (SELECT {columns} FROM {table}) TO STDOUT (FORMAT csv)"
        with self.conn.cursor() as cur, csv.open("wb") as out, cur.copy(sql) as copy:
            for chunk in copy:
                out.write(chunk)
        # PostgreSQL writes NULL as nothing and an empty string as "": read them back as such
        duck.execute(
            f"COPY {table} ({columns}) FROM '{str(csv).replace(chr(39), chr(39) * 2)}' "
            "(FORMAT csv, HEADER false, AUTO_DETECT false, ALLOW_QUOTED_NULLS false)"
        )

    def close(self) -> None:
        self.conn.close()


def connect_reader(url: str) -> PostgresReader:
    """A read-only reader for the CLI: statements stopped after QUERY_TIMEOUT_MS."""
    return PostgresReader(connect(url, autocommit=True, read_only=True))


class PostgresStore:
    """The writer's side of a PostgreSQL audit (`store.Store`)."""

    def __init__(self, url: str) -> None:
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            reason = _first_line(e).replace(url, masked(url))  # libpq quotes the URL, password and all
            raise AuditFileError(f"not a PostgreSQL URL ({reason})") from None
        self.path = url
        self.target = masked(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self.dropped_rows = 0
        """Rows PostgreSQL refused even when written one by one."""
        self._pool = ConnectionPool(
            url,
            min_size=0,
            max_size=4,
            kwargs=_CONNECT,
            configure=_utc,
            timeout=CONNECT_TIMEOUT,
            name="aibridge-audit",
            open=True,
        )
        try:
            self._writer_connection()  # migrated before the first write; when down, the writer's retries do it
        except StoreError as e:
            logger.warning("aibridge: %s; audit records are kept and retried until it answers", e)

    def append(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        conn = self._writer_connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                for table, values in rows.items():
                    with cur.copy(f"COPY {table} ({', '.join(TABLE_COLUMNS[table])}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
            return
        except psycopg.OperationalError as e:
            self._reset()
            raise StoreError(_first_line(e)) from None
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError):
            pass  # written again below, row by row
        except psycopg.Error as e:
            raise StoreError(_first_line(e)) from None
        try:
            self._insert_each(conn, rows)
        except psycopg.OperationalError as e:
            self._reset()
            raise StoreError(_first_line(e)) from None
        except psycopg.Error as e:
            raise StoreError(_first_line(e)) from None

    def _insert_each(self, conn: psycopg.Connection[Any], rows: dict[str, list[tuple[Any, ...]]]) -> None:
        with conn.transaction():
            for table, values in rows.items():
                columns = TABLE_COLUMNS[table]
                json_at = [i for i, c in enumerate(columns) if c in JSON_COLUMNS]
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
                    "ON CONFLICT DO NOTHING"
                )
                for row in values:
                    try:
                        with conn.transaction():
                            conn.execute(sql, storable(row, json_at))
                    except (psycopg.DataError, psycopg.IntegrityError) as e:
                        self.dropped_rows += 1
                        logger.error(
                            "aibridge: an audit row of %s was refused by PostgreSQL: %s", table, _first_line(e)
                        )

    def purge_batch(self, below: UUID, batch: int) -> int:
        conn = self._writer_connection()

        def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            cur = conn.execute(_placeholders(sql), list(params))
            return cur.fetchall() if cur.description else []

        try:
            with conn.transaction():
                return retention.purge_batch(run, below, batch)
        except psycopg.OperationalError as e:
            self._reset()
            raise StoreError(_first_line(e)) from None
        except psycopg.Error as e:
            raise StoreError(_first_line(e)) from None

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._closed:
            raise StoreError("the audit store is closed")
        try:
            with self._pool.connection() as conn:
                return conn.execute(_placeholders(sql), list(params)).fetchall()
        except (PoolTimeout, psycopg_pool.PoolClosed):
            raise StoreError(f"no connection to {self.target} within {CONNECT_TIMEOUT} s") from None
        except psycopg.Error as e:
            raise StoreError(_first_line(e)) from None

    def reader(self) -> PostgresReader:
        return connect_reader(self.path)

    def close(self) -> None:
        self._closed = True
        self._reset()
        self._pool.close()

    def _writer_connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreError("the audit store is closed")
        if self._conn is None or self._conn.closed:
            conn = connect(self.path)
            try:
                migrate_postgres(conn)
            except psycopg.Error as e:
                conn.close()
                raise StoreError(f"cannot migrate {self.target}: {_first_line(e)}") from None
            self._conn = conn
        return self._conn

    def _reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


def _utc(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


def storable(row: tuple[Any, ...], json_at: Sequence[int]) -> tuple[Any, ...]:
    """A row PostgreSQL can hold: NUL characters (which its text cannot hold, in JSON as `\\u0000` neither) and
    lone surrogates (not UTF-8) become U+FFFD."""
    values = list(row)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            continue
        if i in json_at and "\\u0000" in value:
            value = json.dumps(_clean(json.loads(value)), ensure_ascii=False, separators=(",", ":"))
        values[i] = _clean(value)
    return tuple(values)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
