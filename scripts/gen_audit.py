"""Generate a realistic audit file for benchmarking the audit CLI.

    .venv/bin/python scripts/gen_audit.py /tmp/audit-1m.duckdb [--interceptions 1000000] [--seed 1]

The file is created through `addon.audit.duckfile.open_database`, so it has the real schema and migrations, and is
filled in SQL (`range` + `INSERT ... SELECT`, no Python row loops). Every table is appended in time order, as the
proxy's writer would, and ids are UUIDv7 built from each row's own time (sub-millisecond microseconds in rand_a),
so they sort by time. Randomness is `hash(row, seed, salt)`: the same seed and size give the same rows.

Shape, per million interceptions (~90 days, ~2000 users with a skewed share, 12 models over the two provider types
and four configured providers, six clients): sessions of 1 to a few hundred interceptions (most with a
client_session_id); threads of a user prompt plus tool-result follow-ups (thread root, parent and the correlating
tool call id); one end row per interception (mostly completed; some failed, cancelled or refused; none for the
fraction given by --unended); ~3M token_usages, cache-heavy, with cost_micros (NULL = unpriced: one model has no
price and a few rows are unpriced); one user_prompt per interception; ~2M tool_usages (~15% injected); ~0.5M
model_thoughts.
"""

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addon.audit.duckfile import open_database

DAYS = 90
USERS = 2000
# model, provider type, $ per million tokens: input, output, cache read, cache write (NULL = not in the price book)
MODELS = [
    ("claude-opus-4-5", "anthropic", 5.0, 25.0, 0.5, 6.25),
    ("claude-sonnet-4-5", "anthropic", 3.0, 15.0, 0.3, 3.75),
    ("claude-haiku-4-5", "anthropic", 1.0, 5.0, 0.1, 1.25),
    ("claude-opus-4-1", "anthropic", 15.0, 75.0, 1.5, 18.75),
    ("claude-sonnet-4", "anthropic", 3.0, 15.0, 0.3, 3.75),
    ("claude-3-5-haiku", "anthropic", 0.8, 4.0, 0.08, 1.0),
    ("gpt-5", "openai", 1.25, 10.0, 0.125, 0.0),
    ("gpt-5-codex", "openai", 1.25, 10.0, 0.125, 0.0),
    ("gpt-5-mini", "openai", 0.25, 2.0, 0.025, 0.0),
    ("gpt-4.1", "openai", 2.0, 8.0, 0.5, 0.0),
    ("o3", "openai", 2.0, 8.0, 0.5, 0.0),
    ("o4-mini", "openai", None, None, None, None),
]
CLIENTS = [  # name, user agent, share in %
    ("Claude Code", "claude-cli/2.0.31 (external, cli)", 45),
    ("Codex", "codex_cli_rs/0.58.0 (Debian 12; x86_64) xterm-256color", 20),
    ("Cursor", "Cursor/2.0.64", 12),
    ("Zed", "Zed/0.211.4", 8),
    ("GitHub Copilot", "GitHubCopilotChat/0.33.1", 7),
    ("Unknown", "python-httpx/0.28.1", 8),
]
TOOLS = ["Read", "Edit", "Bash", "Grep", "Glob", "Write", "TodoWrite", "WebFetch", "shell", "apply_patch"]
MCP_TOOLS = ["github__search_issues", "github__get_file", "jira__get_issue", "docs__search", "time__get_current_time"]
PROMPTS = [
    "Fix the failing test in tests/unit/test_module_{n}.py",
    "Why does the build fail on CI for branch feature-{n}?",
    "Refactor the request handler so that retries use exponential backoff",
    "Add type hints to src/service_{n}.py and run the linter",
    "Write a migration that adds an index-free column for the billing report",
    "Explain what this stack trace means and propose a fix",
    "Summarise the open issues labelled bug in the last sprint",
    "Implement pagination for the /v1/items endpoint (keyset, not offset)",
    "Review this diff for security problems",
    "Update the README with the new configuration options",
]
FILLER = " Please keep the existing style, add tests for the edge cases and explain the change briefly."
THOUGHT = "The user wants me to look at the code first. Let me check the relevant files and the failing test. "


def _values(rows: list[tuple[object, ...]]) -> str:
    def lit(v: object) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return repr(v)

    return ",".join("(" + ",".join(lit(v) for v in row) + ")" for row in rows)


