"""The audit writer, on a real DuckDB file."""

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from addon.audit import (
    AuditFileLocked,
    AuditWriter,
    InterceptionEnded,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolResultReturned,
)
from addon.audit.duckfile import open_database
from addon.ids import uuid7
from tests.support.audit_rows import T0, bust, query, started, tool
from tests.support.holder import holding


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "audit.duckdb")


def test_every_kind_of_event_is_written(path: str) -> None:
    a, b = uuid7(), uuid7()
    writer = AuditWriter(path)
    writer.start()
    events = [
        started(a, client_session_id="sess-1", metadata={"request_user_agent": "x"}),
        PromptSubmitted(interception_id=a, provider_response_id="msg_1", prompt="fix the bug é"),
        TokensUsed(
            interception_id=a,
            provider_response_id="msg_1",
            input_tokens=10,
            output_tokens=50,
            cache_read_input_tokens=100,
            cache_write_input_tokens=5,
            metadata={"cache_write_5m": 3, "cache_write_1h": 2},
        ),
        tool(a, "toolu_1"),
        ThoughtRecorded(interception_id=a, content="Let me think.", metadata={"source": "thinking"}),
        InterceptionEnded(interception_id=a, status="completed", http_status=200, response_model="claude-sonnet-4-5"),
        started(b, streaming=False, credential_kind=None, credential_hint=None),
        InterceptionEnded(interception_id=b, status="failed", error="rate_limit_error: slow", http_status=429),
    ]
    for event in events:
        writer.emit(event)
    writer.close()
    assert writer.rows_written == len(events)
    assert writer.pending == 0

    counts = {
        table: query(path, f"SELECT count(*) FROM {table}")[0][0]
        for table in (
            "interception_starts",
            "interception_ends",
            "token_usages",
            "user_prompts",
            "tool_usages",
            "model_thoughts",
        )
    }
    assert counts == {
        "interception_starts": 2,
        "interception_ends": 2,
        "token_usages": 1,
        "user_prompts": 1,
        "tool_usages": 1,
        "model_thoughts": 1,
    }
    assert query(
        path,
        "SELECT interception_id, input_tokens, output_tokens, cache_read_input_tokens, "
        "cache_write_input_tokens, metadata->>'cache_write_5m', metadata->>'cache_write_1h' FROM token_usages",
    ) == [(a, 10, 50, 100, 5, "3", "2")]
    assert query(path, "SELECT prompt, provider_response_id FROM user_prompts") == [("fix the bug é", "msg_1")]
    assert query(path, "SELECT provider_tool_call_id, tool, input, injected, server_url FROM tool_usages") == [
        ("toolu_1", "Read", '{"path":"a.py"}', False, None)
    ]
    assert query(path, "SELECT content, metadata->>'source' FROM model_thoughts") == [("Let me think.", "thinking")]
    assert query(
        path, "SELECT started_at, metadata->>'request_user_agent' FROM interception_starts WHERE id = ?", [a]
    ) == [(T0, "x")]


def test_interceptions_view(path: str) -> None:
    with_session, with_root, alone, root, unfinished = (uuid7() for _ in range(5))
    writer = AuditWriter(path)
    for event in [
        started(with_session, client_session_id="sess-1", thread_root_id=root, thread_parent_id=root),
        started(with_root, thread_root_id=root, thread_parent_id=root, correlating_tool_call_id="toolu_1"),
        started(alone),
        started(unfinished),
        InterceptionEnded(interception_id=with_session, status="completed", http_status=200, response_model="m-1"),
        InterceptionEnded(interception_id=with_root, status="cancelled", error="client disconnected"),
        InterceptionEnded(interception_id=alone, status="failed", error="HTTP 500", http_status=500),
    ]:
        writer.emit(event)
    writer.close()  # never started: close() flushes on the caller's thread

    rows = {
        row[0]: row[1:]
        for row in query(
            path, "SELECT id, session_id, status, error, http_status, response_model, ended_at FROM interceptions"
        )
    }
    assert rows[with_session][:5] == ("sess-1", "completed", None, 200, "m-1")
    assert rows[with_root][:5] == (str(root), "cancelled", "client disconnected", None, None)
    assert rows[alone][:5] == (str(alone), "failed", "HTTP 500", 500, None)
    assert rows[unfinished] == (str(unfinished), None, None, None, None, None)
    assert all(rows[i][5] is not None for i in (with_session, with_root, alone))


def test_find_tool_call(path: str) -> None:
    first, second, root_less = uuid7(), uuid7(), uuid7()
    root = uuid7()
    writer = AuditWriter(path)
    for event in [
        started(first, thread_root_id=root),
        started(second, thread_root_id=root),
        started(root_less),
        tool(second, "toolu_dup", T0 + timedelta(seconds=5)),
        tool(first, "toolu_dup", T0),
        tool(root_less, "toolu_solo"),
    ]:
        writer.emit(event)
    writer.close()

    reopened = AuditWriter(path)
    try:
        assert reopened.find_tool_call("toolu_dup") == (second, root)  # the latest recording wins
        assert reopened.find_tool_call("toolu_solo") == (root_less, None)
        assert reopened.find_tool_call("toolu_unknown") is None
    finally:
        reopened.close()
    assert reopened.find_tool_call("toolu_solo") is None  # closed: no answer, no exception


