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
price and a few rows are unpriced); one user_prompt per interception; ~1.8M tool_usages (~15% injected; a
session's last response calls none); ~0.5M model_thoughts. Attribution per session (none without a client session
id, nor from the SDK-like client): one of ~80 repositories (each user works mostly in two of them; a few are
shared by many) and its working directory, one branch or sometimes two (Codex names none); the agent per thread,
`main` for the first and ~80% of the others, else a sub-agent (general-purpose, Explore, Plan, a few custom ones).
~1.6M tool_results: the client's calls answered in the next interception of the session (created then), ~3%
never; ~5% errors; sizes from tens of bytes to 200 KB, log-skewed; a 200-character excerpt. ~17k cache_busts: ~2%
of the interceptions with a predecessor in the session, within the cache's lifetime, mostly at a message, some at
the system prompt or tools, or unchanged (evicted), priced by the model.
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
# Attribution: ~80 repositories (the directory's name, and the repository: its remote as `host/owner/name`, or the
# directory's name for the few without one), branch names, sub-agents (name, cumulative share of sub-agent threads).
PROJECTS = ["billing", "payments", "search", "auth", "catalog", "checkout", "ledger", "notify", "reports", "gateway"]
PROJECT_KINDS = ["-api", "-web", "-worker", "-service", "-sdk", "-infra", "-ui", "-jobs"]
BRANCH_PREFIXES = ["feature/", "fix/", "chore/", "{u}/"]
BRANCH_SLUGS = ["retry-backoff", "billing-report", "pagination", "fix-ci", "type-hints", "oauth", "flaky-tests"]
SUBAGENT_THREADS = 0.2  # of the threads after a session's first
SUBAGENTS = [
    ("general-purpose", 0.50),
    ("Explore", 0.78),
    ("Plan", 0.90),
    ("code-reviewer", 0.94),
    ("test-runner", 0.97),
    ("db-migration-helper", 1.0),
]
EXCERPT = 200  # characters of a tool result kept, as `tool_result_excerpt` defaults to
SHORT_RESULTS = ["Write", "TodoWrite", "apply_patch"]  # their result is the text below, whole
RESULTS = {  # per tool in TOOLS: how what the client sends back starts (the long ones: past the excerpt)
    "Read": "     1\timport json\n     2\tfrom pathlib import Path\n     3\t\n     4\tfrom service import backoff\n"
    '     5\t\n     6\t\n     7\tclass Handler:\n     8\t    """Handles one request kind: validates, retries."""\n'
    "     9\t\n    10\t    def __init__(self, client, settings) -> None:\n",
    "Edit": "The file /home/dev/project/src/module.py has been updated. Here's the result of running `cat -n` on a "
    "snippet of the edited file:\n    41\t        for attempt in range(3):\n    42\t            response = await self.",
    "Bash": "============================= test session starts ==============================\nplatform linux -- "
    "Python 3.13.1, pytest-8.3.4, pluggy-1.5.0\nrootdir: /home/dev/project\ncollected 214 items\n\n"
    "tests/unit/test_module.py ........",
    "Grep": "Found 12 files\nsrc/service_1.py\nsrc/service_7.py\nsrc/handlers/retry.py\nsrc/handlers/billing.py\n"
    "src/handlers/pagination.py\ntests/unit/test_retry.py\ntests/unit/test_billing.py\ntests/unit/test_pagination.py\n",
    "Glob": "/home/dev/project/src/module_1.py\n/home/dev/project/src/module_2.py\n/home/dev/project/src/module_3.py\n"
    "/home/dev/project/src/module_4.py\n/home/dev/project/src/module_5.py\n/home/dev/project/src/module_6.py\n",
    "Write": "File created successfully at: /home/dev/project/src/module.py",
    "TodoWrite": "Todos have been modified successfully. Ensure that you continue to use the todo list to track your "
    "progress. Please proceed with the current tasks if applicable",
    "WebFetch": "# Configuration\n\nThe service reads its settings from environment variables prefixed with APP_; "
    "a settings file (`settings.toml`, next to the binary) overrides them, and command-line flags override both.\n\n"
    "## Options\n",
    "shell": "Exit code: 0\nWall time: 1.2 seconds\nOutput:\nOn branch main\nYour branch is up to date with "
    "'origin/main'.\n\nChanges not staged for commit:\n  (use \"git add <file>...\" to update what will be "
    "committed)\n\tmodified:   src/service.py\n",
    "apply_patch": "Success. Updated the following files:\nM src/service.py",
}
RESULT_ERRORS = [
    "<tool_use_error>File does not exist.</tool_use_error>",
    "<tool_use_error>String to replace not found in file.</tool_use_error>",
    'Exit code 1\nTraceback (most recent call last):\n  File "/home/dev/project/src/service.py", line 12, in '
    "<module>\nModuleNotFoundError: No module named 'httpx'",
    "The user doesn't want to proceed with this tool use. The tool use was rejected.",
]
BUSTS = 0.024  # of the interceptions with a predecessor, before those past the cache's lifetime are left out
NTOK = """CASE status WHEN 'completed' THEN 2 + floor(rnd(k, 'ntok') * 3)::INTEGER
                                 + CASE WHEN rnd(k, 'ntok2') < 0.08 THEN 2 ELSE 0 END
                      WHEN 'cancelled' THEN 1 ELSE 0 END"""
