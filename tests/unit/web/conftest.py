"""A small, fully known audit for the web view, written by the real `AuditWriter`: four sessions of four users on
three clients and models, threads, prompts (one holding a `<script>`, one a spreadsheet formula), thoughts,
client and injected tool calls (one failing), priced and unpriced usage, a failed call, and one call that ended
minutes ago (this month's spend, and what /live shows)."""

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from addon.audit import (
    AuditWriter,
)
from tests.support.audit_rows import Call as Recorded
from tests.support.audit_rows import CallResult, CallTool, record_call

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = datetime.now(UTC).replace(microsecond=0)
SCRIPT_PROMPT = "<script>alert(1)</script> now write tests"
FORMULA_PROMPT = '=HYPERLINK("http://evil.example") list the files'


@dataclass(frozen=True)
class Tool:
    name: str
    input: str
    injected: bool = False
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    name: str
    n: int
    started: datetime
    seconds: float
    """How long it ran (None: still running)."""
    user: str
    client: str
    model: str
    provider: str
    provider_name: str
    session: str
    status: str = "completed"
    root: str | None = None
    error: str | None = None
    http_status: int = 200
    prompt: str | None = None
    usages: tuple[tuple[int, int, int, int, int | None], ...] = ()
    """(input, output, cache read, cache write, cost in micro-dollars or None: unpriced)."""
    tools: tuple[Tool, ...] = ()
    thoughts: tuple[str, ...] = ()
    results: tuple[CallResult, ...] = ()
    """Results of earlier calls' tools (their ids: toolu_<call>_<n>)."""
    where: dict[str, str] = field(default_factory=dict)
    """Attribution: working_directory, repository, branch, agent."""

    @property
    def id(self) -> UUID:
        ms = int(self.started.timestamp() * 1000)
        return UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | self.n)

    @property
    def ended(self) -> datetime:
        return self.started + timedelta(seconds=self.seconds)


ALICE = {"user": "alice", "client": "Claude Code", "model": "claude-sonnet-4-5", "provider": "anthropic"}
PARSER = {"repository": "github.com/acme/parser", "branch": "main", "agent": "main"}
CALLS = [
    Call(
        "i1",
        1,
        T0,
        5,
        **ALICE,
        provider_name="anthropic",
        session="cc-1",
        prompt="refactor the parser",
        usages=((100, 50, 1000, 200, 5000),),
        tools=(Tool("Read", '{"path":"parser.py"}'),),
        thoughts=("Let me look at the parser first.",),
        where=PARSER,
    ),
    Call(
        "i2",
        2,
        T0 + timedelta(minutes=1),
        4,
        **ALICE,
        provider_name="anthropic",
        session="cc-1",
        root="i1",
        usages=((20, 30, 1200, 0, 3000), (15, 10, 1300, 0, 2500)),
        results=(CallResult("toolu_i1_1", True, 2048, "No such file: parser.py"),),  # 59 s after the call
        where={**PARSER, "agent": "Explore"},
        tools=(
            Tool("search_docs", '{"q":"tokenizer"}', True, "timeout after 30 s", {"duration_ms": 30000}),
            Tool(
                "fetch_page", '{"url":"https://docs.example/p"}', True, None, {"duration_ms": 120, "result_size": 2048}
            ),
        ),
    ),
    Call(
        "i3",
        3,
        T0 + timedelta(minutes=5),
        1,
        **ALICE,
        provider_name="anthropic",
        session="cc-1",
        status="failed",
        error="overloaded_error: Overloaded",
        http_status=529,
        prompt=SCRIPT_PROMPT,
    ),
    Call(
        "i4",
        4,
        T0 + timedelta(days=1),
        3,
        user="bob",
        client="Codex",
        model="gpt-4.1",
        provider="openai",
        provider_name="openai",
        session="cx-1",
        prompt=FORMULA_PROMPT,
        usages=((300, 20, 0, 0, None),),
    ),
    Call(
        "i5",
        5,
        T0 + timedelta(days=2),
        2,
        user="carol",
        client="Claude Code",
        model="claude-haiku-4-5",
        provider="anthropic",
        provider_name="anthropic-eu",
        session="cc-2",
        prompt="explain this error",
        usages=((10, 400, 0, 0, 90000),),
    ),
    Call(
        "i6",
        6,
        NOW - timedelta(minutes=3),
        60,
        user="dave",
        client="Zed",
        model="claude-sonnet-4-5",
        provider="anthropic",
        provider_name="anthropic",
        session="zed-1",
        prompt="recent work",
        usages=((5, 5, 0, 0, 1_500_000),),
    ),
]
BY_NAME = {c.name: c for c in CALLS}


def emit(writer: AuditWriter, call: Call) -> None:
    """Through the fixture builder the CLI's tests use too: the thread's parent is its root."""
    tools = tuple(
        CallTool(t.name, f"toolu_{call.name}_{n}", t.input, t.injected, t.error, t.metadata)
        for n, t in enumerate(call.tools, 1)
    )
    recorded = Recorded(
        call.name,
        call.started,
        call.status,
        call.ended,
        user=call.user,
        client=call.client,
        provider=call.provider,
        provider_name=call.provider_name,
        model=call.model,
        session=call.session,
        root=call.root,
        parent=call.root,
        error=call.error,
        http_status=call.http_status,
        prompt=call.prompt,
        usages=call.usages,
        tools=tools,
        thoughts=call.thoughts,
        results=call.results,
        **call.where,
    )
    record_call(writer, recorded, {c.name: c.id for c in (*CALLS, call)})


def seed(path: str, calls: list[Call] = CALLS) -> None:
    writer = AuditWriter(path)
    for call in calls:
        emit(writer, call)
    writer.close()


@pytest.fixture(scope="session")
def audit_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("web") / "audit.duckdb")
    seed(path)
    return path


@pytest.fixture
def own_file(audit_file: str, tmp_path: Path) -> str:
    """A private copy, for tests that append to it."""
    path = tmp_path / "audit.duckdb"
    shutil.copy(audit_file, path)
    return str(path)