def test_reopening_keeps_rows_and_migrates_once(path: str) -> None:
    for _ in range(2):
        writer = AuditWriter(path)
        writer.emit(started(uuid7()))
        writer.close()
    assert query(path, "SELECT count(*) FROM interception_starts") == [(2,)]
    assert query(path, "SELECT name FROM _aibridge_migrations ORDER BY name") == [
        ("m001_initial",),
        ("m002_costs",),
        ("m004_insights",),
    ]


def test_close_twice_is_harmless(path: str) -> None:
    writer = AuditWriter(path)
    writer.start()
    writer.emit(started(uuid7()))
    writer.close()
    writer.close()
    assert query(path, "SELECT count(*) FROM interception_starts") == [(1,)]


def test_storage_stays_readable_by_duckdb_1_5(path: str) -> None:
    AuditWriter(path).close()
    assert query(path, "SELECT tags FROM duckdb_databases() WHERE database_name = 'audit'") == [
        ({"storage_version": "v1.5.0+"},)
    ]


@pytest.fixture
def holder(path: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the audit file open."""
    with holding(path) as process:
        yield process


def test_locked_file_names_the_holder(path: str, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(AuditFileLocked) as info:
        AuditWriter(path)
    message = str(info.value)
    assert f"PID {holder.pid}" in message
    assert path in message
    assert "sys.stdin.read()" in message  # the holder's command line, from /proc
    with pytest.raises(AuditFileLocked):
        open_database(path)


def test_scrub_runs_once_per_event_in_the_writers_thread(path: str) -> None:
    a = uuid7()
    writer = AuditWriter(path)
    threads: list[str] = []

    def scrub(event: object) -> object | None:
        threads.append(threading.current_thread().name)
        if isinstance(event, PromptSubmitted):
            return replace(event, prompt=event.prompt.replace("hunter2", "[REDACTED:password]"))
        return None if isinstance(event, ThoughtRecorded) else event

    writer.scrub = scrub  # type: ignore[assignment]
    writer.start()
    writer.emit(started(a))
    writer.emit(PromptSubmitted(interception_id=a, provider_response_id=None, prompt="pw hunter2"))
    writer.emit(ThoughtRecorded(interception_id=a, content="dropped"))
    writer.close()
    assert query(path, "SELECT prompt FROM user_prompts") == [("pw [REDACTED:password]",)]
    assert query(path, "SELECT count(*) FROM model_thoughts") == [(0,)]
    assert threads == ["aibridge-audit-writer"] * 3


def test_tool_results_cache_busts_and_attribution_are_written_the_bust_located_in_the_writers_thread(
    path: str,
) -> None:
    a, b = uuid7(), uuid7()
    threads: list[str] = []

    def locate() -> str:
        threads.append(threading.current_thread().name)
        return "messages[3]"

    writer = AuditWriter(path)
    writer.start()
    writer.emit(started(a, working_directory="/w/app", repository="github.com/acme/app", branch="dev", agent="main"))
    writer.emit(
        ToolResultReturned(
            interception_id=a, provider_tool_call_id="toolu_1", is_error=True, size_bytes=12, excerpt="Exit code 1"
        )
    )
    writer.emit(bust(a, b, gap_ms=1200, cost_micros=17250, locate=locate))
    writer.close()
    assert threads == ["aibridge-audit-writer"]
    assert query(path, "SELECT working_directory, repository, branch, agent FROM interceptions") == [
        ("/w/app", "github.com/acme/app", "dev", "main")
    ]
    assert query(path, "SELECT provider_tool_call_id, is_error, size_bytes, excerpt FROM tool_results") == [
        ("toolu_1", True, 12, "Exit code 1")
    ]
    assert query(path, "SELECT previous_interception_id, lost_tokens, location, cost_micros FROM cache_busts") == [
        (b, 5000, "messages[3]", 17250)
    ]


def test_an_event_that_cannot_be_prepared_is_dropped_and_the_writer_goes_on(path: str) -> None:
    a = uuid7()

    def broken() -> str:
        raise RecursionError("a body nested too deep")

    writer = AuditWriter(path)
    writer.start()
    writer.emit(started(a))
    writer.emit(bust(a, a, gap_ms=1, cost_micros=1, locate=broken))
    writer.emit(InterceptionEnded(interception_id=a, status="completed"))
    writer.close()
    assert query(path, "SELECT location FROM cache_busts") == [(None,)]  # the bust kept, unlocated
    assert query(path, "SELECT status FROM interceptions") == [("completed",)]


def test_a_scrubber_that_fails_drops_its_event_only(path: str) -> None:
    a = uuid7()

    def scrub(event: object) -> object:
        if isinstance(event, PromptSubmitted):
            raise ValueError("boom")
        return event

    writer = AuditWriter(path)
    writer.scrub = scrub  # type: ignore[assignment]
    writer.start()
    writer.emit(started(a))
    writer.emit(PromptSubmitted(interception_id=a, provider_response_id=None, prompt="x"))
    writer.emit(InterceptionEnded(interception_id=a, status="completed"))
    writer.close()
    assert (writer.broken, query(path, "SELECT count(*) FROM user_prompts")) == (1, [(0,)])
    assert query(path, "SELECT status FROM interceptions") == [("completed",)]
