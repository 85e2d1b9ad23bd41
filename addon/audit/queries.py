"""The audit's read side: a fixed set of parameterised queries, shared by the CLI and the proxy's live query
endpoint, written once for both stores (a DuckDB file, PostgreSQL: `dialect` holds where they differ), so all
give the same answers. Results are plain JSON-able values (str, int, float, None,
lists and dicts), capped in size; no query takes SQL from its caller.

Times are ISO 8601 UTC strings. Money is integer micro-dollars. Listings page with an opaque `after` cursor
(keyset pagination: a row never shows twice while rows are appended; `interceptions` pages by start time and
misses nothing; a session that becomes active again after its page was read moves ahead of the cursor).
"""

import base64
import json
import os
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import duckdb

from addon.audit.dialect import Dialect

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 50
USAGE_GROUPS: Final = ("user", "model", "client", "provider", "day", "repo", "branch", "agent")
CACHE_GROUPS: Final = ("session", "user", "model", "client", "repo", "branch", "agent")
SESSION_SORTS: Final = ("last_active", "cost", "tokens")
JSON = dict[str, Any]
_SESSION_OF_START = "coalesce(i.client_session_id, i.thread_root_id::VARCHAR, i.id::VARCHAR)"
"""The `interceptions` view's session_id, over `interception_starts` (cheaper where ends are not needed)."""


def _cost_sql(sums: str) -> str:
    """The cost of what `sums` (a per-key aggregate of token usages with `cost_micros` and `unpriced_rows`, or no
    row at all) adds up: NULL only when there was usage and none of it could be priced. Nothing used costs 0."""
    return (
        f"CASE WHEN coalesce({sums}.unpriced_rows, 0) = 0 THEN coalesce({sums}.cost_micros, 0) "
        f"ELSE {sums}.cost_micros END"
    )


_USAGE_KEYS: Final = {
    "user": "i.initiator",
    "model": "i.model",
    "client": "i.client",
    "provider": "i.provider_name",
    "repo": "i.repository",
    "branch": "i.branch",
    "agent": "i.agent",
}
_FIRST_WINDOW: Final = timedelta(hours=1)
"""`sessions` looks for its page among the interceptions that ended this long before the newest first, then
widens the window until the page is full (or the window holds everything)."""


class QueryError(ValueError):
    """A query the caller asked for wrongly: a bad filter, cursor or limit. The message says which."""


class Reader(Protocol):
    """A store's read side, on a connection of its own: rows of a `?`-parameterised statement."""

    dialect: Dialect

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows."""
        ...

    def as_duckdb(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """The audit as a DuckDB database (the store itself, or a consistent copy of it), for `snapshot` and
        `export`, which write what DuckDB writes."""
        ...


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
    prompt: str | None = None
    """Text the interception's prompt contains, in any case."""
    repository: str | None = None
    branch: str | None = None
    agent: str | None = None

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
            (f"{alias}.repository", self.repository),
            (f"{alias}.branch", self.branch),
            (f"{alias}.agent", self.agent),
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
        if self.prompt:
            # strpos, not LIKE: the text is taken literally (no wildcards to escape), alike in both stores
            clauses.append(
                f"{alias}.id IN (SELECT interception_id FROM user_prompts WHERE strpos(lower(prompt), lower(?)) > 0)"
            )
            params.append(self.prompt)
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


def _rows(db: Reader, sql: str, params: Sequence[Any] = ()) -> list[JSON]:
    names, rows = db.fetch(sql, list(params))
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in rows]


