"""The audit file's read side: a fixed set of parameterised queries, shared by the CLI and the proxy's live
query endpoint, so both give the same answers. Results are plain JSON-able values (str, int, float, None,
lists and dicts), capped in size; no query takes SQL from its caller.

Times are ISO 8601 UTC strings. Money is integer micro-dollars. Listings page with an opaque `after` cursor
(keyset pagination: no gaps or repeats while rows are appended).
"""

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 50
USAGE_GROUPS: Final = {
    "user": "i.initiator",
    "model": "i.model",
    "client": "i.client",
    "provider": "i.provider_name",
    "day": "strftime(i.started_at AT TIME ZONE 'UTC', '%Y-%m-%d')",
}
JSON = dict[str, Any]
_SESSION_OF_START = "coalesce(i.client_session_id, i.thread_root_id::VARCHAR, i.id::VARCHAR)"
"""The `interceptions` view's session_id, over `interception_starts` (cheaper where ends are not needed)."""


class QueryError(ValueError):
    """A query the caller asked for wrongly: a bad filter, cursor or limit. The message says which."""


@dataclass(frozen=True, kw_only=True)
class Filters:
    user: str | None = None
    provider: str | None = None
    provider_name: str | None = None
    model: str | None = None
    client: str | None = None
    session: str | None = None
    since: str | None = None
    """ISO 8601 date or time (UTC when no offset is given)."""
    until: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> "Filters":
        data = data or {}
        names = {f.name for f in fields(cls)}
        if unknown := set(data) - names:
            raise QueryError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        if bad := [k for k, v in data.items() if v is not None and not isinstance(v, str)]:
            raise QueryError(f"filter(s) must be strings: {', '.join(bad)}")
        return cls(**data)

    def as_json(self) -> JSON:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def where(self, alias: str = "i", session_expr: str | None = None) -> tuple[str, list[Any]]:
        """A WHERE clause over the `interceptions` view (or, with `session_expr`, its start table)."""
        clauses, params = ["TRUE"], []
        for column, value in (
            (f"{alias}.initiator", self.user),
            (f"{alias}.provider", self.provider),
            (f"{alias}.provider_name", self.provider_name),
            (f"{alias}.model", self.model),
            (f"{alias}.client", self.client),
            (session_expr or f"{alias}.session_id", self.session),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append(f"{alias}.started_at >= ?")
            params.append(parse_time(self.since, "since"))
        if self.until is not None:
            clauses.append(f"{alias}.started_at < ?")
            params.append(parse_time(self.until, "until"))
        return " AND ".join(clauses), params


def parse_time(value: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"--{what}: {value!r} is not an ISO 8601 date or time (e.g. 2026-11-01 or 2026-11-01T09:30:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _limit(limit: int | None) -> int:
    limit = DEFAULT_LIMIT if limit is None else limit
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"--limit must be from 1 to {MAX_LIMIT}")
    return limit


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "hex") and type(value).__name__ == "UUID":
        return str(value)
    return value


