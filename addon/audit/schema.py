"""The audit schema, as ordered lists of named migrations applied on open: one for DuckDB files, one for
PostgreSQL, with the same names, tables, columns and view.

Interceptions are append-only: a start row and an end row, joined by the `interceptions` view (cheaper than
UPDATEs, and a crash leaves a visible "never ended" row instead of a half-updated one). DuckDB has no primary
keys: ids are UUIDv7, so zone maps prune lookups and appends stay cheap. PostgreSQL has them, and the indexes
the queries' filters and joins use; its retried batches skip the rows a lost acknowledgement already wrote.
"""

from collections.abc import Callable
from typing import Any

import duckdb
import psycopg

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


def _m004_insights(db: duckdb.DuckDBPyConnection) -> None:
    db.execute(_INSIGHTS.format(text="VARCHAR", uuid_text="VARCHAR", json="JSON"))


# The action ledger (tool results, paired with `tool_usages` by call id), prompt-cache busts, and attribution
# (working directory, repository, branch, agent) on each interception. The same text for both stores.
_INSIGHTS = """
    ALTER TABLE interception_starts ADD COLUMN working_directory {text};
    ALTER TABLE interception_starts ADD COLUMN repository {text};
    ALTER TABLE interception_starts ADD COLUMN branch {text};
    ALTER TABLE interception_starts ADD COLUMN agent {text};
    CREATE TABLE tool_results (
        id UUID NOT NULL,
        interception_id UUID NOT NULL,    -- the interception whose request carried the result
        provider_tool_call_id {text} NOT NULL,
        is_error BOOLEAN,                 -- NULL where the API has no error flag
        size_bytes BIGINT NOT NULL,
        excerpt {text},                   -- its first tool_result_excerpt characters, redacted like all text
        metadata {json},
        created_at TIMESTAMPTZ NOT NULL   -- the request's arrival
    );
    CREATE TABLE cache_busts (
        id UUID NOT NULL,
        interception_id UUID NOT NULL,
        previous_interception_id UUID NOT NULL,
        expected_tokens BIGINT NOT NULL,  -- what the previous request of the conversation cached
        read_tokens BIGINT NOT NULL,
        lost_tokens BIGINT NOT NULL,
        rewritten_tokens BIGINT NOT NULL,
        location {text},                  -- tools | system | messages[N] | ... | unchanged; NULL: not compared
        ttl_seconds INTEGER NOT NULL,
        gap_ms BIGINT NOT NULL,
        cost_micros BIGINT,               -- NULL: unpriced
        metadata {json},
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE OR REPLACE VIEW interceptions AS  -- the columns appended: views a user built on it keep working
    SELECT s.id, s.initiator, s.provider, s.provider_name, s.model, s.client, s.user_agent,
           s.client_session_id,
           coalesce(s.client_session_id, s.thread_root_id::{uuid_text}, s.id::{uuid_text}) AS session_id,
           s.thread_parent_id, s.thread_root_id, s.correlating_tool_call_id,
           s.credential_kind, s.credential_hint, s.streaming, s.route,
           e.status, e.error, e.http_status, e.response_model,
           s.started_at, e.ended_at, s.metadata, s.working_directory, s.repository, s.branch, s.agent
    FROM interception_starts s
    LEFT JOIN interception_ends e ON e.interception_id = s.id;
"""


MIGRATIONS: list[Migration] = [
    ("m001_initial", _m001_initial),
    ("m002_costs", _m002_costs),
    ("m004_insights", _m004_insights),  # m003 (the fleet's shared limits) is PostgreSQL's only
]


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


# --- PostgreSQL -------------------------------------------------------------------------------------------------