def _one(db: Reader, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    return db.fetch(sql, list(params))[1][0]


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


def _position(after: str, key_is_uuid: bool) -> tuple[datetime, str]:
    """A listing's cursor: (a time, then a session id, or an interception id with `key_is_uuid`). A cursor of
    another listing, or with parts that are not strings, is refused like any bad --after."""
    moment, key = decode_cursor(after, 2)
    if not isinstance(moment, str) or not isinstance(key, str):
        raise QueryError("--after: not a cursor this command printed")
    if key_is_uuid:
        try:
            key = str(uuid.UUID(key))
        except ValueError:
            raise QueryError("--after: not a cursor this command printed") from None
    return parse_time(moment, "after"), key


# --- queries ------------------------------------------------------------------------------------------------
#
# Written for files of millions of rows without indexes: ids are UUIDv7 and rows arrive in time order, so zone maps
# skip what a filter on an id or a time rules out. So each listing finds its page's keys first (a narrow scan,
# often of a recent window only), then reads the details of just that page; child rows are found by their
# interception ids; and the `interceptions` view (a LEFT JOIN) is only read where the end rows are needed.


def _session_starts(dialect: Dialect, session_ids: str) -> str:
    """A subquery: the start rows of the sessions that the subquery `session_ids` lists (a `session_id` column),
    each with its session_id.

    The same rows as `WHERE coalesce(client_session_id, thread_root_id::VARCHAR, id::VARCHAR) IN (...)`, but as
    three disjoint branches (the session is the client's session id; the thread root; the interception itself),
    each a semi-join on one column, instead of writing every row's ids out as text: DuckDB pushes the join's
    bounds into the scan, so zone maps skip what time-ordered ids rule out. An id only equals a session id written
    the way DuckDB writes UUIDs, hence the round trip through UUID."""
    uuids = f"""SELECT u FROM (SELECT {dialect.try_uuid("session_id")} AS u, session_id FROM ({session_ids}) ids) c
                WHERE u::VARCHAR = session_id"""
    return f"""(
        SELECT *, client_session_id AS session_id FROM interception_starts
        WHERE client_session_id IN (SELECT session_id FROM ({session_ids}) ids)
        UNION ALL
        SELECT *, thread_root_id::VARCHAR AS session_id FROM interception_starts
        WHERE client_session_id IS NULL AND thread_root_id IN ({uuids})
        UNION ALL
        SELECT *, id::VARCHAR AS session_id FROM interception_starts
        WHERE client_session_id IS NULL AND thread_root_id IS NULL AND id IN ({uuids}))"""


def _session_view(dialect: Dialect, session_ids: str) -> str:
    """A subquery: the `interceptions` view's rows (same columns) of the sessions `session_ids` lists only."""
    return f"""(
        SELECT s.id, s.initiator, s.provider, s.provider_name, s.model, s.client, s.user_agent, s.client_session_id,
               s.session_id, s.thread_parent_id, s.thread_root_id, s.correlating_tool_call_id,
               s.credential_kind, s.credential_hint, s.streaming, s.route,
               e.status, e.error, e.http_status, e.response_model, s.started_at, e.ended_at, s.metadata,
               s.working_directory, s.repository, s.branch, s.agent
        FROM {_session_starts(dialect, session_ids)} s LEFT JOIN interception_ends e ON e.interception_id = s.id)"""


def sessions(
    db: Reader, filters: Filters, after: str | None = None, limit: int | None = None, sort: str = "last_active"
) -> JSON:
    """Sessions, most recently active first (or, with `sort`, the costliest or the most tokens first); ended
    interceptions only (as the reference lists them).

    A session's last_active is its latest end among its (filtered) interceptions, so every session active at or
    after T has that end among the end rows from T on: the sessions found there come first, with their true
    last_active, and when they fill the page it is exact. So the page is looked for among the interceptions that
    ended in a recent window first (cheap: keys only), widened until the page is full or the window holds
    everything; then one statement (one snapshot, while the proxy appends) lists the page's keys again and reads
    just those sessions in full."""
    limit = _limit(limit)
    if sort not in SESSION_SORTS:
        raise QueryError(f"--sort must be one of {', '.join(SESSION_SORTS)}")
    if sort != "last_active":
        return _sessions_ranked(db, filters, after, limit, sort)
    position = _position(after, key_is_uuid=False) if after is not None else None
    oldest, newest = _one(db, "SELECT min(ended_at), max(ended_at) FROM interception_ends")
    if newest is None:
        return {"sessions": [], "next": None}
    anchor = min(newest, position[0]) if position is not None else newest
    span = anchor - oldest  # end rows are only ever appended, so the oldest stays the oldest
    window = _FIRST_WINDOW
    while True:
        bounded = window < span
        keys = _session_keys(db.dialect, filters, position, anchor - window if bounded else None, limit + 1)
        if bounded:
            (found,) = _one(db, f"SELECT count(*) FROM ({keys[0]}) k", keys[1])
            if found <= limit:
                window *= max(4, min(64, 2 * (limit + 1) // max(found, 1)))
                continue
        page = _session_page(db, filters, keys)
        if len(page) > limit or not bounded:
            break
        window *= 4  # sessions active again since the count above moved past the cursor: look further back
    more = len(page) > limit
    page = page[:limit]
    cursor = encode_cursor(page[-1]["last_active"], page[-1]["session_id"]) if more else None
    return {"sessions": page, "next": cursor}


def _session_keys(
    dialect: Dialect, filters: Filters, position: tuple[datetime, str] | None, since: datetime | None, count: int
) -> tuple[str, list[Any]]:
    """A subquery: (session_id, user, pos) of up to `count` sessions after `position`, newest first, among those
    with an end row at or after `since` (None: all)."""
    where, params = filters.where(session_expr=_SESSION_OF_START)
    if since is not None:
        where += " AND e.ended_at >= ?"
        params = [*params, since]
        if not dialect.postgres:
            # the window's starts are also bounded by the smallest id among its end rows: redundant with the
            # join, but zone maps use it whatever join order the planner picks (e.g. starts first under --user)
            where += " AND i.id >= (SELECT min(interception_id) FROM interception_ends WHERE ended_at >= ?)"
            params = [*params, since]
    page_filter = ""
    if position is not None:
        page_filter = "WHERE (last_active, session_id) < (?::TIMESTAMPTZ, ?)"
        params = [*params, *position]
    return (
        f"""
        SELECT session_id, "user", row_number() OVER (ORDER BY last_active DESC, session_id DESC) AS pos
        FROM (
            SELECT * FROM (
                SELECT {_SESSION_OF_START} AS session_id, i.initiator AS "user", max(e.ended_at) AS last_active
                FROM interception_starts i JOIN interception_ends e ON e.interception_id = i.id
                WHERE {where}
                GROUP BY 1, 2) k
            {page_filter} ORDER BY last_active DESC, session_id DESC LIMIT {count}) p""",
        params,
    )


_RANKS: Final = {
    # a session's whole cost (what the page shows; unpriced usage counts 0) or all its tokens
    "cost": "coalesce(t.cost_micros, 0)",
    "tokens": "t.input_tokens + t.output_tokens + t.cache_read_input_tokens + t.cache_write_input_tokens",
}


def _rank_of(row: JSON, sort: str) -> int:
    """The rank `_RANKS[sort]` gave a row of `_session_page`, for the next page's cursor."""
    if sort == "cost":
        return row["cost_micros"] or 0
    return row["input_tokens"] + row["output_tokens"] + row["cache_read_tokens"] + row["cache_write_tokens"]


def _sessions_ranked(db: Reader, filters: Filters, after: str | None, limit: int, sort: str) -> JSON:
    """Sessions with an ended interception the filters match, by their whole cost or tokens, highest first.

    No recent window helps here: every matching session is ranked, its rank summed from one pass over all token
    usages (about a second on a 1M-interception file, against the default order's tens of milliseconds). The
    cursor carries the sort, the rank and the session id."""
    where, params = filters.where(session_expr=_SESSION_OF_START)
    page_filter = ""
    if after is not None:
        kind, rank, key = decode_cursor(after, 3)
        if kind != sort or not isinstance(rank, int) or not isinstance(key, str):
            raise QueryError("--after: not a cursor this command printed")
        page_filter = "WHERE (rank, session_id) < (?, ?)"
        params = [*params, rank, key]
    keys = (
        f"""
        SELECT session_id, "user", row_number() OVER (ORDER BY rank DESC, session_id DESC) AS pos
        FROM (
            SELECT * FROM (
                SELECT m.session_id, m."user", coalesce(r.rank, 0) AS rank
                FROM (
                    SELECT DISTINCT {_SESSION_OF_START} AS session_id, i.initiator AS "user"
                    FROM interception_starts i JOIN interception_ends e ON e.interception_id = i.id
                    WHERE {where}) m
                LEFT JOIN (
                    SELECT {_SESSION_OF_START} AS session_id, sum({_RANKS[sort]})::BIGINT AS rank
                    FROM token_usages t JOIN interception_starts i ON i.id = t.interception_id
                    GROUP BY 1) r ON r.session_id = m.session_id) k
            {page_filter} ORDER BY rank DESC, session_id DESC LIMIT {limit + 1}) p""",
        params,
    )
    page = _session_page(db, filters, keys)
    more = len(page) > limit
    page = page[:limit]
    cursor = encode_cursor(sort, _rank_of(page[-1], sort), page[-1]["session_id"]) if more else None
    return {"sessions": page, "next": cursor}


def _session_page(db: Reader, filters: Filters, keys: tuple[str, list[Any]]) -> list[JSON]:
    """The sessions the `keys` subquery lists, in its order: their (filtered, ended) interceptions summed up, with
    the tokens, cost and last prompt of all their interceptions."""
    where, params = filters.where()
    rows = _rows(
        db,
        f"""
        WITH keys AS MATERIALIZED ({keys[0]}),
        i AS MATERIALIZED (SELECT * FROM {_session_view(db.dialect, "SELECT DISTINCT session_id FROM keys")} v),
        s AS (
            SELECT session_id, initiator AS "user", {db.dialect.arg_min("client", "started_at")} AS client,
                   array_agg(DISTINCT model ORDER BY model) AS models,
                   array_agg(DISTINCT provider_name ORDER BY provider_name) AS providers,
                   count(*) FILTER (WHERE thread_root_id IS NULL) AS threads,
                   array_agg(DISTINCT repository ORDER BY repository) FILTER (WHERE repository IS NOT NULL)
                       AS repositories,
                   array_agg(DISTINCT branch ORDER BY branch) FILTER (WHERE branch IS NOT NULL) AS branches,
                   array_agg(DISTINCT agent ORDER BY agent) FILTER (WHERE agent IS NOT NULL) AS agents,
                   count(*) AS interceptions,
                   min(started_at) AS started_at, max(ended_at) AS last_active
            FROM i WHERE {where} AND i.ended_at IS NOT NULL
            GROUP BY session_id, initiator),
        tokens AS (
            SELECT i.session_id, coalesce(sum(t.input_tokens), 0)::BIGINT AS input_tokens,
                   coalesce(sum(t.output_tokens), 0)::BIGINT AS output_tokens,
                   coalesce(sum(t.cache_read_input_tokens), 0)::BIGINT AS cache_read_tokens,
                   coalesce(sum(t.cache_write_input_tokens), 0)::BIGINT AS cache_write_tokens,
                   sum(t.cost_micros)::BIGINT AS cost_micros,
                   count(t.id) FILTER (WHERE t.cost_micros IS NULL) AS unpriced_rows
            FROM i LEFT JOIN token_usages t ON t.interception_id = i.id GROUP BY i.session_id),
        prompts AS (
            SELECT i.session_id, {db.dialect.arg_max("p.prompt", "p.created_at")} AS prompt
            FROM i JOIN user_prompts p ON p.interception_id = i.id GROUP BY i.session_id)
        SELECT s.session_id, s."user", s.client, s.models, s.providers, s.repositories, s.branches, s.agents,
               s.threads, s.interceptions, s.started_at,
               s.last_active, coalesce(t.input_tokens, 0) AS input_tokens,
               coalesce(t.output_tokens, 0) AS output_tokens,
               coalesce(t.cache_read_tokens, 0) AS cache_read_tokens,
               coalesce(t.cache_write_tokens, 0) AS cache_write_tokens,
               coalesce(t.unpriced_rows, 0) AS unpriced_rows, {_cost_sql("t")} AS cost_micros,
               p.prompt AS last_prompt
        FROM keys JOIN s ON s.session_id = keys.session_id AND s."user" = keys."user"
        LEFT JOIN tokens t ON t.session_id = keys.session_id
        LEFT JOIN prompts p ON p.session_id = keys.session_id
        ORDER BY keys.pos""",
        [*keys[1], *params],
    )
    for row in rows:
        for key in ("repositories", "branches", "agents"):
            row[key] = row[key] or []
    return rows


def session(db: Reader, session_id: str) -> JSON:
    """One session's threads in order, each interception with its prompt and agentic actions."""
    # Ids and times come back as text (what `_plain` would make of them): a long session has thousands of rows.
    iso = db.dialect.iso
    interceptions = _rows(
        db,
        f"""
        WITH wanted AS (SELECT ?::VARCHAR AS session_id)
        SELECT id::VARCHAR AS id, initiator AS "user", provider_name, model, response_model, client, streaming, status,
               error, http_status, thread_parent_id::VARCHAR AS thread_parent_id,
               thread_root_id::VARCHAR AS thread_root_id, {iso("started_at")} AS started_at,
               {iso("ended_at")} AS ended_at, working_directory, repository, branch, agent
        FROM {_session_view(db.dialect, "SELECT session_id FROM wanted")} i ORDER BY i.started_at, i.id LIMIT 5000""",
        [session_id],
    )
    if not interceptions:
        raise QueryError(f"no session {session_id!r}")
    ids = [i["id"] for i in interceptions]
    of_these = "interception_id IN (SELECT unnest(?::UUID[]))"
    head = "interception_id::VARCHAR AS interception_id"
    created = f"{iso('created_at')} AS created_at"
    children: dict[str, dict[str, list[JSON]]] = {
        i["id"]: {"prompts": [], "tools": [], "thoughts": [], "usage": []} for i in interceptions
    }
    for kind, sql in (
        ("prompts", f"SELECT {head}, prompt, {created} FROM user_prompts c WHERE {of_these}"),
        (
            "tools",
            f"""SELECT {head}, tool, server_url, provider_tool_call_id AS call_id, input, injected,
                             invocation_error AS error, metadata, {created}
                      FROM tool_usages c WHERE {of_these}""",
        ),
        (
            "thoughts",
            f"""SELECT {head}, content, metadata->>'source' AS source, {created}
                         FROM model_thoughts c WHERE {of_these}""",
        ),
        (
            "usage",
            f"""SELECT {head}, provider_response_id, input_tokens, output_tokens,
                             cache_read_input_tokens AS cache_read_tokens,
                             cache_write_input_tokens AS cache_write_tokens, cost_micros, {created}
                      FROM token_usages c WHERE {of_these}""",
        ),
    ):
        for row in _rows(db, sql + " ORDER BY c.created_at", [ids]):
            if kind == "tools" and isinstance(row.get("metadata"), str):
                row["metadata"] = json.loads(row["metadata"])
            children[row.pop("interception_id")][kind].append(row)
    threads: list[JSON] = []
    by_root: dict[str, JSON] = {}
    for interception in interceptions:
        interception.update(children[interception["id"]])
        interception["cache_hit_ratio"] = cache_hit_ratio(usage_totals(interception["usage"]))
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
        "totals": usage_totals(usage),
        "threads": threads,
    }


def usage_totals(usage: list[JSON]) -> JSON:
    costs = [u["cost_micros"] for u in usage if u["cost_micros"] is not None]
    return {
        "input_tokens": sum(u["input_tokens"] for u in usage),
        "output_tokens": sum(u["output_tokens"] for u in usage),
        "cache_read_tokens": sum(u["cache_read_tokens"] for u in usage),
        "cache_write_tokens": sum(u["cache_write_tokens"] for u in usage),
        "cost_micros": sum(costs) if costs or not usage else None,  # nothing used costs 0; NULL: none priced
        "unpriced_rows": len(usage) - len(costs),
    }


def actions(db: Reader, session_id: str) -> JSON:
    """What the agent did in one session, in order: every tool call the model made (the client's own, and those
    the bridge ran), each with the result the client sent back for it, the first time it did (a retried request
    sends it again): its size, whether it was an error, an excerpt, and the agent-side duration, from the end of
    the response that made the call to the arrival of the request that carried the result."""
    iso, dialect = db.dialect.iso, db.dialect
    wanted, of_wanted = "WITH wanted AS (SELECT ?::VARCHAR AS session_id)", "SELECT session_id FROM wanted"
    rows = _rows(
        db,
        f"""
        {wanted},
        i AS MATERIALIZED (SELECT id, agent, route FROM {_session_starts(dialect, of_wanted)} s),
        r AS (
            SELECT * FROM (
                SELECT provider_tool_call_id, interception_id, is_error, size_bytes, excerpt, created_at,
                       row_number() OVER (PARTITION BY provider_tool_call_id ORDER BY created_at, id) AS n
                FROM tool_results WHERE interception_id IN (SELECT id FROM i)) f
            WHERE n = 1)
        SELECT {iso("t.created_at")} AS at, t.interception_id::VARCHAR AS interception_id, i.agent, i.route, t.tool,
               t.server_url, t.injected, t.provider_tool_call_id AS call_id, t.input AS arguments,
               t.invocation_error, t.metadata, r.interception_id::VARCHAR AS result_interception_id, r.is_error,
               r.size_bytes AS result_bytes, r.excerpt AS result_excerpt,
               {dialect.millis("t.created_at", "r.created_at")} AS duration_ms
        FROM tool_usages t JOIN i ON i.id = t.interception_id
        LEFT JOIN r ON r.provider_tool_call_id = t.provider_tool_call_id AND NOT t.injected
        ORDER BY t.created_at, t.id LIMIT {MAX_ACTIONS + 1}""",
        [session_id],
    )
    truncated = len(rows) > MAX_ACTIONS
    del rows[MAX_ACTIONS:]
    if (
        not rows
        and not _one(db, f"{wanted} SELECT count(*) FROM {_session_starts(dialect, of_wanted)} s", [session_id])[0]
    ):
        raise QueryError(f"no session {session_id!r}")
    for row in rows:
        metadata = row.pop("metadata") or {}
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata  # JSON in DuckDB, JSONB in PG
        row["outcome"] = _outcome(row, metadata)
        if metadata.get("gate"):
            row["gate"] = metadata["gate"]
    counts = {o: sum(1 for r in rows if r["outcome"] == o) for o in OUTCOMES}
    return {"session_id": session_id, "actions": rows, "outcomes": counts, "truncated": truncated}


MAX_ACTIONS: Final = 10_000
OUTCOMES: Final = ("ok", "error", "answered", "unanswered", "blocked", "not run", "unpaired")
PAIRED_ROUTES: Final = ("/messages", "/chat/completions", "/responses")
"""The APIs whose tool results the bridge pairs with their calls (Anthropic Messages, Chat, Responses)."""


def _outcome(row: JSON, metadata: JSON) -> str:
    """How a call ended: run by the bridge (ok, error, not run); blocked by the tool gate; as the client's
    result says (ok, error; `answered` where the API has no error flag and the output states no exit code); no
    result yet (unanswered); or made on an API whose results are not paired (unpaired: Gemini, Bedrock)."""
    route = row.pop("route") or ""
    error = row.pop("invocation_error")
    if row["injected"]:
        return "ok" if not error else "not run" if error.startswith("not run") else "error"
    if metadata.get("blocked"):
        return "blocked"
    if row["result_interception_id"] is None:
        return "unanswered" if route.endswith(PAIRED_ROUTES) else "unpaired"
    return {True: "error", False: "ok", None: "answered"}[row["is_error"]]


def cache(db: Reader, by: str, filters: Filters, limit: int | None = None) -> JSON:
    """Prompt-cache busts and what they cost, grouped by session, user, model, client, repository, branch or agent
    (the costliest first), each group with its cache hit ratio; the totals; and the costliest busts themselves, with
    where each prefix changed."""
    if by not in CACHE_GROUPS:
        raise QueryError(f"--by must be one of {', '.join(CACHE_GROUPS)}")
    limit = _limit(limit)
    where, params = filters.where(session_expr=_SESSION_OF_START)
    key = _SESSION_OF_START if by == "session" else _USAGE_KEYS[by]
    groups = _rows(
        db,
        f"""
        SELECT grouping(k) AS total, k AS key, count(*) AS busts,
               coalesce(sum(lost_tokens), 0)::BIGINT AS lost_tokens,
               coalesce(sum(rewritten_tokens), 0)::BIGINT AS rewritten_tokens,
               (CASE WHEN count(cost_micros) = 0 AND count(*) > 0 THEN NULL ELSE coalesce(sum(cost_micros), 0) END)
                   ::BIGINT AS lost_micros,
               count(*) FILTER (WHERE cost_micros IS NULL) AS unpriced_busts
        FROM (
            SELECT coalesce({key}, '') AS k, b.lost_tokens, b.rewritten_tokens, b.cost_micros
            FROM cache_busts b JOIN interception_starts i ON i.id = b.interception_id WHERE {where}) b
        GROUP BY GROUPING SETS ((k), ())""",
        params,
    )
    empty = {"busts": 0, "lost_tokens": 0, "rewritten_tokens": 0, "lost_micros": 0, "unpriced_busts": 0}
    totals = next((g for g in groups if g["total"]), None) or empty  # PostgreSQL gives no () row of no rows
    rows = sorted(
        (g for g in groups if not g["total"]),
        key=lambda g: (g["lost_micros"] is None, -(g["lost_micros"] or 0), -g["lost_tokens"], g["key"]),
    )[:limit]
    ratios = _cache_ratios(db, by, key, filters, [r["key"] for r in rows])
    totals.pop("key", None)
    for row in (*rows, totals):
        row.pop("total", None)
    for row in rows:
        row.update(ratios.get(row["key"], {"interceptions": 0, "cache_hit_ratio": None}))
        row["key"] = row["key"] or None
    worst = _rows(
        db,
        f"""
        SELECT b.interception_id, {_SESSION_OF_START} AS session_id, i.initiator AS "user", i.model, i.client,
               i.agent, b.location, b.expected_tokens, b.read_tokens, b.lost_tokens, b.rewritten_tokens,
               b.cost_micros, b.gap_ms, b.ttl_seconds, b.created_at
        FROM cache_busts b JOIN interception_starts i ON i.id = b.interception_id WHERE {where}
        ORDER BY b.cost_micros DESC NULLS LAST, b.lost_tokens DESC, b.created_at DESC LIMIT {WORST_BUSTS}""",
        params,
    )
    return {"by": by, "totals": totals, "rows": rows, "busts": worst}


WORST_BUSTS: Final = 20


def _cache_ratios(db: Reader, by: str, key: str, filters: Filters, keys: list[str]) -> dict[str, JSON]:
    """Interceptions and the cache hit ratio of just the groups `keys` names ('' for the unattributed)."""
    if not keys:
        return {}
    where, params = filters.where(session_expr=_SESSION_OF_START)
    if by == "session":  # the sessions' own rows, found by their ids (not by computing every row's session)
        source, column = f"{_session_starts(db.dialect, 'SELECT key AS session_id FROM groups')} i", "i.session_id"
    else:
        source, column = "interception_starts i", f"coalesce({key}, '')"
        where += f" AND {column} IN (SELECT key FROM groups)"
    rows = _rows(
        db,
        f"""
        WITH groups AS (SELECT unnest(?::VARCHAR[]) AS key)
        SELECT {column} AS key, count(DISTINCT i.id) AS interceptions,
               coalesce(sum(t.input_tokens), 0)::BIGINT AS input_tokens,
               coalesce(sum(t.cache_read_input_tokens), 0)::BIGINT AS cache_read_tokens,
               coalesce(sum(t.cache_write_input_tokens), 0)::BIGINT AS cache_write_tokens
        FROM {source} JOIN token_usages t ON t.interception_id = i.id
        WHERE {where} GROUP BY 1""",
        [keys, *params],
    )
    return {r["key"]: {"interceptions": r["interceptions"], "cache_hit_ratio": cache_hit_ratio(r)} for r in rows}


def interceptions(db: Reader, filters: Filters, after: str | None = None, limit: int | None = None) -> JSON:
    """Interceptions, newest first, with their token totals and cost."""
    limit = _limit(limit)
    where, params = filters.where(session_expr=_SESSION_OF_START)
    if after is not None:
        where += " AND (i.started_at, i.id) < (?::TIMESTAMPTZ, ?::UUID)"
        params = [*params, *_position(after, key_is_uuid=True)]
    # The page's starts first (a top-N over one table), then their end rows and token sums.
    page = _rows(
        db,
        f"""
        WITH i AS (
            SELECT *, {_SESSION_OF_START} AS session_id FROM interception_starts i
            WHERE {where} ORDER BY i.started_at DESC, i.id DESC LIMIT {limit + 1}),
        t AS (
            SELECT interception_id, sum(input_tokens)::BIGINT AS input_tokens,
                   sum(output_tokens)::BIGINT AS output_tokens,
                   sum(cache_read_input_tokens)::BIGINT AS cache_read_tokens,
                   sum(cache_write_input_tokens)::BIGINT AS cache_write_tokens, sum(cost_micros)::BIGINT AS cost_micros,
                   count(*) FILTER (WHERE cost_micros IS NULL) AS unpriced_rows
            FROM token_usages WHERE interception_id IN (SELECT id FROM i) GROUP BY interception_id)
        SELECT i.id, i.session_id, i.initiator AS "user", i.client, i.provider_name, i.model, i.streaming, e.status,
               e.error, e.http_status, i.started_at, e.ended_at, i.working_directory, i.repository, i.branch, i.agent,
               coalesce(t.input_tokens, 0) AS input_tokens, coalesce(t.output_tokens, 0) AS output_tokens,
               coalesce(t.cache_read_tokens, 0) AS cache_read_tokens,
               coalesce(t.cache_write_tokens, 0) AS cache_write_tokens, {_cost_sql("t")} AS cost_micros,
               coalesce(t.unpriced_rows, 0) AS unpriced_rows
        FROM i LEFT JOIN interception_ends e ON e.interception_id = i.id
        LEFT JOIN t ON t.interception_id = i.id
        ORDER BY i.started_at DESC, i.id DESC LIMIT {limit + 1}""",
        params,
    )
    more = len(page) > limit
    page = page[:limit]
    for row in page:
        row["cache_hit_ratio"] = cache_hit_ratio(row)
    cursor = encode_cursor(page[-1]["started_at"], page[-1]["id"]) if more else None
    return {"interceptions": page, "next": cursor}


def distinct(db: Reader, column: str, filters: Filters) -> JSON:
    """`clients` or `models`: each value with its interception count and last use."""
    if column not in ("client", "model"):
        raise QueryError(f"cannot list {column}")
    where, params = filters.where(session_expr=_SESSION_OF_START)
    rows = _rows(
        db,
        f"""
        SELECT i.{column} AS name, count(*) AS interceptions, max(i.started_at) AS last_seen
        FROM interception_starts i WHERE {where}
        GROUP BY i.{column} ORDER BY interceptions DESC, name LIMIT {MAX_LIMIT}""",
        params,
    )
    return {f"{column}s": rows}


def usage(db: Reader, by: str, filters: Filters) -> JSON:
    """Tokens and cost grouped by user, model, client, provider or day, with the cache hit ratio."""
    if by not in USAGE_GROUPS:
        raise QueryError(f"--by must be one of {', '.join(USAGE_GROUPS)}")
    where, params = filters.where(session_expr=_SESSION_OF_START)
    rows = _rows(
        db,
        f"""
        SELECT {db.dialect.day_text("k") if by == "day" else "k"} AS key, interceptions, input_tokens,
               output_tokens, cache_read_tokens, cache_write_tokens, cost_micros, unpriced_rows
        FROM (
            SELECT {_USAGE_KEYS.get(by) or db.dialect.utc_day("i.started_at")} AS k,
                   count(DISTINCT i.id) AS interceptions,
                   sum(t.input_tokens)::BIGINT AS input_tokens, sum(t.output_tokens)::BIGINT AS output_tokens,
                   sum(t.cache_read_input_tokens)::BIGINT AS cache_read_tokens,
                   sum(t.cache_write_input_tokens)::BIGINT AS cache_write_tokens,
                   sum(t.cost_micros)::BIGINT AS cost_micros,
                   count(*) FILTER (WHERE t.cost_micros IS NULL) AS unpriced_rows
            FROM token_usages t JOIN interception_starts i ON i.id = t.interception_id
            WHERE {where}
            GROUP BY 1) u
        ORDER BY cost_micros DESC NULLS LAST, input_tokens DESC LIMIT {MAX_LIMIT}""",
        params,
    )
    for row in rows:
        row["cache_hit_ratio"] = cache_hit_ratio(row)
    return {"by": by, "rows": rows}


def cache_hit_ratio(row: JSON) -> float | None:
    """Cache reads over all input (plain, read and written), 4 places; None when there was no input."""
    cached = row["cache_read_tokens"] or 0
    total_input = (row["input_tokens"] or 0) + cached + (row["cache_write_tokens"] or 0)
    return round(cached / total_input, 4) if total_input else None


def spend(db: Reader, filters: Filters) -> JSON:
    """`usage` by user, model, client and day at once (the rows `usage` gives for each), in one pass.

    The token usages are summed per interception first, then grouped four ways (GROUPING SETS): a quarter of
    the work of four `usage` queries on a large audit."""
    where, params = filters.where(session_expr=_SESSION_OF_START)
    day = db.dialect.utc_day("i.started_at")
    keys = {"user": "i.initiator", "model": "i.model", "client": "i.client", "day": day}
    sets = ", ".join(f"({k})" for k in keys.values())
    rows = _rows(
        db,
        f"""
        WITH t AS (
            SELECT interception_id, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(cache_read_input_tokens) AS cache_read_tokens,
                   sum(cache_write_input_tokens) AS cache_write_tokens, sum(cost_micros) AS cost_micros,
                   count(*) FILTER (WHERE cost_micros IS NULL) AS unpriced_rows
            FROM token_usages GROUP BY interception_id)
        SELECT grouping({", ".join(keys.values())}) AS g, i.initiator AS "user", i.model, i.client,
               {db.dialect.day_text(day)} AS day, count(*) AS interceptions,
               sum(t.input_tokens)::BIGINT AS input_tokens, sum(t.output_tokens)::BIGINT AS output_tokens,
               sum(t.cache_read_tokens)::BIGINT AS cache_read_tokens,
               sum(t.cache_write_tokens)::BIGINT AS cache_write_tokens, sum(t.cost_micros)::BIGINT AS cost_micros,
               sum(t.unpriced_rows)::BIGINT AS unpriced_rows
        FROM t JOIN interception_starts i ON i.id = t.interception_id
        WHERE {where}
        GROUP BY GROUPING SETS ({sets})""",
        params,
    )
    # grouping() has one bit per key, the first the highest; a row's own key is the one bit not set
    bit = {name: 1 << (len(keys) - 1 - n) for n, name in enumerate(keys)}
    result: JSON = {name: [] for name in keys}
    for row in rows:
        name = next(n for n, b in bit.items() if not row["g"] & b)
        out = {"key": row[name]}
        out.update({k: row[k] for k in _USAGE_COLUMNS})
        out["cache_hit_ratio"] = cache_hit_ratio(out)
        result[name].append(out)
    for name, group in result.items():
        if name == "day":
            group.sort(key=lambda r: r["key"])
            del group[:-MAX_LIMIT]  # the newest days
        else:  # as `usage` orders them
            group.sort(key=lambda r: (r["cost_micros"] is None, -(r["cost_micros"] or 0), -(r["input_tokens"] or 0)))
            del group[MAX_LIMIT:]
    return {f"by_{name}": group for name, group in result.items()}


_USAGE_COLUMNS: Final = (
    "interceptions",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micros",
    "unpriced_rows",
)


def month_spend(db: Reader, month: str | None = None) -> JSON:
    """Each user's spend in a UTC calendar month (default: this one) as budgets count it: the priced cost of the
    token usages created in the month, whatever the interception's start; `unpriced_rows` counts what the price
    book could not price (it costs nothing against a budget)."""
    now = datetime.now(UTC)
    if month is not None and not isinstance(month, str):
        raise QueryError("month must be a string, YYYY-MM")
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC) if month else now.replace(day=1)
    except ValueError:
        raise QueryError(f"month: {month!r} is not YYYY-MM") from None
    start = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    rows = _rows(
        db,
        f"""
        SELECT i.initiator AS "user", coalesce(sum(t.cost_micros), 0)::BIGINT AS spent_micros,
               count(*) FILTER (WHERE t.cost_micros IS NULL) AS unpriced_rows
        FROM token_usages t JOIN interception_starts i ON i.id = t.interception_id
        WHERE t.created_at >= ? AND t.created_at < ?
        GROUP BY 1 ORDER BY spent_micros DESC, "user" LIMIT {MAX_LIMIT}""",
        [start, end],
    )
    return {"month": start.strftime("%Y-%m"), "since": _iso(start), "until": _iso(end), "users": rows}


def tail(db: Reader, after: str | None = None, limit: int | None = None) -> JSON:
    """Interceptions as they end, oldest first from the cursor (the last ten minutes without one)."""
    limit = _limit(limit)
    if after is not None:
        since, ident = _position(after, key_is_uuid=True)
        # the end rows from the cursor's time on (zone maps skip older ones), then exactly those after it
        ends, where = "e.ended_at >= ?", "(e.ended_at, s.id) > (?::TIMESTAMPTZ, ?::UUID)"
        params = [since, since, ident]
    else:
        ends, where, params = "e.ended_at >= now() - INTERVAL '10 minutes'", "TRUE", []
    rows = _rows(
        db,
        f"""
        WITH i AS (
            SELECT s.id, {_SESSION_OF_START.replace("i.", "s.")} AS session_id, s.initiator, s.client,
                   s.provider_name, s.model, s.streaming, e.status, e.http_status, e.error, s.started_at, e.ended_at
            FROM interception_ends e JOIN interception_starts s ON s.id = e.interception_id
            WHERE {ends} AND {where} ORDER BY e.ended_at, s.id LIMIT {limit}),
        t AS (
            SELECT interception_id,
                   sum(input_tokens + cache_read_input_tokens + cache_write_input_tokens)::BIGINT AS input_tokens,
                   sum(output_tokens)::BIGINT AS output_tokens, sum(cost_micros)::BIGINT AS cost_micros,
                   count(*) FILTER (WHERE cost_micros IS NULL) AS unpriced_rows
            FROM token_usages WHERE interception_id IN (SELECT id FROM i) GROUP BY interception_id)
        SELECT i.id, i.session_id, i.initiator AS "user", i.client, i.provider_name, i.model, i.streaming, i.status,
               i.http_status, i.error, i.started_at, i.ended_at, coalesce(t.input_tokens, 0) AS input_tokens,
               coalesce(t.output_tokens, 0) AS output_tokens, {_cost_sql("t")} AS cost_micros,
               coalesce(t.unpriced_rows, 0) AS unpriced_rows
        FROM i LEFT JOIN t ON t.interception_id = i.id ORDER BY i.ended_at, i.id""",
        params,
    )
    cursor = encode_cursor(rows[-1]["ended_at"], rows[-1]["id"]) if rows else after
    return {"interceptions": rows, "next": cursor}


# --- copies for other tools ---------------------------------------------------------------------------------

EXPORT_OPEN_GRACE: Final = timedelta(days=1)
"""An interception open longer than this is taken for dead (a crashed proxy), so it cannot hold a day back."""
EXPORT_TABLES: Final = {
    "interceptions": "started_at",
    "token_usages": "created_at",
    "user_prompts": "created_at",
    "tool_usages": "created_at",
    "model_thoughts": "created_at",
    "tool_results": "created_at",
    "cache_busts": "created_at",
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
    now = datetime.now(UTC)
    end = parse_time(until, "until") if until else now
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
            if (
                table == "interceptions"
                and db.execute(
                    "SELECT count(*) FROM interceptions WHERE (started_at AT TIME ZONE 'UTC')::DATE = ? "
                    "AND ended_at IS NULL AND started_at > ?",
                    [day, now - EXPORT_OPEN_GRACE],
                ).fetchall()[0][0]
            ):
                continue  # a call of that day still runs: a later run exports the day whole
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


def run(db: Reader, name: str, params: JSON | None = None, *, instance: str = "aibridge") -> JSON:
    """Run the named query with JSON parameters; a QueryError says what was wrong with them."""
    params = dict(params or {})
    filters = Filters.from_json(params.pop("filters", None))
    after, limit = params.pop("after", None), params.pop("limit", None)
    if after is not None and not isinstance(after, str):
        raise QueryError("--after must be a cursor string")
    match name:
        case "sessions":
            result = sessions(db, filters, after, limit, params.pop("sort", None) or "last_active")
        case "session":
            result = session(db, _required(params, "session_id"))
        case "interceptions":
            result = interceptions(db, filters, after, limit)
        case "actions":
            result = actions(db, _required(params, "session_id"))
        case "cache":
            result = cache(db, params.pop("by", None) or "session", filters, limit)
        case "clients" | "models":
            result = distinct(db, name[:-1], filters)
        case "usage":
            result = usage(db, params.pop("by", "model"), filters)
        case "spend":
            result = spend(db, filters)
        case "month_spend":
            result = month_spend(db, params.pop("month", None))
        case "tail":
            result = tail(db, after, limit)
        case "snapshot":
            path = _required(params, "path")
            with db.as_duckdb() as duck:
                result = snapshot(duck, path)
        case "export":
            directory, until = _required(params, "directory"), params.pop("until", None)
            instance = params.pop("instance", None) or instance
            with db.as_duckdb() as duck:
                result = export_parquet(duck, directory, instance, until)
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
