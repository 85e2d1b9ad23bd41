"""The `aibridge` command on a seeded audit file (no proxy): every command and option, exact rows from `--json`,
the key values of the rich tables, filters and time bounds, keyset paging, bad input, tail, export, snapshot,
`--help` and $AIBRIDGE_DB.

The fixture is a small, fully known history: four users, three clients, three models on three configured
providers, sessions with several threads, prompts, client and injected tool calls (one failing), thoughts,
priced and unpriced token usage, every status, and calls on both sides of the UTC midnight 2026-03-02.
"""

import base64
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import click
import duckdb
import pytest
from click.testing import CliRunner, Result

from addon.audit import (
    AuditWriter,
    InterceptionEnded,
)
from addon.audit.queries import cache_hit_ratio
from addon.cli import render
from addon.cli.main import cli
from tests.support.audit_rows import MCP_URL, Call, CallBust, CallResult, ident, record_call
from tests.support.audit_rows import CallTool as Tool
from tests.support.holder import holding

DUCKDB_CLI = Path(sys.executable).parent / "duckdb"
WIDE = {"COLUMNS": "250", "AIBRIDGE_DB": None}
"""Rich tables wide enough that no cell is cut, and no $AIBRIDGE_DB from the developer's shell."""
BOUNDARY = datetime(2026, 3, 2, tzinfo=UTC)
"""A UTC day boundary: i4 starts exactly on it, i3 a microsecond before it."""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the seeded history -------------------------------------------------------------------------------------


SONNET, HAIKU, GPT = "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1"
SONNET_AT, HAIKU_AT, GPT_AT = "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "gpt-4.1-2025-04-14"
ANTHROPIC = {"provider": "anthropic", "provider_name": "anthropic"}
PARSER = {"working_directory": "/home/alice/parser", "repository": "github.com/acme/parser", "branch": "main"}
alice = partial(
    Call, user="alice", client="Claude Code", model=SONNET, session="cc-1", agent="main", **PARSER, **ANTHROPIC
)
bob = partial(Call, user="bob", client="Claude Code", provider="anthropic", provider_name="anthropic-eu", model=HAIKU)
carol = partial(
    Call, user="carol", client="Codex", provider="openai", provider_name="openai", model=GPT, session="cx-1",
    working_directory="/src/tool", repository="tool", agent="main",
)  # fmt: skip
anonymous = partial(Call, user="anonymous", client="Unknown", session=None)
CALLS = [
    alice(
        "i1",
        at("2026-03-01T10:00:00"),
        "completed",
        at("2026-03-01T10:00:05"),
        http_status=200,
        response_model=SONNET_AT,
        prompt="refactor the parser",
        usages=((100, 50, 1000, 200, 5000),),
        tools=(Tool("Read", "toolu_read", '{"path":"parser.py"}'),),
        thoughts=("Let me look at the parser first.",),
    ),
    alice(
        "i2",
        at("2026-03-01T10:01:00"),
        "completed",
        at("2026-03-01T10:01:04"),
        root="i1",
        parent="i1",
        http_status=200,
        response_model=SONNET_AT,
        usages=((20, 30, 1200, 0, 3000), (15, 10, 1300, 0, 2500)),  # two rounds of the injected tool loop
        results=(CallResult("toolu_read", False, 1200, "def parse(text):"),),  # 59 s after i1 made the call
        tools=(
            Tool("search_docs", "toolu_search", '{"q":"tokenizer"}', True, "timeout after 30 s", {"round": 1}),
            Tool("fetch_page", "toolu_fetch", '{"url":"https://docs.example/parse"}', True, None, {"round": 2}),
        ),
    ),
    alice(
        "i3",
        at("2026-03-01T23:59:59.999999"),
        "failed",
        at("2026-03-02T00:00:01"),
        error="overloaded_error: Overloaded",
        http_status=529,
        prompt="now write tests",
    ),
    alice(
        "i4",
        BOUNDARY,
        "completed",
        at("2026-03-02T00:00:30"),
        http_status=200,
        response_model=SONNET_AT,
        prompt="retry: now write tests",
        usages=((10, 400, 0, 0, 6100),),
        busts=(CallBust("i2", 1300, 0, 420, "system"),),
    ),
    bob(
        "i5",
        at("2026-03-03T09:00:00"),
        "completed",
        at("2026-03-03T09:00:02"),
        session="cc-2",
        http_status=200,
        response_model=HAIKU_AT,
        prompt="explain this error",
        usages=((300, 20, 0, 0, None),),
        thoughts=("The stack trace points at the loader.",),
    ),
    bob(
        "i6",
        at("2026-03-03T09:05:00"),
        "cancelled",
        at("2026-03-03T09:05:10"),
        session="cc-2",
        error="client disconnected",
        prompt="explain it again",
        usages=((5, 1, 0, 0, 7),),
    ),
    carol(
        "i7",
        at("2026-03-03T12:00:00"),
        "completed",
        at("2026-03-03T12:00:05"),
        http_status=200,
        response_model=GPT_AT,
        streaming=False,
        prompt="list the files",
        usages=((20, 9, 100, 0, 250),),
        tools=(Tool("shell", "call_ls", '{"cmd":["ls"]}'),),
    ),
    carol(
        "i8",
        at("2026-03-03T12:00:10"),
        "completed",
        at("2026-03-03T12:00:15"),
        root="i7",
        parent="i7",
        http_status=200,
        response_model=GPT_AT,
        usages=((40, 12, 100, 0, 300),),
    ),
    anonymous(
        "i9",
        at("2026-03-04T08:00:00"),
        "refused",
        at("2026-03-04T08:00:06"),
        provider="openai",
        provider_name="openai",
        model=GPT,
        error="this proxy does not accept your own key",
        http_status=403,
    ),
    anonymous(
        "i10",
        at("2026-03-04T08:00:00"),
        "completed",
        at("2026-03-04T08:00:03"),
        model=SONNET,
        http_status=200,
        response_model=SONNET_AT,
        prompt="ping",
        usages=((1, 1, 0, 0, 20),),
        **ANTHROPIC,
    ),
    anonymous(
        "i12",
        at("2026-03-04T08:00:05"),
        "completed",
        at("2026-03-04T08:00:06"),
        model=SONNET,
        root="i10",
        parent="i10",
        http_status=200,
        response_model=SONNET_AT,
        usages=((2, 3, 0, 0, 40),),
        **ANTHROPIC,
    ),
    alice("i11", at("2026-03-04T09:00:00"), None, session="cc-3", prompt="still running"),
]
BY_NAME = {c.name: c for c in CALLS}
ID = {c.name: ident(c.started, n) for n, c in enumerate(CALLS, 1)}
NAME = {str(v): k for k, v in ID.items()}


def session_of(call: Call) -> str:
    return call.session or str(ID[call.root] if call.root else ID[call.name])


def seed(path: str, calls: list[Call] = CALLS) -> None:
    writer = AuditWriter(path)
    for call in calls:
        emit_call(writer, call)
    writer.close()


def emit_call(writer: AuditWriter, call: Call, ids: dict[str, UUID] = ID) -> None:
    record_call(writer, call, ids)


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The seeded audit file, shared read-only by the tests that do not change it."""
    path = str(tmp_path_factory.mktemp("cli") / "audit.duckdb")
    seed(path)
    return path


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def db(request: pytest.FixtureRequest, db_file: str) -> str:
    """The seeded audit: the file, or the same history in PostgreSQL (every test on `db` runs on both and
    expects the same answers)."""
    if request.param == "duckdb":
        return db_file
    url = request.getfixturevalue("postgres_server").create_database(f"cli_{uuid4().hex[:12]}")
    seed(url)
    return url


@pytest.fixture
def copy_file(db_file: str, tmp_path: Path) -> str:
    """A private copy of the seeded file, for tests that append to it."""
    path = tmp_path / "audit.duckdb"
    shutil.copy(db_file, path)
    return str(path)


@pytest.fixture(params=["duckdb", "postgresql"])
def copy(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A private copy of the seeded audit, file or PostgreSQL database, for tests that append to it."""
    if request.param == "duckdb":
        return request.getfixturevalue("copy_file")
    url = request.getfixturevalue("postgres_server").create_database(f"cli_{uuid4().hex[:12]}")
    seed(url)
    return url


def append(path: str, *calls: Call, ids: dict[str, UUID]) -> None:
    """Append with the proxy's writer (in this process: drop the CLI's read-only handles on the file first)."""
    gc.collect()
    writer = AuditWriter(path)
    for call in calls:
        emit_call(writer, call, ids)
    writer.close()


# --- running the command ------------------------------------------------------------------------------------


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**WIDE, **(env or {})}, catch_exceptions=True)


