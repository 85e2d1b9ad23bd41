"""The audit schema, as an ordered list of named migrations applied on open.

Interceptions are append-only: a start row and an end row, joined by the `interceptions` view (cheaper than
UPDATEs in DuckDB, and a crash leaves a visible "never ended" row instead of a half-updated one). No primary
keys: ids are UUIDv7, so zone maps prune lookups and appends stay cheap.
"""

from collections.abc import Callable

import duckdb

Migration = tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]


def _m001_initial(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("""
        CREATE TABLE interception_starts (
            id UUID NOT NULL,
            initiator VARCHAR NOT NULL,
            provider VARCHAR NOT NULL,
            provider_name VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            client VARCHAR NOT NULL,
            user_agent VARCHAR,
            client_session_id VARCHAR,
            thread_parent_id UUID,
            thread_root_id UUID,
            correlating_tool_call_id VARCHAR,
            credential_kind VARCHAR,
            credential_hint VARCHAR,
            streaming BOOLEAN NOT NULL,
            route VARCHAR NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            metadata JSON
        );
        CREATE TABLE interception_ends (
            interception_id UUID NOT NULL,
            status VARCHAR NOT NULL,          -- completed | failed | cancelled
            error VARCHAR,
            http_status INTEGER,
            response_model VARCHAR,
            ended_at TIMESTAMPTZ NOT NULL,
            metadata JSON
        );
        CREATE TABLE token_usages (
            id UUID NOT NULL,
            interception_id UUID NOT NULL,
            provider_response_id VARCHAR,
            input_tokens BIGINT NOT NULL,     -- never includes cached tokens
            output_tokens BIGINT NOT NULL,
            cache_read_input_tokens BIGINT NOT NULL,
            cache_write_input_tokens BIGINT NOT NULL,
            metadata JSON,                    -- cache_write_5m/1h, reasoning, web_search_requests, ...
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE user_prompts (
            id UUID NOT NULL,
            interception_id UUID NOT NULL,
            provider_response_id VARCHAR,
            prompt VARCHAR NOT NULL,
            metadata JSON,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE tool_usages (
            id UUID NOT NULL,
            interception_id UUID NOT NULL,
            provider_response_id VARCHAR,
            provider_tool_call_id VARCHAR,
            server_url VARCHAR,               -- NULL for the client's own tools
            tool VARCHAR NOT NULL,
            input VARCHAR,                    -- the arguments as the model wrote them (JSON text)
            injected BOOLEAN NOT NULL,
            invocation_error VARCHAR,
            metadata JSON,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE model_thoughts (
            id UUID NOT NULL,
            interception_id UUID NOT NULL,
            content VARCHAR NOT NULL,
            metadata JSON,                    -- {"source": "thinking" | "reasoning"}
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE VIEW interceptions AS
        SELECT s.id, s.initiator, s.provider, s.provider_name, s.model, s.client, s.user_agent,
               s.client_session_id,
               coalesce(s.client_session_id, s.thread_root_id::VARCHAR, s.id::VARCHAR) AS session_id,
               s.thread_parent_id, s.thread_root_id, s.correlating_tool_call_id,
               s.credential_kind, s.credential_hint, s.streaming, s.route,
               e.status, e.error, e.http_status, e.response_model,
               s.started_at, e.ended_at, s.metadata
        FROM interception_starts s
        LEFT JOIN interception_ends e ON e.interception_id = s.id;
    """)


def _m002_costs(db: duckdb.DuckDBPyConnection) -> None:
    for column in (
        "cost_micros",
        "input_cost_micros",
        "output_cost_micros",
        "cache_read_cost_micros",
        "cache_write_cost_micros",
    ):
        db.execute(f"ALTER TABLE token_usages ADD COLUMN {column} BIGINT")  # micro-dollars; NULL = unpriced
    db.execute("ALTER TABLE token_usages ADD COLUMN prices JSON")


MIGRATIONS: list[Migration] = [("m001_initial", _m001_initial), ("m002_costs", _m002_costs)]


def migrate(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _aibridge_migrations (name VARCHAR NOT NULL, applied_at TIMESTAMPTZ)")
    applied = {name for (name,) in db.execute("SELECT name FROM _aibridge_migrations").fetchall()}
    for name, apply in MIGRATIONS:
        if name in applied:
            continue
        db.begin()
        try:
            apply(db)
            db.execute("INSERT INTO _aibridge_migrations VALUES (?, now())", [name])
            db.commit()
        except BaseException:
            db.rollback()
            raise