def _rows(cursor: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[JSON]:
    result = cursor.execute(sql, list(params))
    names = [d[0] for d in result.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in result.fetchall()]


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([_iso(p) for p in parts]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise QueryError("--after: not a cursor this command printed") from None
    if not isinstance(parts, list) or len(parts) != size:
        raise QueryError("--after: not a cursor this command printed")
    return parts


# --- queries ------------------------------------------------------------------------------------------------


def sessions(
    db: duckdb.DuckDBPyConnection, filters: Filters, after: str | None = None, limit: int | None = None
) -> JSON:
    """Sessions, most recently active first; ended interceptions only (as the reference lists them)."""
    limit = _limit(limit)
    where, params = filters.where()
    page_filter = ""
    if after is not None:
        active, session = decode_cursor(after, 2)
        page_filter = "WHERE (last_active, session_id) < (?::TIMESTAMPTZ, ?)"
        params = [*params, parse_time(active, "after"), session]
    page = _rows(
        db,
        f"""
        WITH s AS (
            SELECT session_id, initiator AS user, arg_min(client, started_at) AS client,
                   list(DISTINCT model ORDER BY model) AS models,
                   list(DISTINCT provider_name ORDER BY provider_name) AS providers,
                   count(*) FILTER (WHERE thread_root_id IS NULL) AS threads,
                   count(*) AS interceptions,
                   min(started_at) AS started_at, max(ended_at) AS last_active
            FROM interceptions i WHERE {where} AND i.ended_at IS NOT NULL
            GROUP BY session_id, initiator)
        SELECT * FROM s {page_filter} ORDER BY last_active DESC, session_id DESC LIMIT {limit + 1}""",
        params,
    )
    more = len(page) > limit
    page = page[:limit]
    if page:
        _add_session_totals(db, page)
    cursor = encode_cursor(page[-1]["last_active"], page[-1]["session_id"]) if more else None
    return {"sessions": page, "next": cursor}


def _add_session_totals(db: duckdb.DuckDBPyConnection, page: list[JSON]) -> None:
    ids = [s["session_id"] for s in page]
    marks = ",".join("?" * len(ids))
    totals = {
        r["session_id"]: r
        for r in _rows(
            db,
            f"""
        WITH i AS (SELECT id, session_id FROM interceptions WHERE session_id IN ({marks}))
        SELECT i.session_id, coalesce(sum(t.input_tokens), 0)::BIGINT AS input_tokens,
               coalesce(sum(t.output_tokens), 0)::BIGINT AS output_tokens,
               coalesce(sum(t.cache_read_input_tokens), 0)::BIGINT AS cache_read_tokens,
               coalesce(sum(t.cache_write_input_tokens), 0)::BIGINT AS cache_write_tokens,
               sum(t.cost_micros)::BIGINT AS cost_micros,
               count(t.id) FILTER (WHERE t.cost_micros IS NULL) AS unpriced_rows
        FROM i LEFT JOIN token_usages t ON t.interception_id = i.id GROUP BY i.session_id""",
            ids,
        )
    }
    prompts = {
        r["session_id"]: r["prompt"]
        for r in _rows(
            db,
            f"""
        SELECT i.session_id, arg_max(p.prompt, p.created_at) AS prompt
        FROM interceptions i JOIN user_prompts p ON p.interception_id = i.id
        WHERE i.session_id IN ({marks}) GROUP BY i.session_id""",
            ids,
        )
    }
    for session in page:
        found = totals.get(session["session_id"], {})
        for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "unpriced_rows"):
            session[key] = found.get(key, 0)
        session["cost_micros"] = found.get("cost_micros")
        session["last_prompt"] = prompts.get(session["session_id"])


def session(db: duckdb.DuckDBPyConnection, session_id: str) -> JSON:
    """One session's threads in order, each interception with its prompt and agentic actions."""
    interceptions = _rows(
        db,
        """
        SELECT id, initiator AS user, provider_name, model, response_model, client, streaming, status, error,
               http_status, thread_parent_id, thread_root_id, started_at, ended_at
        FROM interceptions WHERE session_id = ? ORDER BY started_at, id LIMIT 5000""",
        [session_id],
    )
    if not interceptions:
        raise QueryError(f"no session {session_id!r}")
    ids = [i["id"] for i in interceptions]
    marks = ",".join("?" * len(ids))
    children: dict[str, dict[str, list[JSON]]] = {
        i["id"]: {"prompts": [], "tools": [], "thoughts": [], "usage": []} for i in interceptions
    }
    for kind, sql in (
        ("prompts", f"SELECT interception_id, prompt, created_at FROM user_prompts WHERE interception_id IN ({marks})"),
        (
            "tools",
            f"""SELECT interception_id, tool, server_url, provider_tool_call_id AS call_id, input, injected,
                             invocation_error AS error, metadata, created_at
                      FROM tool_usages WHERE interception_id IN ({marks})""",
        ),
        (
            "thoughts",
            f"""SELECT interception_id, content, metadata->>'source' AS source, created_at
                         FROM model_thoughts WHERE interception_id IN ({marks})""",
        ),
        (
            "usage",
            f"""SELECT interception_id, provider_response_id, input_tokens, output_tokens,
                             cache_read_input_tokens AS cache_read_tokens,
                             cache_write_input_tokens AS cache_write_tokens, cost_micros, created_at
                      FROM token_usages WHERE interception_id IN ({marks})""",
        ),
    ):
        for row in _rows(db, sql + " ORDER BY created_at", ids):
            if kind == "tools" and isinstance(row.get("metadata"), str):
                row["metadata"] = json.loads(row["metadata"])
            children[row.pop("interception_id")][kind].append(row)
    threads: list[JSON] = []
    by_root: dict[str, JSON] = {}
    for interception in interceptions:
        interception.update(children[interception["id"]])
        root = interception["thread_root_id"] or interception["id"]
        if root not in by_root:
            by_root[root] = {"root": root, "interceptions": []}
            threads.append(by_root[root])
        by_root[root]["interceptions"].append(interception)
    for thread in threads:
        first = thread["interceptions"][0]
        thread["prompt"] = next((p["prompt"] for i in thread["interceptions"] for p in i["prompts"]), None)
        thread["started_at"] = first["started_at"]
    usage = [u for i in interceptions for u in i["usage"]]
    return {
        "session_id": session_id,
        "user": interceptions[0]["user"],
        "client": interceptions[0]["client"],
        "started_at": interceptions[0]["started_at"],
        "ended_at": max((i["ended_at"] for i in interceptions if i["ended_at"]), default=None),
        "totals": _totals(usage),
        "threads": threads,
    }


def _totals(usage: list[JSON]) -> JSON:
    costs = [u["cost_micros"] for u in usage if u["cost_micros"] is not None]
    return {
        "input_tokens": sum(u["input_tokens"] for u in usage),
        "output_tokens": sum(u["output_tokens"] for u in usage),
        "cache_read_tokens": sum(u["cache_read_tokens"] for u in usage),
        "cache_write_tokens": sum(u["cache_write_tokens"] for u in usage),
        "cost_micros": sum(costs) if costs else None,
        "unpriced_rows": len(usage) - len(costs),
    }


def interceptions(
    db: duckdb.DuckDBPyConnection, filters: Filters, after: str | None = None, limit: int | None = None
) -> JSON:
    """Interceptions, newest first, with their token totals and cost."""
    limit = _limit(limit)
    where, params = filters.where()
    if after is not None:
        started, ident = decode_cursor(after, 2)
        where += " AND (i.started_at, i.id) < (?::TIMESTAMPTZ, ?::UUID)"
        params = [*params, parse_time(started, "after"), ident]
    page = _rows(
        db,
        f"""
        SELECT i.id, i.session_id, i.initiator AS user, i.client, i.provider_name, i.model, i.streaming, i.status,
               i.error, i.http_status, i.started_at, i.ended_at
        FROM interceptions i WHERE {where} ORDER BY i.started_at DESC, i.id DESC LIMIT {limit + 1}""",
        params,
    )
    more = len(page) > limit
    page = page[:limit]
    if page:
        ids = [r["id"] for r in page]
        sums = {
            r["interception_id"]: r
            for r in _rows(
                db,
                f"""
            SELECT interception_id, sum(input_tokens)::BIGINT AS input_tokens,
                   sum(output_tokens)::BIGINT AS output_tokens,
                   sum(cache_read_input_tokens)::BIGINT AS cache_read_tokens,
                   sum(cache_write_input_tokens)::BIGINT AS cache_write_tokens, sum(cost_micros)::BIGINT AS cost_micros
            FROM token_usages WHERE interception_id IN ({",".join("?" * len(ids))}) GROUP BY interception_id""",
                ids,
            )
        }
        for row in page:
            found = sums.get(row["id"], {})
            for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
                row[key] = found.get(key) or 0
            row["cost_micros"] = found.get("cost_micros")
    cursor = encode_cursor(page[-1]["started_at"], page[-1]["id"]) if more else None
    return {"interceptions": page, "next": cursor}


def distinct(db: duckdb.DuckDBPyConnection, column: str, filters: Filters) -> JSON:
    """`clients` or `models`: each value with its interception count and last use."""
    if column not in ("client", "model"):
        raise QueryError(f"cannot list {column}")
    where, params = filters.where()
    rows = _rows(
        db,
        f"""
        SELECT i.{column} AS name, count(*) AS interceptions, max(i.started_at) AS last_seen
        FROM interceptions i WHERE {where} GROUP BY i.{column} ORDER BY interceptions DESC, name LIMIT {MAX_LIMIT}""",
        params,
    )
    return {f"{column}s": rows}


def usage(db: duckdb.DuckDBPyConnection, by: str, filters: Filters) -> JSON:
    """Tokens and cost grouped by user, model, client, provider or day, with the cache hit ratio."""
    if by not in USAGE_GROUPS:
        raise QueryError(f"--by must be one of {', '.join(USAGE_GROUPS)}")
    where, params = filters.where(session_expr=_SESSION_OF_START)
    rows = _rows(
        db,
        f"""
        SELECT {USAGE_GROUPS[by]} AS key, count(DISTINCT i.id) AS interceptions,
               sum(t.input_tokens)::BIGINT AS input_tokens, sum(t.output_tokens)::BIGINT AS output_tokens,
               sum(t.cache_read_input_tokens)::BIGINT AS cache_read_tokens,
               sum(t.cache_write_input_tokens)::BIGINT AS cache_write_tokens,
               sum(t.cost_micros)::BIGINT AS cost_micros,
               count(*) FILTER (WHERE t.cost_micros IS NULL) AS unpriced_rows
        FROM token_usages t JOIN interception_starts i ON i.id = t.interception_id
        WHERE {where}
        GROUP BY ALL ORDER BY cost_micros DESC NULLS LAST, input_tokens DESC LIMIT {MAX_LIMIT}""",
        params,
    )
    for row in rows:
        cached = row["cache_read_tokens"] or 0
        total_input = (row["input_tokens"] or 0) + cached + (row["cache_write_tokens"] or 0)
        row["cache_hit_ratio"] = round(cached / total_input, 4) if total_input else None
    return {"by": by, "rows": rows}


def tail(db: duckdb.DuckDBPyConnection, after: str | None = None, limit: int | None = None) -> JSON:
    """Interceptions as they end, oldest first from the cursor (the last ten minutes without one)."""
    limit = _limit(limit)
    if after is not None:
        ended, ident = decode_cursor(after, 2)
        where, params = "(i.ended_at, i.id) > (?::TIMESTAMPTZ, ?::UUID)", [parse_time(ended, "after"), ident]
    else:
        where, params = "i.ended_at >= now() - INTERVAL 10 MINUTE", []
    rows = _rows(
        db,
        f"""
        SELECT i.id, i.initiator AS user, i.client, i.provider_name, i.model, i.streaming, i.status, i.http_status,
               i.error, i.started_at, i.ended_at,
               (SELECT sum(t.input_tokens + t.cache_read_input_tokens + t.cache_write_input_tokens)::BIGINT
                FROM token_usages t WHERE t.interception_id = i.id) AS input_tokens,
               (SELECT sum(t.output_tokens)::BIGINT FROM token_usages t WHERE t.interception_id = i.id)
                   AS output_tokens,
               (SELECT sum(t.cost_micros)::BIGINT FROM token_usages t WHERE t.interception_id = i.id) AS cost_micros
        FROM interceptions i WHERE i.ended_at IS NOT NULL AND {where} ORDER BY i.ended_at, i.id LIMIT {limit}""",
        params,
    )
    cursor = encode_cursor(rows[-1]["ended_at"], rows[-1]["id"]) if rows else after
    return {"interceptions": rows, "next": cursor}


# --- copies for other tools ---------------------------------------------------------------------------------

EXPORT_TABLES: Final = {
    "interceptions": "started_at",
    "token_usages": "created_at",
    "user_prompts": "created_at",
    "tool_usages": "created_at",
    "model_thoughts": "created_at",
}


def snapshot(db: duckdb.DuckDBPyConnection, path: str) -> JSON:
    """A consistent copy of the whole audit file that any DuckDB (1.5 or later) can open, written atomically."""
    target = Path(path).resolve()
    if target.suffix == ".tmp":
        raise QueryError("the snapshot path must not end in .tmp")
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    source = db.execute("SELECT current_database()").fetchall()[0][0]
    db.execute(f"ATTACH '{_sql_string(str(tmp))}' AS aibridge_snapshot (STORAGE_VERSION 'v1.5.0')")
    try:
        db.execute(f"COPY FROM DATABASE {source} TO aibridge_snapshot")
    finally:
        db.execute("DETACH aibridge_snapshot")
    os.replace(tmp, target)
    return {"snapshot": str(target), "bytes": target.stat().st_size}


def export_parquet(db: duckdb.DuckDBPyConnection, directory: str, instance: str, until: str | None = None) -> JSON:
    """Closed UTC days (before today, or before `until`) as Parquet, one file per table, day and instance:
    `DIR/<table>/date=YYYY-MM-DD/<instance>.parquet`. Days already exported are skipped, so it can run on a
    schedule; `read_parquet('DIR/<table>/**/*.parquet', hive_partitioning = true)` reads them back."""
    if not instance.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise QueryError("the instance name must be letters, digits, '.', '_' or '-'")
    end = parse_time(until, "until") if until else datetime.now(UTC)
    end_day = end.astimezone(UTC).date()
    written, skipped = [], 0
    for table, column in EXPORT_TABLES.items():
        days = [
            r[0]
            for r in db.execute(
                f"SELECT DISTINCT ({column} AT TIME ZONE 'UTC')::DATE AS day FROM {table} "
                f"WHERE ({column} AT TIME ZONE 'UTC')::DATE < ? ORDER BY day",
                [end_day],
            ).fetchall()
        ]
        for day in days:
            target = Path(directory) / table / f"date={day.isoformat()}" / f"{instance}.parquet"
            if target.exists():
                skipped += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            db.execute(
                f"COPY (SELECT * FROM {table} WHERE ({column} AT TIME ZONE 'UTC')::DATE = ? ORDER BY {column}) "
                f"TO '{_sql_string(str(tmp))}' (FORMAT parquet)",
                [day],
            )
            os.replace(tmp, target)
            written.append(str(target))
    return {"written": written, "skipped": skipped}


def _sql_string(value: str) -> str:
    return value.replace("'", "''")


# --- one entry point for the CLI and the live endpoint ------------------------------------------------------


def run(db: duckdb.DuckDBPyConnection, name: str, params: JSON | None = None, *, instance: str = "aibridge") -> JSON:
    """Run the named query with JSON parameters; a QueryError says what was wrong with them."""
    params = dict(params or {})
    filters = Filters.from_json(params.pop("filters", None))
    after, limit = params.pop("after", None), params.pop("limit", None)
    if after is not None and not isinstance(after, str):
        raise QueryError("--after must be a cursor string")
    match name:
        case "sessions":
            result = sessions(db, filters, after, limit)
        case "session":
            result = session(db, _required(params, "session_id"))
        case "interceptions":
            result = interceptions(db, filters, after, limit)
        case "clients" | "models":
            result = distinct(db, name[:-1], filters)
        case "usage":
            result = usage(db, params.pop("by", "model"), filters)
        case "tail":
            result = tail(db, after, limit)
        case "snapshot":
            result = snapshot(db, _required(params, "path"))
        case "export":
            result = export_parquet(
                db, _required(params, "directory"), params.pop("instance", None) or instance, params.pop("until", None)
            )
        case _:
            raise QueryError(f"unknown query {name!r}")
    if params:
        raise QueryError(f"unexpected parameter(s) for {name}: {', '.join(sorted(params))}")
    return result


def _required(params: JSON, key: str) -> str:
    value = params.pop(key, None)
    if not isinstance(value, str) or not value:
        raise QueryError(f"{key} is required")
    return value