def ok(*args: str, env: dict[str, str | None] | None = None) -> str:
    result = run(*args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def as_json(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return json.loads(ok(*args, "--json", env=env))


def fails(*args: str, env: dict[str, str | None] | None = None) -> str:
    """Runs a command that must be refused: non-zero exit, a one-line reason, no traceback."""
    result = run(*args, env=env)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"crashed instead of refusing: {result.exception!r}"
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # rich/click may wrap long messages


def table(out: str) -> dict[str, list[str]]:
    """A rich table's body rows, by their first cell (each row on one line: the console is wide enough)."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    by_key = {row[0]: row for row in rows}
    assert len(by_key) == len(rows), "a row was wrapped or repeated"
    return by_key


# --- expectations computed from the seeded history ----------------------------------------------------------


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def matching(calls: list[Call] = CALLS, **filters: str) -> list[Call]:
    def keep(c: Call) -> bool:
        checks = {
            "user": c.user,
            "provider": c.provider,
            "provider_name": c.provider_name,
            "model": c.model,
            "client": c.client,
            "session": session_of(c),
        }
        for key, value in filters.items():
            if key == "since" and c.started < utc(value):
                return False
            if key == "until" and c.started >= utc(value):
                return False
            if key in checks and checks[key] != value:
                return False
        return True

    return [c for c in calls if keep(c)]


def newest_first(calls: list[Call]) -> list[str]:
    return [c.name for c in sorted(calls, key=lambda c: (c.started, ID[c.name]), reverse=True)]


def totals(calls: list[Call]) -> dict[str, Any]:
    usages = [u for c in calls for u in c.usages]
    costs = [u[4] for u in usages if u[4] is not None]
    return {
        "input_tokens": sum(u[0] for u in usages),
        "output_tokens": sum(u[1] for u in usages),
        "cache_read_tokens": sum(u[2] for u in usages),
        "cache_write_tokens": sum(u[3] for u in usages),
        "cost_micros": sum(costs) if costs or not usages else None,  # nothing used costs 0
        "unpriced_rows": len(usages) - len(costs),
    }


def expected_interception(c: Call) -> dict[str, Any]:
    sums = totals([c])
    return {
        "id": str(ID[c.name]),
        "session_id": session_of(c),
        "user": c.user,
        "client": c.client,
        "provider_name": c.provider_name,
        "model": c.model,
        "streaming": c.streaming,
        "status": c.status,
        "error": c.error,
        "http_status": c.http_status,
        "started_at": iso(c.started),
        "ended_at": iso(c.ended) if c.ended else None,
        "input_tokens": sums["input_tokens"],
        "output_tokens": sums["output_tokens"],
        "cache_read_tokens": sums["cache_read_tokens"],
        "cache_write_tokens": sums["cache_write_tokens"],
        "cost_micros": sums["cost_micros"],
        "unpriced_rows": sums["unpriced_rows"],
        "working_directory": c.working_directory,
        "repository": c.repository,
        "branch": c.branch,
        "agent": c.agent,
        "cache_hit_ratio": cache_hit_ratio(sums),
    }


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [NAME[r["id"]] for r in rows]


# --- sessions -----------------------------------------------------------------------------------------------

SESSIONS = [
    {
        "session_id": str(ID["i10"]),
        "user": "anonymous",
        "client": "Unknown",
        "models": [SONNET],
        "providers": ["anthropic"],
        "repositories": [],
        "branches": [],
        "agents": [],
        "threads": 1,
        "interceptions": 2,
        "started_at": "2026-03-04T08:00:00Z",
        "last_active": "2026-03-04T08:00:06Z",
        "input_tokens": 3,
        "output_tokens": 4,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "unpriced_rows": 0,
        "cost_micros": 60,
        "last_prompt": "ping",
    },
    {
        "session_id": str(ID["i9"]),
        "user": "anonymous",
        "client": "Unknown",
        "models": [GPT],
        "providers": ["openai"],
        "repositories": [],
        "branches": [],
        "agents": [],
        "threads": 1,
        "interceptions": 1,
        "started_at": "2026-03-04T08:00:00Z",
        "last_active": "2026-03-04T08:00:06Z",
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "unpriced_rows": 0,
        "cost_micros": 0,  # refused before anything was used
        "last_prompt": None,
    },
    {
        "session_id": "cx-1",
        "user": "carol",
        "client": "Codex",
        "models": [GPT],
        "providers": ["openai"],
        "repositories": ["tool"],
        "branches": [],
        "agents": ["main"],
        "threads": 1,
        "interceptions": 2,
        "started_at": "2026-03-03T12:00:00Z",
        "last_active": "2026-03-03T12:00:15Z",
        "input_tokens": 60,
        "output_tokens": 21,
        "cache_read_tokens": 200,
        "cache_write_tokens": 0,
        "unpriced_rows": 0,
        "cost_micros": 550,
        "last_prompt": "list the files",
    },
    {
        "session_id": "cc-2",
        "user": "bob",
        "client": "Claude Code",
        "models": [HAIKU],
        "providers": ["anthropic-eu"],
        "repositories": [],
        "branches": [],
        "agents": [],
        "threads": 2,
        "interceptions": 2,
        "started_at": "2026-03-03T09:00:00Z",
        "last_active": "2026-03-03T09:05:10Z",
        "input_tokens": 305,
        "output_tokens": 21,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "unpriced_rows": 1,
        "cost_micros": 7,
        "last_prompt": "explain it again",
    },
    {
        "session_id": "cc-1",
        "user": "alice",
        "client": "Claude Code",
        "models": [SONNET],
        "providers": ["anthropic"],
        "repositories": ["github.com/acme/parser"],
        "branches": ["main"],
        "agents": ["main"],
        "threads": 3,
        "interceptions": 4,
        "started_at": "2026-03-01T10:00:00Z",
        "last_active": "2026-03-02T00:00:30Z",
        "input_tokens": 145,
        "output_tokens": 490,
        "cache_read_tokens": 3500,
        "cache_write_tokens": 200,
        "unpriced_rows": 0,
        "cost_micros": 16600,
        "last_prompt": "retry: now write tests",
    },
]
"""Ended sessions only (cc-3's one call is still in progress), most recently active first; the two anonymous
sessions (their ids are their root interceptions' ids) end at the same moment: the larger session id first."""


def test_sessions_json_is_every_ended_session_with_its_totals(db: str) -> None:
    assert as_json("sessions", "--db", db) == {"sessions": SESSIONS, "next": None}


def test_sessions_table_shows_the_key_values(db: str) -> None:
    out = ok("sessions", "--db", db)
    assert "Sessions" in out
    rows = table(out)
    assert list(rows) == [s["session_id"] for s in SESSIONS]
    assert rows["cc-1"] == [
        "cc-1",
        "alice",
        "Claude Code",
        SONNET,
        "3",
        "145",
        "490",
        "3,500",
        "200",
        "$0.0166",
        "retry: now write tests",
        "2026-03-01 10:00:00",
        "2026-03-02 00:00:30",
    ]
    assert rows[str(ID["i9"])][9] == "$0.0000"  # refused: nothing used, so nothing is unpriced
    assert rows["cc-2"][9] == "$0.0000 (+1 unpriced)"  # 7 micro-dollars, and a usage the book could not price
    assert rows[str(ID["i10"])][1:5] == ["anonymous", "Unknown", SONNET, "1"]
    assert "more: --after" not in out


# --- one session --------------------------------------------------------------------------------------------


def expected_step(c: Call) -> dict[str, Any]:
    return {
        "id": str(ID[c.name]),
        "user": c.user,
        "provider_name": c.provider_name,
        "model": c.model,
        "response_model": c.response_model,
        "client": c.client,
        "streaming": c.streaming,
        "status": c.status,
        "error": c.error,
        "http_status": c.http_status,
        "thread_parent_id": str(ID[c.parent]) if c.parent else None,
        "thread_root_id": str(ID[c.root]) if c.root else None,
        "started_at": iso(c.started),
        "ended_at": iso(c.ended) if c.ended else None,
        "working_directory": c.working_directory,
        "repository": c.repository,
        "branch": c.branch,
        "agent": c.agent,
        "prompts": [{"prompt": c.prompt, "created_at": iso(c.started)}] if c.prompt else [],
        "tools": [
            {
                "tool": t.name,
                "server_url": MCP_URL if t.injected else None,
                "call_id": t.call_id,
                "input": t.input,
                "injected": t.injected,
                "error": t.error,
                "metadata": t.metadata,
                "created_at": iso(c.started + timedelta(seconds=n)),
            }
            for n, t in enumerate(c.tools, 1)
        ],
        "thoughts": [
            {"content": text, "source": "thinking", "created_at": iso(c.started + timedelta(milliseconds=500 + n))}
            for n, text in enumerate(c.thoughts)
        ],
        "usage": [
            {
                "provider_response_id": f"resp-{c.name}-{n}",
                "input_tokens": u[0],
                "output_tokens": u[1],
                "cache_read_tokens": u[2],
                "cache_write_tokens": u[3],
                "cost_micros": u[4],
                "created_at": iso(c.started + timedelta(seconds=n)),
            }
            for n, u in enumerate(c.usages, 1)
        ],
        "cache_hit_ratio": cache_hit_ratio(totals([c])),
    }


def test_session_json_is_its_threads_in_order_with_every_step(db: str) -> None:
    step = {name: expected_step(BY_NAME[name]) for name in ("i1", "i2", "i3", "i4")}
    assert as_json("session", "cc-1", "--db", db) == {
        "session_id": "cc-1",
        "user": "alice",
        "client": "Claude Code",
        "started_at": "2026-03-01T10:00:00Z",
        "ended_at": "2026-03-02T00:00:30Z",
        "totals": {
            "input_tokens": 145,
            "output_tokens": 490,
            "cache_read_tokens": 3500,
            "cache_write_tokens": 200,
            "cost_micros": 16600,
            "unpriced_rows": 0,
        },
        "threads": [
            {
                "root": str(ID["i1"]),
                "interceptions": [step["i1"], step["i2"]],
                "prompt": "refactor the parser",
                "started_at": "2026-03-01T10:00:00Z",
            },
            {
                "root": str(ID["i3"]),
                "interceptions": [step["i3"]],
                "prompt": "now write tests",
                "started_at": "2026-03-01T23:59:59.999999Z",
            },
            {
                "root": str(ID["i4"]),
                "interceptions": [step["i4"]],
                "prompt": "retry: now write tests",
                "started_at": "2026-03-02T00:00:00Z",
            },
        ],
    }


def test_session_json_counts_unpriced_usage_and_finds_sessions_by_their_root(db: str) -> None:
    bob = as_json("session", "cc-2", "--db", db)
    assert bob["totals"] == {
        "input_tokens": 305,
        "output_tokens": 21,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_micros": 7,
        "unpriced_rows": 1,
    }
    assert [[s["status"] for s in t["interceptions"]] for t in bob["threads"]] == [["completed"], ["cancelled"]]
    # No client session id: the session is the thread root's id, and holds its children.
    anonymous = as_json("session", str(ID["i10"]), "--db", db)
    assert [[s["id"] for s in t["interceptions"]] for t in anonymous["threads"]] == [[str(ID["i10"]), str(ID["i12"])]]
    assert (anonymous["ended_at"], anonymous["totals"]["cost_micros"]) == ("2026-03-04T08:00:06Z", 60)
    assert "no session" in fails("session", str(ID["i12"]), "--db", db)  # a child is not a session of its own
    assert as_json("session", "cx-1", "--db", db)["threads"][0]["interceptions"][1]["thread_root_id"] == str(ID["i7"])
    in_progress = as_json("session", "cc-3", "--db", db)
    [[step]] = [t["interceptions"] for t in in_progress["threads"]]
    assert (step["status"], step["ended_at"], in_progress["ended_at"]) == (None, None, None)
    assert in_progress["totals"]["cost_micros"] == 0  # nothing used yet


def test_session_tree_shows_prompts_tools_thinking_and_tokens(db: str) -> None:
    out = ok("session", "cc-1", "--db", db)
    for text in (
        "Session cc-1  alice · Claude Code · 2026-03-01 10:00:00 → 2026-03-02 00:00:30 · in 145 out 490 "
        "cache 3,500/200 · $0.0166",
        "Thread 1  2026-03-01 10:00:00  refactor the parser",
        "Thread 2  2026-03-01 23:59:59  now write tests",
        "Thread 3  2026-03-02 00:00:00  retry: now write tests",
        "2026-03-01 10:00:00 anthropic claude-sonnet-4-5 — completed · cache hit 76.9%",  # 1,000 of 1,300
        "thinking: Let me look at the parser first.",
        'client tool Read({"path":"parser.py"})',
        'injected tool search_docs({"q":"tokenizer"}) → error: timeout after 30 s',
        'injected tool fetch_page({"url":"https://docs.example/parse"})',
        "tokens in 100 out 50 cache 1,000/200 · $0.0050",
        "tokens in 15 out 10 cache 1,300/0 · $0.0025",
        "2026-03-01 23:59:59 anthropic claude-sonnet-4-5 — failed (overloaded_error: Overloaded)",
    ):
        assert text in out, text
    assert "fetch_page" in out.split("search_docs")[1]  # tools in the order they were called
    unpriced = ok("session", "cc-2", "--db", db)
    assert "tokens in 300 out 20 cache 0/0 · unpriced" in unpriced
    assert "— cancelled (client disconnected)" in unpriced
    assert "— in progress" in ok("session", "cc-3", "--db", db)


def test_session_that_does_not_exist_is_refused(db: str) -> None:
    assert "no session 'nope'" in fails("session", "nope", "--db", db)
    assert "Missing argument 'SESSION_ID'" in fails("session", "--db", db)


# --- interceptions ------------------------------------------------------------------------------------------


def test_interceptions_json_is_every_call_newest_first(db: str) -> None:
    result = as_json("interceptions", "--db", db)
    assert result["next"] is None
    # i9 and i10 start at the same moment: the larger id first.
    assert names(result["interceptions"]) == ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5", "i4", "i3", "i2", "i1"]
    assert result["interceptions"] == [expected_interception(BY_NAME[n]) for n in names(result["interceptions"])]
    by_name = {NAME[r["id"]]: r for r in result["interceptions"]}
    assert (by_name["i2"]["input_tokens"], by_name["i2"]["cache_read_tokens"], by_name["i2"]["cost_micros"]) == (
        35,
        2500,
        5500,
    )
    assert by_name["i5"]["cost_micros"] is None  # its only usage is unpriced
    assert (by_name["i11"]["status"], by_name["i11"]["ended_at"]) == (None, None)
    assert by_name["i3"]["started_at"] == "2026-03-01T23:59:59.999999Z"


def test_interceptions_table_shows_the_key_values(db: str) -> None:
    out = ok("interceptions", "--db", db)
    cells = {NAME[key]: row for key, row in table(out).items()}
    assert list(cells) == ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5", "i4", "i3", "i2", "i1"]
    assert cells["i2"] == [
        str(ID["i2"]),
        "2026-03-01 10:01:00",
        "alice",
        "Claude Code",
        "anthropic",
        SONNET,
        "github.com/acme/parser",
        "main",
        "yes",
        "completed",
        "35",
        "40",
        "98.6%",  # 2500 of 2535 input tokens read from the cache
        "$0.0055",
    ]
    hit = {name: render.ratio(cache_hit_ratio(totals([BY_NAME[name]]))) for name in NAME.values()}
    assert cells["i7"][6:] == ["tool", "main", "no", "completed", "20", "9", hit["i7"], "$0.0003"]
    assert cells["i11"][9:] == ["in progress", "0", "0", "-", "$0.0000"]
    assert cells["i9"][9:] == ["refused", "0", "0", "-", "$0.0000"]  # no tokens: nothing to price
    assert cells["i6"][9] == "cancelled" and cells["i3"][9] == "failed"
    assert cells["i3"][9:] == ["failed", "0", "0", "-", "$0.0000"]  # a 529 with no tokens used: no cost, not unpriced
    assert cells["i5"][6:8] == ["", ""]  # bob's client said nothing about where it ran
    assert cells["i5"][13] == "unpriced"


# --- clients, models ----------------------------------------------------------------------------------------


def test_clients_and_models_json(db: str) -> None:
    assert as_json("clients", "--db", db) == {
        "clients": [
            {"name": "Claude Code", "interceptions": 7, "last_seen": "2026-03-04T09:00:00Z"},
            {"name": "Unknown", "interceptions": 3, "last_seen": "2026-03-04T08:00:05Z"},
            {"name": "Codex", "interceptions": 2, "last_seen": "2026-03-03T12:00:10Z"},
        ]
    }
    assert as_json("models", "--db", db) == {
        "models": [
            {"name": SONNET, "interceptions": 7, "last_seen": "2026-03-04T09:00:00Z"},
            {"name": GPT, "interceptions": 3, "last_seen": "2026-03-04T08:00:00Z"},
            {"name": HAIKU, "interceptions": 2, "last_seen": "2026-03-03T09:05:00Z"},
        ]
    }


def test_clients_and_models_tables(db: str) -> None:
    clients = ok("clients", "--db", db)
    assert "Clients" in clients and "last seen" in clients
    assert table(clients) == {
        "Claude Code": ["Claude Code", "7", "2026-03-04 09:00:00"],
        "Unknown": ["Unknown", "3", "2026-03-04 08:00:05"],
        "Codex": ["Codex", "2", "2026-03-03 12:00:10"],
    }
    models = ok("models", "--db", db)
    assert "Models" in models
    assert table(models)[HAIKU] == [HAIKU, "2", "2026-03-03 09:05:00"]


# --- usage --------------------------------------------------------------------------------------------------


def usage_row(key: str, interceptions: int, i: int, o: int, r: int, w: int, cost: int | None, unpriced: int) -> dict:
    ratio = round(r / (i + r + w), 4) if i + r + w else None
    return {
        "key": key,
        "interceptions": interceptions,
        "input_tokens": i,
        "output_tokens": o,
        "cache_read_tokens": r,
        "cache_write_tokens": w,
        "cost_micros": cost,
        "unpriced_rows": unpriced,
        "cache_hit_ratio": ratio,
    }


USAGE = {
    "model": [
        usage_row(SONNET, 5, 148, 494, 3500, 200, 16660, 0),
        usage_row(GPT, 2, 60, 21, 200, 0, 550, 0),
        usage_row(HAIKU, 2, 305, 21, 0, 0, 7, 1),
    ],
    "user": [
        usage_row("alice", 3, 145, 490, 3500, 200, 16600, 0),
        usage_row("carol", 2, 60, 21, 200, 0, 550, 0),
        usage_row("anonymous", 2, 3, 4, 0, 0, 60, 0),
        usage_row("bob", 2, 305, 21, 0, 0, 7, 1),
    ],
    "client": [
        usage_row("Claude Code", 5, 450, 511, 3500, 200, 16607, 1),
        usage_row("Codex", 2, 60, 21, 200, 0, 550, 0),
        usage_row("Unknown", 2, 3, 4, 0, 0, 60, 0),
    ],
    "provider": [
        usage_row("anthropic", 5, 148, 494, 3500, 200, 16660, 0),
        usage_row("openai", 2, 60, 21, 200, 0, 550, 0),
        usage_row("anthropic-eu", 2, 305, 21, 0, 0, 7, 1),
    ],
    "day": [
        usage_row("2026-03-01", 2, 135, 90, 3500, 200, 10500, 0),
        usage_row("2026-03-02", 1, 10, 400, 0, 0, 6100, 0),
        usage_row("2026-03-03", 4, 365, 42, 200, 0, 557, 1),
        usage_row("2026-03-04", 2, 3, 4, 0, 0, 60, 0),
    ],
    # as the clients stated them: bob's and the anonymous calls said nothing (None)
    "repo": [
        usage_row("github.com/acme/parser", 3, 145, 490, 3500, 200, 16600, 0),
        usage_row("tool", 2, 60, 21, 200, 0, 550, 0),
        usage_row(None, 4, 308, 25, 0, 0, 67, 1),
    ],
    "branch": [
        usage_row("main", 3, 145, 490, 3500, 200, 16600, 0),
        usage_row(None, 6, 368, 46, 200, 0, 617, 1),
    ],
    "agent": [
        usage_row("main", 5, 205, 511, 3700, 200, 17150, 0),
        usage_row(None, 4, 308, 25, 0, 0, 67, 1),
    ],
}
"""Only interceptions with token usage count; grouped by the interception's start (i3 at 23:59:59.999999 is
2026-03-01, i4 at midnight 2026-03-02); most expensive first."""


@pytest.mark.parametrize("by", list(USAGE))
def test_usage_json_by_each_group(db: str, by: str) -> None:
    assert as_json("usage", "--by", by, "--db", db) == {"by": by, "rows": USAGE[by]}


def test_usage_defaults_to_by_model_and_its_ratio_is_exact(db: str) -> None:
    result = as_json("usage", "--db", db)
    assert result["by"] == "model"
    assert [r["cache_hit_ratio"] for r in result["rows"]] == [0.9096, 0.7692, 0.0]


def test_usage_table_shows_the_key_values(db: str) -> None:
    out = ok("usage", "--db", db)
    assert "Usage by model" in out
    cells = table(out)
    assert list(cells) == [SONNET, GPT, HAIKU]
    assert cells[SONNET] == [SONNET, "5", "148", "494", "3,500", "200", "91.0%", "$0.0167"]
    assert cells[HAIKU] == [HAIKU, "2", "305", "21", "0", "0", "0.0%", "$0.0000 (+1 unpriced)"]
    by_day = ok("usage", "--by", "day", "--db", db)
    assert "Usage by day" in by_day
    assert table(by_day)["2026-03-02"] == ["2026-03-02", "1", "10", "400", "0", "0", "0.0%", "$0.0061"]


def test_usage_table_by_repo_names_the_unattributed(db: str) -> None:
    cells = table(ok("usage", "--by", "repo", "--db", db))
    assert list(cells) == ["github.com/acme/parser", "tool", "(none)"]


# --- actions, cache -------------------------------------------------------------------------------------------


def test_actions_json_pairs_each_call_with_its_result(db: str) -> None:
    result = as_json("actions", "cc-1", "--db", db)
    assert [(a["tool"], a["injected"], a["outcome"]) for a in result["actions"]] == [
        ("Read", False, "ok"),
        ("search_docs", True, "error"),
        ("fetch_page", True, "ok"),
    ]
    read = result["actions"][0]
    assert (read["interception_id"], read["agent"], read["arguments"]) == (
        str(ID["i1"]),
        "main",
        '{"path":"parser.py"}',
    )
    assert (read["result_interception_id"], read["result_bytes"], read["result_excerpt"]) == (
        str(ID["i2"]),
        1200,
        "def parse(text):",
    )
    assert read["duration_ms"] == 59_000  # from the end of i1's response to i2's request
    assert {k: v for k, v in result["outcomes"].items() if v} == {"ok": 2, "error": 1}
    assert not result["truncated"]


def test_actions_table_and_an_unknown_session(db: str) -> None:
    out = ok("actions", "cc-1", "--db", db)
    assert "Actions of session cc-1" in out
    [read] = [row for row in table(out).values() if row[2] == "Read"]
    assert read[1:] == ["main", "Read", '{"path":"parser.py"}', "ok", "1,200 B", "59.0 s", "def parse(text):"]
    assert "3 calls: 2 ok, 1 error" in out
    assert "no session 'nope'" in fails("actions", "nope", "--db", db)


def test_cache_json_prices_the_busts_by_session_and_user(db: str) -> None:
    result = as_json("cache", "--db", db)
    assert result["by"] == "session"
    assert result["totals"] == {
        "busts": 1,
        "lost_tokens": 1300,
        "rewritten_tokens": 1300,
        "lost_micros": 420,
        "unpriced_busts": 0,
    }
    [row] = result["rows"]
    assert (row["key"], row["busts"], row["lost_micros"], row["interceptions"]) == ("cc-1", 1, 420, 3)
    assert row["cache_hit_ratio"] == USAGE["user"][0]["cache_hit_ratio"]  # all of alice's usage is cc-1's
    [bust] = result["busts"]
    assert (bust["interception_id"], bust["location"], bust["expected_tokens"]) == (str(ID["i4"]), "system", 1300)
    assert [r["key"] for r in as_json("cache", "--by", "user", "--db", db)["rows"]] == ["alice"]
    assert as_json("cache", "--user", "bob", "--db", db)["rows"] == []


def test_cache_table(db: str) -> None:
    out = ok("cache", "--by", "model", "--db", db)
    assert "Prompt-cache busts 1 · 1,300 tokens not read from the cache · lost $0.0004" in " ".join(out.split())
    assert table(out)[SONNET][:5] == [SONNET, "1", "1,300", "1,300", "$0.0004"]
    assert "Costliest busts" in out and "system" in out


def test_cache_refuses_an_unknown_grouping(db: str) -> None:
    assert "Invalid value for '--by'" in fails("cache", "--by", "colour", "--db", db)


@pytest.mark.parametrize(
    ("option", "value", "sessions"),
    [
        ("--repo", "github.com/acme/parser", ["cc-1"]),
        ("--repo", "tool", ["cx-1"]),
        ("--branch", "main", ["cc-1"]),
        ("--agent", "main", ["cx-1", "cc-1"]),
        ("--agent", "Explore", []),
    ],
)
def test_attribution_filters(db: str, option: str, value: str, sessions: list[str]) -> None:
    assert [s["session_id"] for s in as_json("sessions", option, value, "--db", db)["sessions"]] == sessions
    listed = {i["session_id"] for i in as_json("interceptions", option, value, "--db", db)["interceptions"]}
    running = {"cc-3"} if "cc-1" in sessions else set()  # alice's call still in progress is listed, not a session
    assert listed == set(sessions) | running


# --- filters ------------------------------------------------------------------------------------------------

FILTERS: list[dict[str, str]] = [
    {"user": "alice"},
    {"user": "nobody"},
    {"provider": "anthropic"},
    {"provider_name": "anthropic-eu"},
    {"model": GPT},
    {"client": "Codex"},
    {"session": "cc-1"},
    {"session": str(ID["i10"])},
    {"since": "2026-03-03"},
    {"since": "2026-03-02", "until": "2026-03-04"},
    {"user": "alice", "model": SONNET, "since": "2026-03-02"},
    {"provider": "anthropic", "client": "Claude Code", "until": "2026-03-02T00:00:00.000001Z"},
    {"provider": "openai", "user": "carol", "session": "cx-1"},
]


def flags(filters: dict[str, str]) -> list[str]:
    return [part for key, value in filters.items() for part in (f"--{key.replace('_', '-')}", value)]


def filter_id(filters: dict[str, str]) -> str:
    return ",".join(f"{k}={v[:12]}" for k, v in filters.items())


@pytest.mark.parametrize("filters", FILTERS, ids=filter_id)
def test_filters_narrow_every_listing(db: str, filters: dict[str, str]) -> None:
    want = matching(**filters)
    assert names(as_json("interceptions", *flags(filters), "--db", db)["interceptions"]) == newest_first(want)

    clients = as_json("clients", *flags(filters), "--db", db)["clients"]
    assert {r["name"]: r["interceptions"] for r in clients} == dict(Counter(c.client for c in want))
    models = as_json("models", *flags(filters), "--db", db)["models"]
    assert {r["name"]: r["interceptions"] for r in models} == dict(Counter(c.model for c in want))

    rows = as_json("usage", "--by", "user", *flags(filters), "--db", db)["rows"]
    priced = [c for c in want if c.usages]
    assert {r["key"]: (r["interceptions"], r["input_tokens"], r["cost_micros"]) for r in rows} == {
        user: (
            len(mine := [c for c in priced if c.user == user]),
            totals(mine)["input_tokens"],
            totals(mine)["cost_micros"],
        )
        for user in {c.user for c in priced}
    }

    ended = [c for c in want if c.status is not None]
    sessions = as_json("sessions", *flags(filters), "--db", db)["sessions"]
    assert {s["session_id"]: s["interceptions"] for s in sessions} == dict(Counter(session_of(c) for c in ended))
    for s in sessions:
        mine = [c for c in ended if session_of(c) == s["session_id"]]
        assert s["models"] == sorted({c.model for c in mine})
        assert s["threads"] == sum(1 for c in mine if c.root is None)
        assert s["started_at"] == iso(min(c.started for c in mine))
        assert s["last_active"] == iso(max(c.ended for c in mine if c.ended))


def test_filters_take_literal_values(db: str) -> None:
    """The expected sets above are computed; a few spelled out, so the oracle itself is checked."""
    assert names(as_json("interceptions", "--user", "bob", "--db", db)["interceptions"]) == ["i6", "i5"]
    assert names(as_json("interceptions", "--provider-name", "anthropic-eu", "--db", db)["interceptions"]) == [
        "i6",
        "i5",
    ]
    assert names(as_json("interceptions", "--provider", "openai", "--db", db)["interceptions"]) == ["i9", "i8", "i7"]
    assert names(as_json("interceptions", "--session", "cx-1", "--model", GPT, "--db", db)["interceptions"]) == [
        "i8",
        "i7",
    ]
    assert names(
        as_json("interceptions", "--user", "alice", "--since", "2026-03-02", "--until", "2026-03-04", "--db", db)[
            "interceptions"
        ]
    ) == ["i4"]
    assert as_json("interceptions", "--model", "no-such-model", "--db", db) == {"interceptions": [], "next": None}
    assert as_json("sessions", "--user", "nobody", "--db", db) == {"sessions": [], "next": None}
    assert as_json("usage", "--client", "nobody", "--db", db) == {"by": "model", "rows": []}
    assert as_json("clients", "--user", "nobody", "--db", db) == {"clients": []}
    # Filters are exact: no prefix or case-insensitive matching.
    assert as_json("interceptions", "--user", "Alice", "--db", db)["interceptions"] == []
    assert as_json("interceptions", "--model", "claude", "--db", db)["interceptions"] == []


def test_session_filter_on_usage_covers_a_thread_without_a_client_session_id(db: str) -> None:
    """`usage` reads the start table directly: its session filter must match the view's session_id."""
    [row] = as_json("usage", "--session", str(ID["i10"]), "--db", db)["rows"]
    assert (row["key"], row["interceptions"], row["cost_micros"]) == (SONNET, 2, 60)
    [row] = as_json("usage", "--session", "cc-1", "--by", "day", "--db", db)["rows"][:1]
    assert row == usage_row("2026-03-01", 2, 135, 90, 3500, 200, 10500, 0)


# --- time bounds --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # --since is inclusive: i4 starts exactly at midnight; i3 a microsecond before it.
        (("--since", "2026-03-02"), ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5", "i4"]),
        (("--since", "2026-03-02T00:00:00Z"), ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5", "i4"]),
        (("--since", "2026-03-02T01:00:00+01:00"), ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5", "i4"]),
        (("--since", "2026-03-01T23:59:59.999999"), ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5", "i4", "i3"]),
        (("--since", "2026-03-02T00:00:00.000001Z"), ["i11", "i12", "i10", "i9", "i8", "i7", "i6", "i5"]),
        # --until is exclusive.
        (("--until", "2026-03-02"), ["i3", "i2", "i1"]),
        (("--until", "2026-03-01T19:00:00-05:00"), ["i3", "i2", "i1"]),
        (("--until", "2026-03-02T00:00:00.000001Z"), ["i4", "i3", "i2", "i1"]),
        (("--until", "2026-03-01T23:59:59.999999Z"), ["i2", "i1"]),
        # A window holding exactly the boundary instant, and an empty one.
        (("--since", "2026-03-02", "--until", "2026-03-02T00:00:00.000001"), ["i4"]),
        (("--since", "2026-03-02", "--until", "2026-03-02"), []),
        # Both ends on the same tie: i9 and i10 start at 08:00:00.
        (("--since", "2026-03-04T08:00:00", "--until", "2026-03-04T08:00:01"), ["i10", "i9"]),
        (("--since", "2026-03-04T08:00:00.000001"), ["i11", "i12"]),
    ],
)
def test_since_is_inclusive_and_until_exclusive(db: str, args: tuple[str, ...], expected: list[str]) -> None:
    assert names(as_json("interceptions", *args, "--db", db)["interceptions"]) == expected


def test_time_bounds_apply_to_usage_and_sessions_at_the_day_boundary(db: str) -> None:
    after = as_json("usage", "--by", "day", "--since", "2026-03-02", "--db", db)["rows"]
    assert [r["key"] for r in after] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    before = as_json("usage", "--by", "day", "--until", "2026-03-02", "--db", db)["rows"]
    assert [r["key"] for r in before] == ["2026-03-01"]
    [cc1] = [
        s for s in as_json("sessions", "--since", "2026-03-02", "--db", db)["sessions"] if s["session_id"] == "cc-1"
    ]
    assert (cc1["interceptions"], cc1["threads"], cc1["started_at"]) == (1, 1, "2026-03-02T00:00:00Z")
    [cc1] = as_json("sessions", "--session", "cc-1", "--until", "2026-03-02", "--db", db)["sessions"]
    assert (cc1["interceptions"], cc1["last_active"]) == (3, "2026-03-02T00:00:01Z")


# --- paging -------------------------------------------------------------------------------------------------


def walk(command: str, db: str, limit: int, *extra: str, between: Any = None) -> list[dict[str, Any]]:
    """Every page of a listing; `between(page_number)` runs after each page."""
    key, rows, after = command, [], None
    for page_number in range(1, 101):
        args = [command, "--db", db, "--limit", str(limit), *extra]
        page = as_json(*args, *(["--after", after] if after else []))
        assert len(page[key]) <= limit
        rows += page[key]
        after = page["next"]
        if after is None:
            return rows
        assert len(page[key]) == limit, "a page before the last one is short"
        if between is not None:
            between(page_number)
    raise AssertionError("more than 100 pages")


def ids_of(command: str, rows: list[dict[str, Any]]) -> list[str]:
    return [r["session_id" if command == "sessions" else "id"] for r in rows]


@pytest.mark.parametrize("command", ["sessions", "interceptions"])
@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pages_have_no_gaps_or_repeats(db: str, command: str, limit: int) -> None:
    whole = as_json(command, "--db", db, "--limit", "1000")
    assert whole["next"] is None
    pages = walk(command, db, limit)
    assert len(set(ids_of(command, pages))) == len(pages)
    assert pages == whole[command]  # the same rows, in the same order, with the same values


@pytest.mark.parametrize("command", ["sessions", "interceptions"])
def test_pages_of_a_filtered_listing(db: str, command: str) -> None:
    filters = ["--provider", "anthropic", "--since", "2026-03-01T12:00:00Z"]
    assert walk(command, db, 1, *filters) == as_json(command, "--db", db, *filters)[command]


def test_a_page_that_ends_the_listing_has_no_cursor(db: str) -> None:
    assert as_json("sessions", "--db", db, "--limit", "5")["next"] is None
    assert as_json("sessions", "--db", db, "--limit", "4")["next"] is not None
    assert as_json("interceptions", "--db", db, "--limit", "12")["next"] is None
    assert as_json("interceptions", "--db", db, "--limit", "11")["next"] is not None
    assert len(as_json("interceptions", "--db", db)["interceptions"]) == 12  # the default limit holds them all


def test_the_table_prints_the_cursor_of_the_next_page(db: str) -> None:
    cursor = as_json("interceptions", "--db", db, "--limit", "2")["next"]
    out = ok("interceptions", "--db", db, "--limit", "2")
    assert f"more: --after {cursor}" in out
    rest = ok("interceptions", "--db", db, "--limit", "2", "--after", cursor)
    assert str(ID["i9"]) in rest and str(ID["i11"]) not in rest
    cursor = as_json("sessions", "--db", db, "--limit", "3")["next"]
    assert f"more: --after {cursor}" in ok("sessions", "--db", db, "--limit", "3")


def later(name: str, started: datetime, status: str | None = "completed", **kw: Any) -> Call:
    """A call appended after the seeded history."""
    values: dict[str, Any] = {
        "user": "dave",
        "client": "Claude Code",
        "model": SONNET,
        "session": f"new-{name}",
        "usages": ((1, 2, 3, 4, 5),),
        **ANTHROPIC,
    }
    ended = started + timedelta(seconds=2) if status else None
    return Call(name, started, status, kw.pop("ended", ended), **(values | kw))


def test_appending_between_pages_of_interceptions_repeats_nothing(copy: str) -> None:
    before = as_json("interceptions", "--db", copy, "--limit", "1000")["interceptions"]
    now = datetime.now(UTC).replace(microsecond=0)
    added = [later("n1", now), later("n2", now), later("n3", now + timedelta(seconds=1))]
    ids = ID | {c.name: ident(c.started, 100 + n) for n, c in enumerate(added)}

    def add(page_number: int) -> None:
        if page_number <= len(added):
            append(copy, added[page_number - 1], ids=ids)

    pages = walk("interceptions", copy, 2, between=add)
    assert [r["id"] for r in pages] == [r["id"] for r in before]  # no repeats, nothing skipped
    assert len(as_json("interceptions", "--db", copy, "--limit", "1000")["interceptions"]) == len(before) + 3


def test_appending_between_pages_of_sessions_repeats_nothing(copy: str) -> None:
    before = as_json("sessions", "--db", copy, "--limit", "1000")["sessions"]
    now = datetime.now(UTC).replace(microsecond=0)
    anonymous = {"session": None, "user": "anonymous", "client": "Unknown"}
    # New activity in the sessions of pages already read (so they are now the most recent), and a new session.
    added = [
        later("n1", now, root="i10", parent="i10", **anonymous),
        later("n2", now, root="i9", parent="i9", **anonymous),
        later("n3", now + timedelta(seconds=1)),
    ]
    ids = ID | {c.name: ident(c.started, 100 + n) for n, c in enumerate(added)}

    def add(page_number: int) -> None:
        if page_number == 1:
            append(copy, added[0], ids=ids)
        elif page_number == 2:
            append(copy, *added[1:], ids=ids)

    pages = [s["session_id"] for s in walk("sessions", copy, 1, between=add)]
    assert len(set(pages)) == len(pages), f"a session repeated: {pages}"
    assert pages == [s["session_id"] for s in before]
    after = as_json("sessions", "--db", copy, "--limit", "1000")["sessions"]
    assert [s["session_id"] for s in after[:3]] == ["new-n3", str(ID["i10"]), str(ID["i9"])]
    assert after[1]["interceptions"] == 3


# --- bad input ----------------------------------------------------------------------------------------------


def cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("sessions", "--since"),
        ("interceptions", "--until"),
        ("clients", "--since"),
        ("models", "--until"),
        ("usage", "--since"),
        ("usage", "--until"),
    ],
)
def test_a_bad_time_is_refused(db: str, command: str, flag: str) -> None:
    message = fails(command, flag, "last tuesday", "--db", db)
    assert f"{flag}: 'last tuesday' is not an ISO 8601 date or time" in message
    assert message.startswith("Error:")


@pytest.mark.parametrize("command", ["sessions", "interceptions"])
def test_a_bad_cursor_is_refused(db: str, command: str) -> None:
    real = as_json(command, "--db", db, "--limit", "1")["next"]
    for bad in ("garbage!!", real[: len(real) // 2], cursor("2026-03-01T00:00:00Z"), cursor("a", "b", "c")):
        assert "--after: not a cursor this command printed" in fails(command, "--after", bad, "--db", db), bad
    assert "--after: 'yesterday' is not an ISO 8601" in fails(
        command, "--after", cursor("yesterday", str(ID["i1"])), "--db", db
    )


def test_a_cursor_of_another_listing_is_refused(db: str) -> None:
    """A sessions cursor (a session id such as "cc-2", not an interception id) pasted into `interceptions`,
    or a cursor whose parts are not strings, is a bad --after like any other, not a crash."""
    sessions_cursor = as_json("sessions", "--db", db, "--limit", "4")["next"]
    assert "--after" in fails("interceptions", "--after", sessions_cursor, "--db", db)
    assert "--after" in fails("interceptions", "--after", cursor(1, 2), "--db", db)
    assert "--after" in fails("sessions", "--after", cursor(1, "cc-1"), "--db", db)


@pytest.mark.parametrize("command", ["sessions", "interceptions"])
@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
def test_a_limit_out_of_range_is_refused(db: str, command: str, limit: str) -> None:
    message = fails(command, "--limit", limit, "--db", db)
    assert "Invalid value for '--limit'" in message
    assert "1<=x<=1000" in message or "is not a valid integer" in message


def test_limits_at_the_ends_of_the_range_are_taken(db: str) -> None:
    assert len(as_json("interceptions", "--limit", "1", "--db", db)["interceptions"]) == 1
    assert len(as_json("interceptions", "--limit", "1000", "--db", db)["interceptions"]) == 12


def test_an_unknown_usage_group_is_refused(db: str) -> None:
    message = fails("usage", "--by", "week", "--db", db)
    assert "Invalid value for '--by'" in message and "'week' is not one of" in message
    for choice in ("user", "model", "client", "provider", "day"):
        assert f"'{choice}'" in message


def test_bad_tail_and_export_options_are_refused(db: str, tmp_path: Path) -> None:
    assert "Invalid value for '--interval'" in fails("tail", "--interval", "0", "--db", db)
    assert "Invalid value for '--count'" in fails("tail", "--count", "0", "--db", db)
    assert "Invalid value for '--timeout'" in fails("tail", "--timeout", "-1", "--db", db)
    assert "Missing option '--parquet'" in fails("export", "--db", db)
    message = fails("export", "--parquet", str(tmp_path / "x"), "--instance", "a/b", "--db", db)
    assert "the instance name must be letters, digits" in message
    assert "--until: 'soon' is not an ISO 8601" in fails(
        "export", "--parquet", str(tmp_path / "x"), "--until", "soon", "--db", db
    )
    assert not (tmp_path / "x").exists()


def test_an_unknown_option_or_command_is_refused(db: str) -> None:
    assert "No such option '--nope'" in fails("sessions", "--nope", "--db", db)
    assert "No such command 'session-list'" in fails("session-list")


# --- which file ---------------------------------------------------------------------------------------------


def test_an_absent_file_names_the_file_and_the_socket(tmp_path: Path) -> None:
    absent = tmp_path / "absent.duckdb"
    for command in (["sessions"], ["session", "x"], ["interceptions"], ["usage"], ["tail", "--timeout", "0"]):
        message = fails(*command, "--db", str(absent))
        assert f"no audit file at {absent}" in message
        assert f"{absent}.sock" in message
        assert "--db" in message
    assert not absent.exists()  # looking does not create it


def test_the_default_file_is_aibridge_duckdb_in_the_current_directory(
    db_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    message = fails("sessions")
    assert "no audit file at aibridge.duckdb" in message
    assert f"{tmp_path.resolve()}/aibridge.duckdb.sock" in message
    shutil.copy(db_file, tmp_path / "aibridge.duckdb")
    assert as_json("sessions")["sessions"] == SESSIONS


def test_aibridge_db_is_honoured_and_db_overrides_it(db: str, tmp_path: Path) -> None:
    env = {"AIBRIDGE_DB": db}
    assert as_json("sessions", env=env)["sessions"] == SESSIONS
    assert as_json("usage", "--by", "day", env=env) == {"by": "day", "rows": USAGE["day"]}
    assert "no session 'nope'" in fails("session", "nope", env=env)
    absent = str(tmp_path / "elsewhere.duckdb")
    assert f"no audit file at {absent}" in fails("sessions", "--db", absent, env=env)
    assert f"no audit file at {absent}" in fails("sessions", env={"AIBRIDGE_DB": absent})


@pytest.fixture
def holder(copy_file: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the audit file open, as a proxy without a query endpoint would."""
    with holding(copy_file) as process:
        yield process


def test_a_file_held_by_another_process_names_it(copy_file: str, holder: subprocess.Popen[str]) -> None:
    for command in (["sessions"], ["usage", "--json"], ["snapshot", copy_file + ".snap"]):
        message = fails(*command, "--db", copy_file)
        assert f"{copy_file} is held by PID {holder.pid}" in message
        assert "sys.stdin.read()" in message  # the holder's command line
        assert f"no proxy query endpoint answers at {copy_file}.sock" in message


def test_a_stale_socket_falls_back_to_the_file(copy_file: str) -> None:
    """A proxy killed with -9 leaves `<file>.sock` behind, with nobody listening."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(copy_file + ".sock")
    stale.close()
    assert Path(copy_file + ".sock").exists()
    assert as_json("sessions", "--db", copy_file)["sessions"] == SESSIONS
    assert as_json("usage", "--db", copy_file)["rows"] == USAGE["model"]


# --- tail ---------------------------------------------------------------------------------------------------


@pytest.fixture
def recent(tmp_path: Path) -> tuple[str, list[Call]]:
    """A file whose calls ended minutes ago (tail starts with the last ten), one long ago, one still going."""
    now = datetime.now(UTC).replace(microsecond=0)
    calls = [
        later("old", now - timedelta(minutes=30)),
        later("r1", now - timedelta(minutes=3), user="alice", usages=((10, 20, 30, 40, 1500),)),
        later("r2", now - timedelta(minutes=2), "failed", error="upstream said 500", http_status=500),
        later("r3", now - timedelta(minutes=1), user="bob", provider_name="openai", model=GPT, usages=()),
        later("going", now - timedelta(seconds=30), None),
    ]
    ids = {c.name: ident(c.started, n) for n, c in enumerate(calls)}
    path = str(tmp_path / "recent.duckdb")
    writer = AuditWriter(path)
    for call in calls:
        emit_call(writer, call, ids)
    writer.close()
    return path, [c for c in calls if c.name.startswith("r")]


def tail_rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_tail_count_stops_after_that_many(recent: tuple[str, list[Call]]) -> None:
    path, calls = recent
    rows = tail_rows(ok("tail", "--count", "2", "--interval", "0.1", "--json", "--db", path))
    assert [r["ended_at"] for r in rows] == [iso(c.ended) for c in calls[:2] if c.ended]
    first = rows[0]
    assert first == {
        "id": first["id"],
        "session_id": "new-r1",
        "user": "alice",
        "client": "Claude Code",
        "provider_name": "anthropic",
        "model": SONNET,
        "streaming": True,
        "status": "completed",
        "http_status": None,
        "error": None,
        "started_at": iso(calls[0].started),
        "ended_at": iso(calls[0].ended) if calls[0].ended else None,
        "input_tokens": 10 + 30 + 40,  # tail counts cached input in
        "output_tokens": 20,
        "cost_micros": 1500,
        "unpriced_rows": 0,
    }


def test_tail_timeout_prints_the_last_ten_minutes_once_and_stops(recent: tuple[str, list[Call]]) -> None:
    path, _ = recent
    rows = tail_rows(ok("tail", "--timeout", "0", "--json", "--db", path))
    assert [(r["user"], r["status"]) for r in rows] == [
        ("alice", "completed"),
        ("dave", "failed"),
        ("bob", "completed"),
    ]
    assert (rows[2]["input_tokens"], rows[2]["cost_micros"]) == (0, 0)  # no usage recorded: nothing to price
    # More wanted than there are: the timeout ends it (after a few polls of nothing new).
    rows = tail_rows(ok("tail", "--count", "10", "--timeout", "0.3", "--interval", "0.1", "--json", "--db", path))
    assert len(rows) == 3


def test_tail_lines_for_people(recent: tuple[str, list[Call]]) -> None:
    path, calls = recent
    lines = ok("tail", "--timeout", "0", "--db", path).splitlines()
    assert len(lines) == 3
    assert calls[0].ended is not None
    assert lines[0].startswith(f"{iso(calls[0].ended)[:19].replace('T', ' ')}  alice ")
    assert "anthropic/claude-sonnet-4-5  completed" in lines[0] and "in 80 out 20  $0.0015" in lines[0]
    assert "failed 500" in lines[1] and lines[1].endswith("upstream said 500")
    assert "openai/gpt-4.1  completed" in lines[2] and "in 0 out 0  $0.0000" in lines[2]


def test_tail_of_the_seeded_history_shows_nothing_old(db: str) -> None:
    assert ok("tail", "--timeout", "0", "--json", "--db", db) == ""


# --- export -------------------------------------------------------------------------------------------------

DAYS = {
    "interceptions": {"2026-03-01": 3, "2026-03-02": 1, "2026-03-03": 4, "2026-03-04": 4},
    "token_usages": {"2026-03-01": 3, "2026-03-02": 1, "2026-03-03": 4, "2026-03-04": 2},
    "user_prompts": {"2026-03-01": 2, "2026-03-02": 1, "2026-03-03": 3, "2026-03-04": 2},
    "tool_usages": {"2026-03-01": 3, "2026-03-03": 1},
    "model_thoughts": {"2026-03-01": 1, "2026-03-03": 1},
    "tool_results": {"2026-03-01": 1},
    "cache_busts": {"2026-03-02": 1},
}
"""Rows per table and UTC day (the day of started_at, or created_at for the children)."""


def exported(directory: Path, instance: str, before: str = "9999") -> list[str]:
    return [
        str(directory / table / f"date={day}" / f"{instance}.parquet")
        for table, days in DAYS.items()
        for day in days
        if day < before
    ]


def parquet_counts(directory: Path, table: str) -> dict[str, int]:
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT date::VARCHAR, count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY ALL ORDER BY 1",
            [str(directory / table / "**" / "*.parquet")],
        ).fetchall()
    return dict(rows)


def test_export_writes_closed_days_and_skips_them_next_time(db: str, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    first = as_json("export", "--parquet", str(out), "--instance", "host-a", "--until", "2026-03-03", "--db", db)
    assert first == {"written": exported(out, "host-a", "2026-03-03"), "skipped": 0}
    assert len(first["written"]) == 10
    again = as_json("export", "--parquet", str(out), "--instance", "host-a", "--until", "2026-03-03", "--db", db)
    assert again == {"written": [], "skipped": 10}
    rest = as_json("export", "--parquet", str(out), "--instance", "host-a", "--db", db)
    assert rest == {"written": [p for p in exported(out, "host-a") if p not in first["written"]], "skipped": 10}
    assert sorted(str(p) for p in out.rglob("*") if p.is_file()) == sorted(exported(out, "host-a"))
    for table, days in DAYS.items():
        assert parquet_counts(out, table) == days, table
    # Another proxy's files sit beside these, and are read back together.
    as_json("export", "--parquet", str(out), "--instance", "host-b", "--until", "2026-03-02", "--db", db)
    assert parquet_counts(out, "interceptions") == DAYS["interceptions"] | {"2026-03-01": 6}


def test_exported_rows_keep_their_values(db: str, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    ok("export", "--parquet", str(out), "--instance", "one", "--db", db)
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT id::VARCHAR, status, session_id, started_at FROM read_parquet(?, hive_partitioning = true) "
            "WHERE date = '2026-03-02'",
            [str(out / "interceptions" / "**" / "*.parquet")],
        ).fetchall()
        cost = con.execute(
            "SELECT sum(cost_micros), count(*) FILTER (WHERE cost_micros IS NULL) FROM read_parquet(?)",
            [str(out / "token_usages" / "**" / "*.parquet")],
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3].astimezone(UTC)) for r in rows] == [(str(ID["i4"]), "completed", "cc-1", BOUNDARY)]
    assert cost == [(16660 + 550 + 7, 1)]


def test_export_leaves_today_open(copy: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    append(copy, later("today", now), ids=ID | {"today": ident(now, 1)})
    out = tmp_path / "lake"
    today, tomorrow = now.date().isoformat(), (now + timedelta(days=1)).date().isoformat()
    result = as_json("export", "--parquet", str(out), "--instance", "x", "--db", copy)
    assert result["written"] == exported(out, "x")
    assert not list(out.glob(f"*/date={today}"))
    result = as_json("export", "--parquet", str(out), "--instance", "x", "--until", tomorrow, "--db", copy)
    assert result == {
        "written": [str(out / t / f"date={today}" / "x.parquet") for t in ("interceptions", "token_usages")],
        "skipped": 18,
    }


def test_export_does_not_freeze_a_call_still_running_across_midnight(copy: str, tmp_path: Path) -> None:
    """A scheduled export just after midnight must not write yesterday while one of its calls is still running:
    the day's file is never rewritten, so the call would stay "in progress" in the lake for good."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    running = later("late", midnight - timedelta(seconds=10), None)
    ids = ID | {"late": ident(running.started, 1)}
    append(copy, running, ids=ids)
    out = tmp_path / "lake"
    as_json("export", "--parquet", str(out), "--instance", "h", "--db", copy)  # the 00:05 run: it still runs
    gc.collect()
    writer = AuditWriter(copy)
    writer.emit(InterceptionEnded(interception_id=ids["late"], status="completed", ended_at=datetime.now(UTC)))
    writer.close()
    as_json("export", "--parquet", str(out), "--instance", "h", "--db", copy)  # the next run
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT status FROM read_parquet(?) WHERE id = ?",
            [str(out / "interceptions" / "**" / "*.parquet"), str(ids["late"])],
        ).fetchall()
    assert rows == [("completed",)]


def test_export_by_default_names_files_after_the_host_and_the_audit_file(db: str, tmp_path: Path) -> None:
    """--help: "default: host name and audit file name" (as the live endpoint names them), so that a file
    exported offline is skipped, not written twice under another name, when the proxy exports it later."""
    out = tmp_path / "lake"
    result = as_json("export", "--parquet", str(out), "--until", "2026-03-02", "--db", db)
    instance = f"{os.uname().nodename}-{'postgresql' if db.startswith('postgresql:') else Path(db).stem}"
    assert result["written"] == exported(out, instance, "2026-03-02")


def test_an_unreachable_postgresql_says_so_without_the_password() -> None:
    message = fails("sessions", "--db", "postgresql://bridge:s3cret@127.0.0.1:1/audit")
    assert "cannot connect to postgresql://bridge:***@127.0.0.1:1/audit" in message
    assert "Check --db (or $AIBRIDGE_DB) and that the server runs." in message
    assert "s3cret" not in message


def test_export_says_what_it_did(db: str, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    assert (
        ok("export", "--parquet", str(out), "--instance", "h", "--db", db)
        == "wrote 18 file(s), skipped 0 already exported\n"
    )
    assert (
        ok("export", "--parquet", str(out), "--instance", "h", "--db", db)
        == "wrote 0 file(s), skipped 18 already exported\n"
    )


def test_export_takes_a_relative_directory(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = as_json("export", "--parquet", "lake", "--instance", "h", "--until", "2026-03-02", "--db", db)
    assert result["written"][0] == str(tmp_path.resolve() / "lake/interceptions/date=2026-03-01/h.parquet")


# --- snapshot -----------------------------------------------------------------------------------------------


def duckdb_cli(path: Path, sql: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(DUCKDB_CLI), "-readonly", "-json", str(path), "-c", sql], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "[]")


def test_snapshot_is_a_file_the_duckdb_cli_opens(db: str, tmp_path: Path) -> None:
    target = tmp_path / "copy.duckdb"
    out = ok("snapshot", str(target), "--db", db)
    size = target.stat().st_size
    assert out == f"wrote {target} ({size:,} bytes)\n"
    assert duckdb_cli(target, "SELECT count(*) AS n, count(ended_at) AS ended FROM interceptions") == [
        {"n": 12, "ended": 11}
    ]
    assert duckdb_cli(target, "SELECT sum(cost_micros)::BIGINT AS cost, count(*) AS n FROM token_usages") == [
        {"cost": 16660 + 550 + 7, "n": 10}
    ]
    assert duckdb_cli(target, "SELECT session_id FROM interceptions WHERE id = '" + str(ID["i8"]) + "'") == [
        {"session_id": "cx-1"}
    ]
    # The copy answers the CLI like the original.
    assert as_json("sessions", "--db", str(target)) == as_json("sessions", "--db", db)
    assert not list(tmp_path.glob("*.tmp"))


def test_snapshot_json_and_overwrite(db: str, tmp_path: Path) -> None:
    target = tmp_path / "copy.duckdb"
    target.write_text("old")
    result = as_json("snapshot", str(target), "--db", db)
    assert result == {"snapshot": str(target), "bytes": target.stat().st_size}
    assert duckdb_cli(target, "SELECT count(*) AS n FROM user_prompts") == [{"n": 8}]
    assert "must not end in .tmp" in fails("snapshot", str(tmp_path / "x.tmp"), "--db", db)
    assert "Missing argument 'PATH'" in fails("snapshot", "--db", db)


# --- web ----------------------------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str, int]]:
    """What `aibridge web` would serve (app, host, port), instead of serving it."""
    from addon.web import app as web_app

    calls: list[tuple[Any, str, int]] = []
    monkeypatch.setattr(web_app, "serve", lambda app, host, port: calls.append((app, host, port)))
    return calls


def test_web_serves_the_audit_on_the_loopback_by_default(db_file: str, served: list[tuple[Any, str, int]]) -> None:
    from starlette.testclient import TestClient

    result = run("web", "--db", db_file)
    assert result.exit_code == 0, result.output
    ((app, host, port),) = served
    assert (host, port) == ("127.0.0.1", 8765)
    assert "on http://127.0.0.1:8765/" in result.stderr and "spend is shown without budget limits" in result.stderr
    with TestClient(app) as client:
        sessions = client.get("/sessions?format=json").json()["sessions"]
    assert [s["session_id"] for s in sessions][:2] == [str(ID["i10"]), str(ID["i9"])]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "myhost.example"])
def test_web_off_the_loopback_refuses_to_start_without_a_token(
    db_file: str, served: list[tuple[Any, str, int]], host: str
) -> None:
    message = fails("web", "--host", host, "--db", db_file)
    assert f"--host {host} is reachable from other machines" in message
    assert "--token" in message and "AIBRIDGE_WEB_TOKEN" in message
    assert served == []


def test_web_with_a_token_from_the_option_or_the_environment(db_file: str, served: list[tuple[Any, str, int]]) -> None:
    from starlette.testclient import TestClient

    result = run("web", "--host", "0.0.0.0", "--port", "9000", "--token", "t0k-secret", "--db", db_file)
    assert result.exit_code == 0, result.output
    assert "t0k-secret" not in result.output
    assert "needs the access token" in result.stderr
    result = run("web", "--host", "::", "--db", db_file, env={"AIBRIDGE_WEB_TOKEN": "env-secret"})
    assert result.exit_code == 0, result.output
    assert "env-secret" not in result.output and "http://[::]:8765/" in result.stderr
    (first, _, port), (second, host, _) = served
    assert (port, host) == (9000, "::")
    for app, token in ((first, "t0k-secret"), (second, "env-secret")):
        with TestClient(app) as client:
            assert client.get("/sessions").status_code == 401
            assert client.get("/sessions", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert "the access token is empty" in fails("web", "--token", " ", "--db", db_file)


def test_web_reads_budgets_from_the_proxys_config(
    db_file: str, served: list[tuple[Any, str, int]], tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    config = tmp_path / "aibridge.toml"
    config.write_text("[budgets.users]\nalice = 0.5\n")
    result = run("web", "--config", str(config), "--db", db_file)
    assert result.exit_code == 0, result.output
    assert "without budget limits" not in result.stderr
    with TestClient(served[0][0]) as client:
        data = client.get("/spend?format=json").json()
    assert data["limits"] is True
    assert {b["user"]: b["limit_micros"] for b in data["budgets"]}["alice"] == 500_000
    config.write_text("[budgets.users]\nalice = 'lots'\n")
    assert "--config: " in fails("web", "--config", str(config), "--db", db_file)
    assert "cannot read" in fails("web", "--config", str(tmp_path / "none.toml"), "--db", db_file)


def test_web_with_no_audit_says_so_at_start(tmp_path: Path, served: list[tuple[Any, str, int]]) -> None:
    assert "no audit file at" in fails("web", "--db", str(tmp_path / "none.duckdb"))
    assert "Invalid value for '--port'" in fails("web", "--port", "0")
    assert served == []


# --- help ---------------------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    out = ok("--help")
    assert set(cli.commands) == {
        "sessions",
        "session",
        "interceptions",
        "clients",
        "models",
        "usage",
        "tail",
        "export",
        "snapshot",
        "add-user",
        "web",
        "actions",
        "cache",
    }
    for name in cli.commands:
        assert f"  {name} " in out, name
    assert ok("-h") == out


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_help_documents_every_option(name: str) -> None:
    command = cli.commands[name]
    out = " ".join(ok(name, "--help").split())
    assert out.startswith("Usage: ") and f" {name} [OPTIONS]" in out
    assert " ".join((command.help or "").split()[:4]) in out
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
            for opt in param.opts:
                assert opt in out, f"{name}: {opt} missing from --help"
            assert " ".join(param.help.split()[:3]) in out
        else:
            assert param.human_readable_name.upper() in out
    for documented in ("--db", "--help") if name != "add-user" else ("--config", "--help"):  # the audit's, or the TOML
        assert documented in out


def test_version() -> None:
    assert ", version 0.1.0" in ok("--version")