def generate(path: str, n: int, seed: int, end: datetime, unended: float) -> dict[str, int]:
    db = open_database(path)
    db.execute("SET memory_limit = '4GB'")  # generation only; the file itself keeps no settings
    db.execute("SET preserve_insertion_order = true")
    S = f"{int(seed)}"
    db.execute(f"CREATE TEMP MACRO rnd(k, salt) AS (hash(k, {S}, salt) % 1000000007)::DOUBLE / 1000000007")
    db.execute(f"CREATE TEMP MACRO hx(k, salt) AS printf('%016x', hash(k, {S}, salt))")
    # UUIDv7: 48-bit Unix ms, version 7, 12 bits of sub-ms microseconds (sortable, RFC 9562 method 3), variant, random
    db.execute(
        f"""CREATE TEMP MACRO uuid7_at(ts, k, salt) AS
            printf('%012x7%03x%016x', epoch_ms(ts), microsecond(ts) % 1000,
                   (hash(k, {S}, salt) & 4611686018427387903::UBIGINT) | 9223372036854775808::UBIGINT)::UUID"""
    )
    db.execute(
        "CREATE TEMP TABLE g_models (m INTEGER, model VARCHAR, provider VARCHAR, p_in DOUBLE, p_out DOUBLE, "
        "p_cr DOUBLE, p_cw DOUBLE)"
    )
    db.execute(f"INSERT INTO g_models VALUES {_values([(i, *m) for i, m in enumerate(MODELS)])}")
    db.execute("CREATE TEMP TABLE g_clients (c INTEGER, client VARCHAR, user_agent VARCHAR, lo INTEGER, hi INTEGER)")
    cuts, acc = [], 0
    for i, (name, agent, share) in enumerate(CLIENTS):
        cuts.append((i, name, agent, acc, acc + share))
        acc += share
    db.execute(f"INSERT INTO g_clients VALUES {_values(cuts)}")

    start = end - timedelta(days=DAYS)
    span_s = (DAYS - 1) * 86400
    max_sessions = int(n / 8 * 1.5) + 100

    # Sessions: length ~ 1 + Exp(mean 6), 1% long agent sessions of 60-400; a skewed user; a client; most have a
    # client_session_id; a main model that suits the client; cumulative offsets cut at exactly n interceptions.
    db.execute(f"""
        CREATE TEMP TABLE g_s AS
        WITH raw AS (
            SELECT s AS sid,
                   (CASE WHEN rnd(s, 'big') < 0.01 THEN 60 + floor(rnd(s, 'len') * 340)
                         ELSE 1 + floor(-ln(1 - rnd(s, 'len')) * 6) END)::BIGINT AS n0,
                   floor(pow(rnd(s, 'user'), 1.8) * {USERS})::INTEGER AS u,
                   floor(rnd(s, 'client') * 100)::INTEGER AS c100,
                   rnd(s, 'csid') < 0.85 AS has_csid,
                   rnd(s, 'model') AS rm,
                   rnd(s, 'pname') AS rp,
                   TIMESTAMPTZ '{start.isoformat()}' + to_microseconds((rnd(s, 'start') * {span_s} * 1e6)::BIGINT)
                       AS session_start
            FROM range({max_sessions}) t(s)),
        cum AS (SELECT *, (sum(n0) OVER (ORDER BY sid ROWS UNBOUNDED PRECEDING) - n0)::BIGINT AS off FROM raw)
        SELECT cum.*, least(n0, {n} - off)::BIGINT AS n, c.client, c.user_agent,
               CASE c.client
                   WHEN 'Claude Code' THEN CASE WHEN rm < 0.35 THEN 0 WHEN rm < 0.85 THEN 1
                                                WHEN rm < 0.90 THEN 3 ELSE 4 END
                   WHEN 'Codex' THEN CASE WHEN rm < 0.5 THEN 7 WHEN rm < 0.9 THEN 6 ELSE 8 END
                   ELSE floor(rm * 12)::INTEGER END AS main_m,
               'u' || lpad(u::VARCHAR, 4, '0') || '@example.com' AS initiator,
               CASE WHEN has_csid THEN uuid7_at(session_start, sid, 'csid')::VARCHAR END AS client_session_id
        FROM cum JOIN g_clients c ON cum.c100 >= c.lo AND cum.c100 < c.hi
        WHERE off < {n}""")

    # Interceptions: threads (a prompt, then tool-result follow-ups), times, ids, lineage, status.
    db.execute(f"""
        CREATE TEMP TABLE g_i AS
        WITH x AS (SELECT sid, off, n, initiator, client, user_agent, client_session_id, main_m, rp, session_start,
                          unnest(range(n)) AS j FROM g_s),
        y AS (SELECT *, off + j AS k,
                     (j = 0 OR rnd(off + j, 'new') < 0.3) AS new_thread,
                     1.5 + pow(rnd(off + j, 'dur'), 2) * 90 AS dur
              FROM x),
        z AS (SELECT *,
                     coalesce(lag(dur) OVER w, 0)
                         + CASE WHEN j = 0 THEN 0 WHEN new_thread THEN 20 + rnd(k, 'gap') * 600
                                ELSE 0.3 + rnd(k, 'gap') * 4 END AS gap,
                     coalesce(NOT lead(new_thread) OVER w, false) AS has_follow_up
              FROM y WINDOW w AS (PARTITION BY sid ORDER BY j)),
        t AS (SELECT *, sum(gap) OVER w AS t_off, sum(new_thread::INTEGER) OVER w AS thread_no
              FROM z WINDOW w AS (PARTITION BY sid ORDER BY j ROWS UNBOUNDED PRECEDING)),
        u AS (SELECT *, session_start + to_microseconds((t_off * 1e6)::BIGINT) AS started_at,
                     CASE WHEN client = 'Claude Code' AND rnd(k, 'side') < 0.2 THEN 2 ELSE main_m END AS m
              FROM t),
        v AS (SELECT *, uuid7_at(started_at, k, 'id') AS id FROM u)
        SELECT v.k, v.sid, v.j, v.id, v.initiator, g.provider,
               CASE WHEN g.provider = 'anthropic' THEN (CASE WHEN v.rp < 0.1 THEN 'bedrock-eu' ELSE 'anthropic' END)
                    ELSE (CASE WHEN v.rp < 0.2 THEN 'azure-openai' ELSE 'openai' END) END AS provider_name,
               v.m, g.model, v.client, v.user_agent, v.client_session_id,
               CASE WHEN NOT v.new_thread THEN lag(v.id) OVER th END AS thread_parent_id,
               CASE WHEN NOT v.new_thread THEN first_value(v.id) OVER th END AS thread_root_id,
               CASE WHEN NOT v.new_thread THEN 'toolu_' || hx(v.k - 1, 'tc0') END AS correlating_tool_call_id,
               v.new_thread, v.has_follow_up, v.started_at,
               v.started_at + to_microseconds((v.dur * 1e6)::BIGINT) AS ended_at,
               CASE WHEN v.has_follow_up THEN 'completed'
                    WHEN rnd(v.k, 'status') < 0.04 THEN 'failed'
                    WHEN rnd(v.k, 'status') < 0.065 THEN 'cancelled'
                    WHEN rnd(v.k, 'status') < 0.075 THEN 'refused'
                    ELSE 'completed' END AS status,
               NOT v.has_follow_up AND rnd(v.k, 'unended') < {float(unended)} AS unended,
               rnd(v.k, 'stream') < 0.9 AS streaming
        FROM v JOIN g_models g ON g.m = v.m
        WINDOW th AS (PARTITION BY v.sid, v.thread_no ORDER BY v.j)""")

    db.execute("""
        INSERT INTO interception_starts
        SELECT id, initiator, provider, provider_name, model, client, user_agent, client_session_id,
               thread_parent_id, thread_root_id, correlating_tool_call_id,
               CASE WHEN rnd(k, 'cred') < 0.8 THEN 'central' ELSE 'byok' END,
               CASE WHEN provider = 'anthropic' THEN 'sk-ant-…' ELSE 'sk-…' END || right(hx(k, 'key'), 4),
               streaming,
               CASE WHEN provider = 'anthropic' THEN '/v1/messages'
                    WHEN client = 'Codex' THEN '/v1/responses' ELSE '/v1/chat/completions' END,
               started_at,
               CASE WHEN rnd(k, 'meta') < 0.3 THEN json_object('request_id', 'req_' || hx(k, 'req')) END
        FROM g_i ORDER BY started_at""")
    db.execute("""
        INSERT INTO interception_ends
        SELECT id, status,
               CASE status WHEN 'failed' THEN (CASE WHEN rnd(k, 'err') < 0.5 THEN 'upstream: 529 overloaded_error'
                                                    ELSE 'upstream: 500 api_error' END)
                           WHEN 'cancelled' THEN 'client disconnected'
                           WHEN 'refused' THEN 'budget exceeded for ' || initiator END,
               CASE status WHEN 'completed' THEN 200 WHEN 'failed' THEN
                   (CASE WHEN rnd(k, 'err') < 0.5 THEN 529 ELSE 500 END) WHEN 'refused' THEN 429 END,
               CASE WHEN status = 'completed' THEN
                   (CASE WHEN provider = 'anthropic' THEN model || '-20251101' ELSE model || '-2025-08-07' END) END,
               CASE WHEN status IN ('refused') THEN started_at + INTERVAL 3 MILLISECOND ELSE ended_at END,
               NULL
        FROM g_i WHERE NOT unended ORDER BY 6""")

    # Token usages: ~3 per completed interception (agentic loops), one for a cancelled one; cache-heavy.
    db.execute("""
        INSERT INTO token_usages
        WITH x AS (
            SELECT k, id, provider, m, started_at, ended_at,
                   CASE status WHEN 'completed' THEN 2 + floor(rnd(k, 'ntok') * 3)::INTEGER
                                   + CASE WHEN rnd(k, 'ntok2') < 0.08 THEN 2 ELSE 0 END
                               WHEN 'cancelled' THEN 1 ELSE 0 END AS ntok
            FROM g_i WHERE NOT unended),
        y AS (SELECT *, unnest(range(ntok)) AS t FROM x WHERE ntok > 0),
        z AS (SELECT y.*, k * 16 + t AS r,
                     started_at + to_microseconds(((epoch_us(ended_at) - epoch_us(started_at)) * (t + 1)
                                                   / (ntok + 1))::BIGINT) AS created_at,
                     1 + floor(pow(rnd(k * 16 + t, 'in'), 3) * 6000)::BIGINT AS i_in,
                     10 + floor(pow(rnd(k * 16 + t, 'out'), 2) * 4000)::BIGINT AS i_out,
                     CASE WHEN rnd(k * 16 + t, 'hit') < 0.9 THEN 2000 + floor(rnd(k * 16 + t, 'cr') * 150000)
                          ELSE 0 END::BIGINT AS i_cr,
                     CASE WHEN provider = 'openai' THEN 0
                          ELSE floor(pow(rnd(k * 16 + t, 'cw'), 2) * 25000) END::BIGINT AS i_cw,
                     rnd(k * 16 + t, 'unpriced') < 0.005 AS unpriced
              FROM y)
        SELECT uuid7_at(created_at, r, 'tok'),
               id,
               CASE WHEN provider = 'anthropic' THEN 'msg_' ELSE 'chatcmpl-' END || hx(k, 'resp') || t::VARCHAR,
               i_in, i_out, i_cr, i_cw,
               CASE WHEN provider = 'anthropic' AND i_cw > 0
                    THEN json_object('cache_write_5m', i_cw, 'cache_write_1h', 0) END,
               created_at,
               CASE WHEN NOT unpriced THEN
                   round(i_in * g.p_in + i_out * g.p_out + i_cr * g.p_cr + i_cw * g.p_cw)::BIGINT END,
               CASE WHEN NOT unpriced THEN round(i_in * g.p_in)::BIGINT END,
               CASE WHEN NOT unpriced THEN round(i_out * g.p_out)::BIGINT END,
               CASE WHEN NOT unpriced THEN round(i_cr * g.p_cr)::BIGINT END,
               CASE WHEN NOT unpriced THEN round(i_cw * g.p_cw)::BIGINT END,
               CASE WHEN NOT unpriced AND g.p_in IS NOT NULL THEN
                   json_object('input', g.p_in, 'output', g.p_out, 'cache_read', g.p_cr, 'cache_write', g.p_cw,
                               'source', 'genai-prices') END
        FROM z JOIN (SELECT m, p_in, p_out, p_cr, p_cw FROM g_models) g USING (m)
        ORDER BY created_at""")

    prompts = "[" + ",".join("'" + p.replace("'", "''") + "'" for p in PROMPTS) + "]"
    db.execute(f"""
        INSERT INTO user_prompts
        SELECT uuid7_at(started_at + INTERVAL 1 MILLISECOND, k, 'prompt'), id,
               NULL,
               replace({prompts}[1 + floor(rnd(k, 'p') * {len(PROMPTS)})::INTEGER], '{{n}}',
                       (floor(rnd(k, 'pn') * 500))::INTEGER::VARCHAR)
                   || repeat('{FILLER}', floor(pow(rnd(k, 'plen'), 3) * 12)::INTEGER),
               NULL,
               started_at + INTERVAL 1 MILLISECOND
        FROM g_i ORDER BY started_at""")

    tools = "[" + ",".join(f"'{t}'" for t in TOOLS) + "]"
    mcp_tools = "[" + ",".join(f"'{t}'" for t in MCP_TOOLS) + "]"
    db.execute(f"""
        INSERT INTO tool_usages
        WITH x AS (
            SELECT k, id, provider, started_at, ended_at, has_follow_up,
                   CASE WHEN has_follow_up THEN 1 + floor(rnd(k, 'ntool') * 4)::INTEGER
                        WHEN status = 'completed' THEN floor(rnd(k, 'ntool') * 3)::INTEGER ELSE 0 END AS ntool
            FROM g_i WHERE NOT unended),
        y AS (SELECT *, unnest(range(ntool)) AS t FROM x WHERE ntool > 0),
        z AS (SELECT *, k * 16 + t AS r, rnd(k * 16 + t, 'inj') < 0.15 AND t > 0 AS injected,
                     ended_at - to_microseconds((200000 * (ntool - t))::BIGINT) AS created_at
              FROM y)
        SELECT uuid7_at(created_at, r, 'tool'), id,
               CASE WHEN provider = 'anthropic' THEN 'msg_' ELSE 'chatcmpl-' END || hx(k, 'resp') || '0',
               'toolu_' || CASE WHEN t = 0 THEN hx(k, 'tc0') ELSE hx(r, 'tc') END,
               CASE WHEN injected THEN 'http://mcp.internal:8080/mcp' END,
               CASE WHEN injected THEN {mcp_tools}[1 + floor(rnd(r, 'tool') * {len(MCP_TOOLS)})::INTEGER]
                    ELSE {tools}[1 + floor(rnd(r, 'tool') * {len(TOOLS)})::INTEGER] END,
               json_object('file_path', '/home/dev/project/src/module_' || (hash(r, 'f') % 500)::VARCHAR || '.py',
                           'limit', 200)::VARCHAR,
               injected,
               CASE WHEN injected AND rnd(r, 'ierr') < 0.05 THEN 'MCP server timed out after 30s' END,
               CASE WHEN injected THEN json_object('duration_ms', floor(rnd(r, 'ms') * 3000)::INTEGER) END,
               created_at
        FROM z ORDER BY created_at""")

    db.execute(f"""
        INSERT INTO model_thoughts
        SELECT uuid7_at(started_at + INTERVAL 500 MILLISECOND, k, 'thought'), id,
               repeat('{THOUGHT}', 1 + floor(pow(rnd(k, 'tlen'), 2) * 15)::INTEGER),
               json_object('source', CASE WHEN provider = 'anthropic' THEN 'thinking' ELSE 'reasoning' END),
               started_at + INTERVAL 500 MILLISECOND
        FROM g_i WHERE status = 'completed' AND NOT unended AND rnd(k, 'thought') < 0.535
        ORDER BY started_at""")

    counts = {
        table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        for table in (
            "interception_starts",
            "interception_ends",
            "token_usages",
            "user_prompts",
            "tool_usages",
            "model_thoughts",
        )
    }
    counts["sessions"] = db.execute("SELECT count(DISTINCT session_id) FROM interceptions").fetchone()[0]  # type: ignore[index]
    db.execute("DROP TABLE g_i; DROP TABLE g_s; DROP TABLE g_models; DROP TABLE g_clients")
    db.execute("CHECKPOINT")
    db.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the audit file to create (must not exist)")
    parser.add_argument("--interceptions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--end",
        default=None,
        help="ISO time the data ends at (default: now, to the minute); with --seed, fixes the rows exactly",
    )
    parser.add_argument(
        "--unended", type=float, default=0.0, help="fraction of interceptions without an end row (default 0)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() or out.with_name(out.name + ".wal").exists():
        parser.error(f"{out} exists; remove it first")
    if args.interceptions < 1:
        parser.error("--interceptions must be at least 1")
    if args.end:
        end = datetime.fromisoformat(args.end.replace("Z", "+00:00"))
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    else:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
    began = time.perf_counter()
    counts = generate(str(out), args.interceptions, args.seed, end, args.unended)
    took = time.perf_counter() - began
    for table, count in counts.items():
        print(f"{table:>20}: {count:>10,}")
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, generated in {took:.1f} s")


if __name__ == "__main__":
    main()