POSTGRES_MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_initial",
        """
        CREATE TABLE interception_starts (
            id UUID PRIMARY KEY,
            initiator TEXT NOT NULL,
            provider TEXT NOT NULL,
            provider_name TEXT NOT NULL,
            model TEXT NOT NULL,
            client TEXT NOT NULL,
            user_agent TEXT,
            client_session_id TEXT,
            thread_parent_id UUID,
            thread_root_id UUID,
            correlating_tool_call_id TEXT,
            credential_kind TEXT,
            credential_hint TEXT,
            streaming BOOLEAN NOT NULL,
            route TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            metadata JSONB
        );
        CREATE INDEX interception_starts_started_at ON interception_starts (started_at);
        CREATE INDEX interception_starts_session ON interception_starts (client_session_id)
            WHERE client_session_id IS NOT NULL;
        CREATE INDEX interception_starts_thread_root ON interception_starts (thread_root_id)
            WHERE thread_root_id IS NOT NULL;
        CREATE TABLE interception_ends (
            interception_id UUID PRIMARY KEY,
            status TEXT NOT NULL,
            error TEXT,
            http_status INTEGER,
            response_model TEXT,
            ended_at TIMESTAMPTZ NOT NULL,
            metadata JSONB
        );
        CREATE INDEX interception_ends_ended_at ON interception_ends (ended_at);
        CREATE TABLE token_usages (
            id UUID PRIMARY KEY,
            interception_id UUID NOT NULL,
            provider_response_id TEXT,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            cache_read_input_tokens BIGINT NOT NULL,
            cache_write_input_tokens BIGINT NOT NULL,
            metadata JSONB,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX token_usages_interception ON token_usages (interception_id);
        CREATE INDEX token_usages_created_at ON token_usages (created_at);
        CREATE TABLE user_prompts (
            id UUID PRIMARY KEY,
            interception_id UUID NOT NULL,
            provider_response_id TEXT,
            prompt TEXT NOT NULL,
            metadata JSONB,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX user_prompts_interception ON user_prompts (interception_id);
        CREATE TABLE tool_usages (
            id UUID PRIMARY KEY,
            interception_id UUID NOT NULL,
            provider_response_id TEXT,
            provider_tool_call_id TEXT,
            server_url TEXT,
            tool TEXT NOT NULL,
            input TEXT,
            injected BOOLEAN NOT NULL,
            invocation_error TEXT,
            metadata JSONB,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX tool_usages_interception ON tool_usages (interception_id);
        CREATE INDEX tool_usages_call ON tool_usages (provider_tool_call_id) WHERE provider_tool_call_id IS NOT NULL;
        CREATE TABLE model_thoughts (
            id UUID PRIMARY KEY,
            interception_id UUID NOT NULL,
            content TEXT NOT NULL,
            metadata JSONB,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX model_thoughts_interception ON model_thoughts (interception_id);
        CREATE VIEW interceptions AS
        SELECT s.id, s.initiator, s.provider, s.provider_name, s.model, s.client, s.user_agent,
               s.client_session_id,
               coalesce(s.client_session_id, s.thread_root_id::TEXT, s.id::TEXT) AS session_id,
               s.thread_parent_id, s.thread_root_id, s.correlating_tool_call_id,
               s.credential_kind, s.credential_hint, s.streaming, s.route,
               e.status, e.error, e.http_status, e.response_model,
               s.started_at, e.ended_at, s.metadata
        FROM interception_starts s
        LEFT JOIN interception_ends e ON e.interception_id = s.id;
        """,
    ),
    (
        "m002_costs",
        """
        ALTER TABLE token_usages ADD COLUMN cost_micros BIGINT, ADD COLUMN input_cost_micros BIGINT,
            ADD COLUMN output_cost_micros BIGINT, ADD COLUMN cache_read_cost_micros BIGINT,
            ADD COLUMN cache_write_cost_micros BIGINT, ADD COLUMN prices JSONB;
        """,
    ),
    (
        # What a fleet of proxies shares beside the audit: its members (each proxy's heartbeat), the budget
        # ledger (spend per user and month; reservations of requests in flight, which stop counting once their
        # proxy's heartbeat is stale), token buckets for rate limits, and key cooldowns. Each decision is one
        # function call, atomic under a row lock or an advisory lock: exact however many proxies ask at once.
        "m003_shared_limits",
        """
        CREATE TABLE fleet_members (instance TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL);
        CREATE TABLE budget_spend (
            "user" TEXT NOT NULL, month TEXT NOT NULL, micros BIGINT NOT NULL, PRIMARY KEY ("user", month)
        );
        CREATE TABLE budget_reservations (
            id UUID PRIMARY KEY, "user" TEXT NOT NULL, month TEXT NOT NULL, micros BIGINT NOT NULL,
            instance TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX budget_reservations_user ON budget_reservations ("user", month);
        CREATE TABLE rate_buckets (key TEXT PRIMARY KEY, level DOUBLE PRECISION NOT NULL, at TIMESTAMPTZ NOT NULL);
        CREATE TABLE key_cooldowns (
            provider TEXT NOT NULL, fingerprint TEXT NOT NULL, until TIMESTAMPTZ NOT NULL, status INTEGER,
            PRIMARY KEY (provider, fingerprint)
        );
        -- the month's spend so far, as the audit has it: switching budgets on later forgives nothing
        INSERT INTO budget_spend
        SELECT s.initiator, to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), sum(t.cost_micros)
        FROM token_usages t JOIN interception_starts s ON s.id = t.interception_id
        WHERE t.cost_micros IS NOT NULL
          AND t.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        GROUP BY 1, 2;

        CREATE FUNCTION aibridge_reserve(
            p_user TEXT, p_month TEXT, p_limit BIGINT, p_id UUID, p_micros BIGINT, p_instance TEXT, p_stale FLOAT8
        ) RETURNS TABLE (admitted BOOLEAN, spent BIGINT) LANGUAGE plpgsql AS $$
        DECLARE v_spent BIGINT; v_reserved BIGINT;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('aibridge-budget'), hashtext(p_user || '/' || p_month));
            SELECT coalesce(max(b.micros), 0) INTO v_spent FROM budget_spend b
            WHERE b."user" = p_user AND b.month = p_month;
            SELECT coalesce(sum(r.micros), 0) INTO v_reserved
            FROM budget_reservations r JOIN fleet_members m ON m.instance = r.instance
            WHERE r."user" = p_user AND r.month = p_month AND m.seen_at > now() - make_interval(secs => p_stale);
            IF v_spent + v_reserved >= p_limit THEN
                RETURN QUERY SELECT false, v_spent;
                RETURN;
            END IF;
            INSERT INTO budget_reservations (id, "user", month, micros, instance)
            VALUES (p_id, p_user, p_month, p_micros, p_instance);
            RETURN QUERY SELECT true, v_spent;
        END $$;

        -- the reservation p_id (if any) becomes spend: added once, however often a lost answer makes it retried
        CREATE FUNCTION aibridge_settle(p_id UUID, p_user TEXT, p_month TEXT, p_actual BIGINT)
        RETURNS VOID LANGUAGE plpgsql AS $$
        BEGIN
            IF p_id IS NOT NULL THEN
                DELETE FROM budget_reservations WHERE id = p_id;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
            END IF;
            IF p_actual <> 0 THEN
                INSERT INTO budget_spend VALUES (p_user, p_month, p_actual)
                ON CONFLICT ("user", month) DO UPDATE SET micros = budget_spend.micros + EXCLUDED.micros;
            END IF;
        END $$;

        -- Token buckets of `capacity` refilled at capacity per minute. Admitted (0) when each bucket holds at
        -- least its `need`: then each gives `take` (which may leave it below zero: tokens counted afterwards);
        -- else nothing is taken and the answer is the seconds until all would be.
        CREATE FUNCTION aibridge_take(p_keys TEXT[], p_capacity FLOAT8[], p_need FLOAT8[], p_take FLOAT8[])
        RETURNS FLOAT8 LANGUAGE plpgsql AS $$
        DECLARE v_level FLOAT8; v_wait FLOAT8 := 0; v_levels FLOAT8[] := '{}';
        BEGIN
            FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP  -- the caller sorts the keys: no deadlocks
                INSERT INTO rate_buckets VALUES (p_keys[i], p_capacity[i], now()) ON CONFLICT DO NOTHING;
                SELECT least(p_capacity[i], b.level + extract(epoch FROM now() - b.at) * p_capacity[i] / 60)
                INTO v_level FROM rate_buckets b WHERE b.key = p_keys[i] FOR UPDATE;
                v_levels := v_levels || v_level;
                IF v_level < p_need[i] THEN
                    v_wait := greatest(v_wait, (p_need[i] - v_level) * 60 / p_capacity[i]);
                END IF;
            END LOOP;
            IF v_wait > 0 THEN
                RETURN v_wait;
            END IF;
            FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
                UPDATE rate_buckets SET level = v_levels[i] - p_take[i], at = now() WHERE key = p_keys[i];
            END LOOP;
            RETURN 0;
        END $$;

        -- Settle tokens counted after the fact (negative: given back), refilling first.
        CREATE FUNCTION aibridge_give(p_keys TEXT[], p_capacity FLOAT8[], p_take FLOAT8[])
        RETURNS VOID LANGUAGE plpgsql AS $$
        BEGIN
            FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
                INSERT INTO rate_buckets VALUES (p_keys[i], p_capacity[i], now()) ON CONFLICT DO NOTHING;
                UPDATE rate_buckets b
                SET level = least(p_capacity[i], b.level + extract(epoch FROM now() - b.at) * p_capacity[i] / 60)
                            - p_take[i],
                    at = now()
                WHERE b.key = p_keys[i];
            END LOOP;
        END $$;
        """,
    ),
    (
        "m004_insights",
        _INSIGHTS.format(text="TEXT", uuid_text="TEXT", json="JSONB")
        + """
        ALTER TABLE tool_results ADD PRIMARY KEY (id);
        CREATE INDEX tool_results_interception ON tool_results (interception_id);
        ALTER TABLE cache_busts ADD PRIMARY KEY (id);
        CREATE INDEX cache_busts_interception ON cache_busts (interception_id);
        CREATE INDEX cache_busts_created_at ON cache_busts (created_at);
        CREATE INDEX interception_starts_repository ON interception_starts (repository) WHERE repository IS NOT NULL;
        CREATE INDEX interception_starts_branch ON interception_starts (branch) WHERE branch IS NOT NULL;
        CREATE INDEX interception_starts_agent ON interception_starts (agent) WHERE agent IS NOT NULL;
        """,
    ),
]
MIGRATION_LOCK = 0x41494252  # "AIBR": the advisory lock that lets one of several starting proxies migrate


def migrate_postgres(conn: psycopg.Connection[Any]) -> None:
    """Apply the missing PostgreSQL migrations, each with its record, in one transaction under an advisory lock:
    proxies starting together migrate once, and a failed migration leaves nothing half done."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute("CREATE TABLE IF NOT EXISTS _aibridge_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ)")
        applied = {name for (name,) in conn.execute("SELECT name FROM _aibridge_migrations").fetchall()}
        for name, sql in POSTGRES_MIGRATIONS:
            if name not in applied:
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO _aibridge_migrations VALUES (%s, now())", [name])