"""Token usages per interception (agentic loops: several rounds), by its status."""
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


def _sql_list(items: list[str]) -> str:
    return "[" + ",".join("'" + t.replace("'", "''") + "'" for t in items) + "]"


def repositories() -> list[tuple[int, str, str, str]]:
    """(index, directory name, repository, default branch) of the ~80 repositories; the first are the busiest."""
    names = ["monorepo", "widgets", *[p + k for k in PROJECT_KINDS for p in PROJECTS][2:]]
    rows = []
    for n, name in enumerate(names):
        if n % 13 == 12:
            repository = name  # no remote: the directory's name
        elif n % 9 == 8:
            repository = "gitlab.acme.dev/platform/" + name
        else:
            repository = "github.com/acme/" + name
        rows.append((n, name, repository, "master" if n % 7 == 6 else "main"))
    return rows


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
    db.execute("CREATE TEMP TABLE g_repos (r INTEGER, dir VARCHAR, repository VARCHAR, default_branch VARCHAR)")
    repos = repositories()
    db.execute(f"INSERT INTO g_repos VALUES {_values(repos)}")

    start = end - timedelta(days=DAYS)
    span_s = (DAYS - 1) * 86400
    max_sessions = int(n / 8 * 1.5) + 100

    # Sessions: length ~ 1 + Exp(mean 6), 1% long agent sessions of 60-400; a skewed user; a client; most have a
    # client_session_id; a main model that suits the client; cumulative offsets cut at exactly n interceptions.
    # Attribution (none without a client session, nor from an SDK): one repository, the user's own mostly (each
    # user has two; the first repositories are everyone's), its directory under the user's home; one branch, or
    # a second from some point on (a feature branch made from the default one, say); Codex names no branch.
    prefixes, slugs = _sql_list(BRANCH_PREFIXES), _sql_list(BRANCH_SLUGS)
    branch = (
        "replace({p}[1 + floor(rnd(sid, '{salt}p') * {np})::INTEGER], '{{u}}', 'u' || lpad(u::VARCHAR, 4, '0')) "
        "|| {sl}[1 + floor(rnd(sid, '{salt}s') * {ns})::INTEGER] || '-' || (100 + hash(sid, {S}, '{salt}n') % 900)"
    )
    b1, b2 = (
        branch.format(p=prefixes, sl=slugs, np=len(BRANCH_PREFIXES), ns=len(BRANCH_SLUGS), S=S, salt=salt)
        for salt in ("b1", "b2")
    )
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
        cum AS (SELECT *, (sum(n0) OVER (ORDER BY sid ROWS UNBOUNDED PRECEDING) - n0)::BIGINT AS off,
                       CASE WHEN rnd(sid, 'repo') < 0.6 THEN floor(pow(rnd(u, 'home'), 2) * {len(repos)})
                            WHEN rnd(sid, 'repo') < 0.85 THEN floor(pow(rnd(u, 'home2'), 2) * {len(repos)})
                            ELSE floor(pow(rnd(sid, 'repo2'), 1.5) * {len(repos)}) END::INTEGER AS r
                FROM raw)
        SELECT cum.*, least(n0, {n} - off)::BIGINT AS n, c.client, c.user_agent,
               has_csid AND c.client <> 'Unknown' AS attributed,
               CASE WHEN rnd(u, 'os') < 0.55 THEN '/Users/u' || lpad(u::VARCHAR, 4, '0') || '/code/'
                    ELSE '/home/u' || lpad(u::VARCHAR, 4, '0') || '/src/' END || g.dir AS working_directory,
               g.repository,
               CASE WHEN c.client = 'Codex' THEN NULL WHEN rnd(sid, 'br') < 0.35 THEN g.default_branch ELSE {b1} END
                   AS branch1,
               CASE WHEN c.client <> 'Codex' AND rnd(sid, 'br2') < 0.12 THEN {b2} END AS branch2,
               floor((0.2 + 0.6 * rnd(sid, 'brj')) * least(n0, {n} - off))::BIGINT AS branch_from,
               CASE c.client
                   WHEN 'Claude Code' THEN CASE WHEN rm < 0.35 THEN 0 WHEN rm < 0.85 THEN 1
                                                WHEN rm < 0.90 THEN 3 ELSE 4 END
                   WHEN 'Codex' THEN CASE WHEN rm < 0.5 THEN 7 WHEN rm < 0.9 THEN 6 ELSE 8 END
                   ELSE floor(rm * 12)::INTEGER END AS main_m,
               'u' || lpad(u::VARCHAR, 4, '0') || '@example.com' AS initiator,
               CASE WHEN has_csid THEN uuid7_at(session_start, sid, 'csid')::VARCHAR END AS client_session_id
        FROM cum JOIN g_clients c ON cum.c100 >= c.lo AND cum.c100 < c.hi JOIN g_repos g USING (r)
        WHERE off < {n}""")

    # Interceptions: threads (a prompt, then tool-result follow-ups), times, ids, lineage, status; the agent of
    # each thread (the first is the main agent's); whether a next interception in its session (for no client
    # session: in its thread, the session the audit sees) follows: interception k + 1.
    agents = " ".join(
        f"WHEN rnd(sid * 1000 + thread_no, 'agentname') < {share} THEN '{name}'" for name, share in SUBAGENTS[:-1]
    )
    db.execute(f"""
        CREATE TEMP TABLE g_i AS
        WITH x AS (SELECT sid, off, n, initiator, client, user_agent, client_session_id, main_m, rp, session_start,
                          attributed, working_directory, repository, branch1, branch2, branch_from,
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
                     CASE WHEN client = 'Claude Code' AND rnd(k, 'side') < 0.2 THEN 2 ELSE main_m END AS m,
                     CASE WHEN NOT attributed THEN NULL
                          WHEN thread_no = 1 OR rnd(sid * 1000 + thread_no, 'agent') >= {SUBAGENT_THREADS} THEN 'main'
                          ELSE CASE {agents} ELSE '{SUBAGENTS[-1][0]}' END END AS agent
              FROM t),
        v AS (SELECT *, uuid7_at(started_at, k, 'id') AS id,
                     started_at + to_microseconds((dur * 1e6)::BIGINT) AS ended_at
              FROM u)
        SELECT v.k, v.sid, v.j, v.id, v.initiator, g.provider,
               CASE WHEN g.provider = 'anthropic' THEN (CASE WHEN v.rp < 0.1 THEN 'bedrock-eu' ELSE 'anthropic' END)
                    ELSE (CASE WHEN v.rp < 0.2 THEN 'azure-openai' ELSE 'openai' END) END AS provider_name,
               v.m, g.model, v.client, v.user_agent, v.client_session_id,
               CASE WHEN NOT v.new_thread THEN lag(v.id) OVER th END AS thread_parent_id,
               CASE WHEN NOT v.new_thread THEN first_value(v.id) OVER th END AS thread_root_id,
               CASE WHEN NOT v.new_thread THEN 'toolu_' || hx(v.k - 1, 'tc0') END AS correlating_tool_call_id,
               v.new_thread, v.has_follow_up, v.started_at, v.ended_at,
               CASE WHEN v.attributed THEN v.working_directory END AS working_directory,
               CASE WHEN v.attributed THEN v.repository END AS repository,
               CASE WHEN NOT v.attributed THEN NULL WHEN v.branch2 IS NOT NULL AND v.j >= v.branch_from THEN v.branch2
                    ELSE v.branch1 END AS branch,
               v.agent,
               v.has_follow_up OR (v.client_session_id IS NOT NULL AND v.j < v.n - 1) AS has_next,
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
               CASE WHEN rnd(k, 'meta') < 0.3 THEN json_object('request_id', 'req_' || hx(k, 'req')) END,
               working_directory, repository, branch, agent
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
    db.execute(f"""
        INSERT INTO token_usages
        WITH x AS (SELECT k, id, provider, m, started_at, ended_at, {NTOK} AS ntok FROM g_i WHERE NOT unended),
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

    # Tool calls: 1-4 in a response that has a follow-up, 0-2 in a thread's last one unless it is the last of its
    # session (a conversation's final response ends its turn). Their results: in the next interception's request
    # (the one that carries them), bar a few never sent.
    tools, mcp_tools = _sql_list(TOOLS), _sql_list(MCP_TOOLS)
    tool_calls = """
        WITH x AS (
            SELECT k, id, provider, started_at, ended_at, has_follow_up,
                   CASE WHEN has_follow_up THEN 1 + floor(rnd(k, 'ntool') * 4)::INTEGER
                        WHEN status = 'completed' AND has_next THEN floor(rnd(k, 'ntool') * 3)::INTEGER
                        ELSE 0 END AS ntool
            FROM g_i WHERE NOT unended),
        y AS (SELECT *, unnest(range(ntool)) AS t FROM x WHERE ntool > 0),
        z AS (SELECT *, k * 16 + t AS r, rnd(k * 16 + t, 'inj') < 0.15 AND t > 0 AS injected,
                     'toolu_' || CASE WHEN t = 0 THEN hx(k, 'tc0') ELSE hx(k * 16 + t, 'tc') END AS call_id,
                     ended_at - to_microseconds((200000 * (ntool - t))::BIGINT) AS created_at
              FROM y)"""
    db.execute(f"""
        INSERT INTO tool_usages
        {tool_calls}
        SELECT uuid7_at(created_at, r, 'tool'), id,
               CASE WHEN provider = 'anthropic' THEN 'msg_' ELSE 'chatcmpl-' END || hx(k, 'resp') || '0',
               call_id,
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
    # ~5% errors; sizes up to 200 KB, log-skewed (median ~2 KB), or the whole text for short answers and errors
    results, errors = _sql_list([RESULTS[t][:EXCERPT] for t in TOOLS]), _sql_list(RESULT_ERRORS)
    short = ", ".join(str(TOOLS.index(t)) for t in SHORT_RESULTS)
    db.execute(f"""
        INSERT INTO tool_results
        {tool_calls},
        w AS (SELECT *, rnd(r, 'rerr') < 0.05 AS is_error, floor(rnd(r, 'tool') * {len(TOOLS)})::INTEGER AS tool_i
              FROM z JOIN (SELECT k - 1 AS of_k, id AS next_id, started_at AS next_started_at FROM g_i) n
                  ON n.of_k = z.k
              WHERE NOT injected AND rnd(r, 'unanswered') >= 0.03),
        v AS (SELECT *, CASE WHEN is_error THEN {errors}[1 + floor(rnd(r, 'rerrk') * {len(RESULT_ERRORS)})::INTEGER]
                             ELSE {results}[1 + tool_i] END AS excerpt
              FROM w)
        SELECT uuid7_at(next_started_at, r, 'result'), next_id, call_id, is_error,
               CASE WHEN is_error OR tool_i IN ({short}) THEN strlen(excerpt)
                    ELSE greatest(strlen(excerpt), floor(100 * pow(2000, pow(rnd(r, 'rsize'), 1.3))))::BIGINT END,
               excerpt, NULL, next_started_at
        FROM v ORDER BY next_started_at, r""")

    # Cache busts: ~2% of the interceptions with a predecessor in their session (and usage), within the cache's
    # lifetime; where the prefix changed (mostly a message; the system prompt, the tools; "unchanged": evicted;
    # NULL: not compared), what was expected, read, lost, written again, and the cost over a cache read.
    db.execute(f"""
        INSERT INTO cache_busts
        WITH x AS (
            SELECT k, id, provider, client, m, j, started_at, ended_at, prev_id, {NTOK} AS ntok,
                   greatest(epoch_ms(started_at) - epoch_ms(prev_ended_at), 0) AS gap_ms,
                   CASE WHEN provider = 'anthropic' AND rnd(k, 'bttl') < 0.15 THEN 3600 ELSE 300 END AS ttl,
                   4000 + floor(pow(rnd(k, 'bexp'), 1.5) * 160000)::BIGINT AS expected,
                   rnd(k, 'bloc') AS lu
            FROM g_i JOIN (SELECT k + 1 AS of_k, id AS prev_id, ended_at AS prev_ended_at FROM g_i) p ON p.of_k = k
            WHERE j > 0 AND (client_session_id IS NOT NULL OR NOT new_thread) AND NOT unended
              AND status IN ('completed', 'cancelled') AND rnd(k, 'bust') < {BUSTS}),
        y AS (
            SELECT *,
                   CASE WHEN lu < 0.70 THEN (CASE WHEN client = 'Codex' THEN 'input[' ELSE 'messages[' END)
                                            || floor(rnd(k, 'bn') * (2 * j + 2))::INTEGER::VARCHAR || ']'
                        WHEN lu < 0.82 THEN (CASE WHEN provider = 'anthropic' THEN 'system'
                                                  WHEN client = 'Codex' THEN 'instructions' ELSE 'messages[0]' END)
                        WHEN lu < 0.92 THEN 'tools' WHEN lu < 0.98 THEN 'unchanged' END AS location,
                   least(expected - 1024, CASE WHEN lu < 0.70 THEN floor(expected * (0.15 + 0.8 * rnd(k, 'bread')))
                                               WHEN lu < 0.82 THEN 2000 + floor(rnd(k, 'bread') * 12000)
                                               ELSE 0 END)::BIGINT AS read_tokens
            FROM x WHERE gap_ms <= ttl * 1000),
        z AS (
            SELECT *, expected - read_tokens AS lost,
                   CASE WHEN provider <> 'anthropic' THEN 0 WHEN rnd(k, 'brw') < 0.85 THEN expected - read_tokens
                        ELSE floor((expected - read_tokens) * rnd(k, 'brw2')) END::BIGINT AS rewritten,
                   started_at + to_microseconds(((epoch_us(ended_at) - epoch_us(started_at)) / (ntok + 1))::BIGINT)
                       AS created_at
            FROM y)
        SELECT uuid7_at(created_at, k, 'bust'), id, prev_id, expected, read_tokens, lost, rewritten, location, ttl,
               gap_ms, round(rewritten * g.p_cw + (lost - rewritten) * g.p_in - lost * g.p_cr)::BIGINT, NULL,
               created_at
        FROM z JOIN (SELECT m, p_in, p_cr, p_cw FROM g_models) g USING (m)
        ORDER BY created_at""")

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
            "tool_results",
            "cache_busts",
        )
    }
    counts["sessions"] = db.execute("SELECT count(DISTINCT session_id) FROM interceptions").fetchone()[0]  # type: ignore[index]
    db.execute("DROP TABLE g_i; DROP TABLE g_s; DROP TABLE g_models; DROP TABLE g_clients; DROP TABLE g_repos")
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
