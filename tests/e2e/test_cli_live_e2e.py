"""The installed `aibridge` command against a real proxy: live answers through `<db>.sock` while mitmdump holds
the audit file, `tail` following traffic as it flows, `snapshot` while running, then the same answers from the
file once the proxy is gone (stopped, or killed with its socket left behind)."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import duckdb
import openai
import pytest

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy
from tests.support.scenarios import anthropic_error, anthropic_events, anthropic_message, chat_completion

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
AIBRIDGE = BIN / "aibridge"
DUCKDB_CLI = BIN / "duckdb"
ANTHROPIC_KEY = "sk-ant-api03-test-0123456789abcdef"
OPENAI_KEY = "sk-proj-test-abcdefghijklmnop"
CLAUDE = {"User-Agent": "claude-cli/2.1.329 (external, sdk-cli)", "X-Claude-Code-Session-Id": "sess-live"}
CODEX = {"User-Agent": "codex_cli_rs/0.50.0 (Linux; x86_64)", "session-id": "codex-live"}
TOOLS = [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}]
LIVE_WITHIN = 10.0
"""Seconds a live answer may take to show the traffic (the writer commits every second; the machine is shared)."""


# --- running the command ------------------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AIBRIDGE_DB"}
    return env | {"COLUMNS": "250"}


def aibridge(*args: str, db: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AIBRIDGE), *args, "--db", str(db)], capture_output=True, text=True, timeout=timeout, env=cli_env()
    )


def answer(*args: str, db: Path) -> Any:
    """The parsed `--json` output (for `tail`, its lines)."""
    done = aibridge(*args, "--json", db=db)
    assert done.returncode == 0, done.stderr
    if args[0] == "tail":
        return [json.loads(line) for line in done.stdout.splitlines()]
    return json.loads(done.stdout)


def poll(ask: Callable[[], Any], ready: Callable[[Any], bool], within: float = LIVE_WITHIN) -> Any:
    """Ask until the answer is ready (bounded in time and in tries); the last answer otherwise."""
    deadline = time.monotonic() + within
    last = None
    for _ in range(200):
        last = ask()
        if ready(last) or time.monotonic() > deadline:
            return last
        time.sleep(0.1)
    return last


def ended(rows: list[dict[str, Any]], n: int) -> bool:
    return len(rows) == n and all(r["status"] is not None for r in rows)


def file_is_locked(db: Path) -> bool:
    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.IOException as e:
        return "lock" in str(e).lower()
    return False


# --- traffic ------------------------------------------------------------------------------------------------


def claude_turns(mock: MockUpstream) -> list[str]:
    """Claude Code, session sess-live: a tool call, then its result (one thread), then a failed call (another
    thread). Returns the interception ids in order."""
    mock.enqueue(
        Answer.json(
            anthropic_message(
                "",
                msg_id="msg_live_1",
                tools=[("toolu_live", "Read", {"path": "README.md"})],
                usage={
                    "input_tokens": 30,
                    "output_tokens": 5,
                    "cache_read_input_tokens": 200,
                    "cache_creation_input_tokens": 50,
                },
            )
        ),
        Answer.sse(anthropic_events(["It ", "says hi."], msg_id="msg_live_2", thinking="Reading the file.")),
        anthropic_error(529, "overloaded_error", "Overloaded"),
    )
    client = anthropic.Anthropic(api_key=ANTHROPIC_KEY, max_retries=0, default_headers=CLAUDE)
    history: list[dict[str, Any]] = [{"role": "user", "content": "What does the README say?"}]
    first = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=history, tools=TOOLS
    )
    history += [
        {"role": "assistant", "content": [b.model_dump() for b in first.parse().content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_live", "content": "hi"}]},
    ]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=history, tools=TOOLS) as stream:
        assert stream.get_final_text() == "It says hi."
        second = stream.response.headers["x-aibridge-interception-id"]
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Summarise it."}]
        )
    assert failed.value.status_code == 529
    return [
        first.headers["x-aibridge-interception-id"],
        second,
        failed.value.response.headers["x-aibridge-interception-id"],
    ]


def codex_turn(mock: MockUpstream, text: str = "List the files") -> str:
    mock.enqueue(Answer.json(chat_completion("a.py b.py", completion_id="chatcmpl-live")))
    client = openai.OpenAI(api_key=OPENAI_KEY, max_retries=0, default_headers=CODEX)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=[{"role": "user", "content": text}]
    )
    assert raw.parse().choices[0].message.content == "a.py b.py"
    return raw.headers["x-aibridge-interception-id"]


# --- live, then offline -------------------------------------------------------------------------------------

QUERIES: list[tuple[str, ...]] = [
    ("sessions",),
    ("sessions", "--limit", "1"),
    ("session", "sess-live"),
    ("session", "codex-live"),
    ("interceptions",),
    ("interceptions", "--provider", "anthropic", "--limit", "2"),
    ("clients",),
    ("models",),
    ("usage",),
    ("usage", "--by", "user"),
    ("usage", "--by", "client"),
    ("usage", "--by", "provider"),
    ("usage", "--by", "day"),
    ("usage", "--client", "Claude Code", "--by", "day"),
    ("usage", "--by", "agent"),
    ("actions", "sess-live"),
    ("cache",),
    ("cache", "--by", "model"),
    ("tail", "--timeout", "0"),
]


def test_live_answers_match_the_traffic_and_the_file_answers_alike(
    mock: MockUpstream, proxy: Proxy, tmp_path: Path
) -> None:
    db = proxy.db_path
    claude = claude_turns(mock)
    codex = codex_turn(mock)

    rows = poll(lambda: answer("interceptions", db=db)["interceptions"], lambda rows: ended(rows, 4))
    assert file_is_locked(db), "the proxy should hold the audit file: these answers must come live"
    assert [r["id"] for r in rows] == [codex, *reversed(claude)]
    by_id = {r["id"]: r for r in rows}
    assert [(by_id[i]["status"], by_id[i]["http_status"], by_id[i]["streaming"]) for i in claude] == [
        ("completed", 200, False),
        ("completed", 200, True),
        ("failed", 529, False),
    ]
    assert [by_id[i]["session_id"] for i in [*claude, codex]] == ["sess-live"] * 3 + ["codex-live"]
    assert {(r["client"], r["provider_name"], r["model"], r["user"]) for r in rows} == {
        ("Claude Code", "anthropic", "claude-sonnet-4-5", "anonymous"),
        ("Codex", "openai", "gpt-4.1", "anonymous"),
    }
    tokens = [
        (
            by_id[i]["input_tokens"],
            by_id[i]["output_tokens"],
            by_id[i]["cache_read_tokens"],
            by_id[i]["cache_write_tokens"],
        )
        for i in [*claude, codex]
    ]
    assert tokens == [(30, 5, 200, 50), (25, 42, 100, 10), (0, 0, 0, 0), (20, 9, 100, 0)]
    assert all(by_id[i]["cost_micros"] > 0 for i in (claude[0], claude[1], codex))  # priced from the price book
    assert by_id[claude[2]]["error"]

    session = answer("session", "sess-live", db=db)
    assert [[s["id"] for s in t["interceptions"]] for t in session["threads"]] == [claude[:2], claude[2:]]
    first, second = session["threads"][0]["interceptions"]
    assert session["threads"][0]["prompt"] == "What does the README say?"
    assert session["threads"][1]["prompt"] == "Summarise it."
    assert [(t["tool"], t["call_id"], json.loads(t["input"]), t["injected"]) for t in first["tools"]] == [
        ("Read", "toolu_live", {"path": "README.md"}, False)
    ]
    assert (second["thread_parent_id"], second["thread_root_id"]) == (claude[0], claude[0])
    assert [t["content"] for t in second["thoughts"]] == ["Reading the file."]
    assert session["totals"]["input_tokens"] == 55 and session["totals"]["cache_read_tokens"] == 300

    sessions = answer("sessions", db=db)["sessions"]
    assert [(s["session_id"], s["client"], s["threads"], s["interceptions"]) for s in sessions] == [
        ("codex-live", "Codex", 1, 1),
        ("sess-live", "Claude Code", 2, 3),
    ]
    assert sessions[1]["last_prompt"] == "Summarise it."
    usage = answer("usage", "--by", "client", db=db)["rows"]
    assert {r["key"]: (r["interceptions"], r["input_tokens"], r["output_tokens"]) for r in usage} == {
        "Claude Code": (2, 55, 47),
        "Codex": (1, 20, 9),
    }

    # Paging and the people's tables work live too.
    pages, after = [], None
    for _ in range(10):
        page = answer("interceptions", "--limit", "1", *(["--after", after] if after else []), db=db)
        pages += page["interceptions"]
        after = page["next"]
        if after is None:
            break
    assert pages == rows
    table = aibridge("sessions", db=db)
    assert table.returncode == 0 and "sess-live" in table.stdout and "Summarise it." in table.stdout
    tree = aibridge("session", "sess-live", db=db).stdout
    assert "client tool Read" in tree and "thinking: Reading the file." in tree and "— failed" in tree

    actions = answer("actions", "sess-live", db=db)["actions"]
    assert [(a["tool"], a["call_id"], a["outcome"], a["result_bytes"]) for a in actions] == [
        ("Read", "toolu_live", "ok", 2)  # the second request brought its result back: "hi"
    ]
    assert actions[0]["result_interception_id"] == claude[1]

    live = {query: answer(*query, db=db) for query in QUERIES}
    assert live[("sessions", "--limit", "1")]["next"] is not None

    assert proxy.stop() == 0
    assert not Path(f"{db}.sock").exists()
    assert not file_is_locked(db)
    for query, result in live.items():
        assert answer(*query, db=db) == result, query


def test_tail_prints_new_interceptions_as_they_end(mock: MockUpstream, proxy: Proxy) -> None:
    db = proxy.db_path
    command = ["--count", "4", "--interval", "0.2", "--timeout", "60", "--db", str(db)]
    tails = [
        subprocess.Popen(
            [str(AIBRIDGE), "tail", *command, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        for extra in (["--json"], [])
    ]
    try:
        ids = claude_turns(mock)
        ids.append(codex_turn(mock))
        outputs = [tail.communicate(timeout=30) for tail in tails]
    finally:
        for tail in tails:
            if tail.poll() is None:
                tail.kill()
                tail.wait(10)
    assert [tail.returncode for tail in tails] == [0, 0], [err for _, err in outputs]
    (as_json, _), (for_people, _) = outputs
    rows = [json.loads(line) for line in as_json.splitlines()]
    assert [r["id"] for r in rows] == ids  # in the order they ended, each once
    assert [(r["status"], r["http_status"], r["client"]) for r in rows] == [
        ("completed", 200, "Claude Code"),
        ("completed", 200, "Claude Code"),
        ("failed", 529, "Claude Code"),
        ("completed", 200, "Codex"),
    ]
    assert [r["input_tokens"] for r in rows] == [280, 135, 0, 120]  # cached input counted in; a 529 used none
    lines = for_people.splitlines()
    assert len(lines) == 4
    assert "anonymous    Claude Code    anthropic/claude-sonnet-4-5  completed 200  in 280 out 5" in lines[0]
    assert "anthropic/claude-sonnet-4-5  failed 529" in lines[2]
    assert "Codex          openai/gpt-4.1  completed 200  in 120 out 9" in lines[3]


def test_snapshot_while_running_opens_in_another_duckdb(mock: MockUpstream, proxy: Proxy, tmp_path: Path) -> None:
    db = proxy.db_path
    ids = [codex_turn(mock, f"turn {n}") for n in range(3)]
    poll(lambda: answer("interceptions", db=db)["interceptions"], lambda rows: ended(rows, 3))
    target = tmp_path / "snap" / "copy.duckdb"
    target.parent.mkdir()
    result = answer("snapshot", str(target), db=db)
    assert file_is_locked(db)  # still held by the proxy: the copy was made by it
    assert result == {"snapshot": str(target), "bytes": target.stat().st_size}
    done = subprocess.run(
        [
            str(DUCKDB_CLI),
            "-readonly",
            "-json",
            str(target),
            "-c",
            "SELECT id::VARCHAR AS id, status, session_id FROM interceptions ORDER BY started_at",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"id": i, "status": "completed", "session_id": "codex-live"} for i in ids]
    with duckdb.connect(str(target), read_only=True) as copy:
        assert copy.execute("SELECT count(*) FROM token_usages").fetchall() == [(3,)]
    # The copy answers the CLI offline as the proxy does live.
    assert answer("sessions", db=target) == answer("sessions", db=db)
    assert answer("session", "codex-live", db=target) == answer("session", "codex-live", db=db)


def test_export_names_files_alike_live_and_offline(mock: MockUpstream, proxy: Proxy, tmp_path: Path) -> None:
    """Without --instance, files carry the host and audit file names (--help); the proxy and the offline
    command must agree, or a day exported by one is exported again by the other under a second name."""
    db = proxy.db_path
    codex_turn(mock)
    poll(lambda: answer("interceptions", db=db)["interceptions"], lambda rows: ended(rows, 1))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    today = datetime.now(UTC).date().isoformat()
    live_dir, offline_dir = tmp_path / "live", tmp_path / "offline"
    assert answer("export", "--parquet", str(live_dir), db=db) == {"written": [], "skipped": 0}  # today is open
    live = answer("export", "--parquet", str(live_dir), "--until", tomorrow, db=db)
    instance = f"{os.uname().nodename}-{db.stem}"
    assert live["written"] == [
        str(live_dir / table / f"date={today}" / f"{instance}.parquet")
        for table in ("interceptions", "token_usages", "user_prompts")
    ]
    proxy.stop()
    offline = answer("export", "--parquet", str(offline_dir), "--until", tomorrow, db=db)
    assert [Path(p).relative_to(offline_dir) for p in offline["written"]] == [
        Path(p).relative_to(live_dir) for p in live["written"]
    ]


def test_bad_input_is_refused_live_as_offline(mock: MockUpstream, proxy: Proxy) -> None:
    """The endpoint runs the same checks: a clear one-line reason and exit status 1, never a traceback."""
    db = proxy.db_path
    claude_turns(mock)
    poll(lambda: answer("sessions", db=db)["sessions"], lambda rows: len(rows) == 1)
    assert file_is_locked(db)
    first_page = answer("sessions", "--limit", "1", db=db)  # a cursor naming session "sess-live"
    assert first_page["next"] is None  # one session: no cursor yet
    codex_turn(mock)
    page = poll(lambda: answer("sessions", "--limit", "1", db=db), lambda page: page["next"] is not None)
    assert page["sessions"][0]["session_id"] == "codex-live"
    refusals = {
        ("interceptions", "--since", "someday"): "--since: 'someday' is not an ISO 8601 date or time",
        ("sessions", "--after", "garbage!!"): "--after: not a cursor this command printed",
        ("session", "nope"): "no session 'nope'",
        # The sessions cursor ("codex-live" is no interception id) pasted into interceptions.
        ("interceptions", "--after", page["next"]): "--after",
    }
    for args, message in refusals.items():
        done = aibridge(*args, db=db)
        assert done.returncode == 1, args
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stdout == ""


@pytest.fixture
def killed(mock: MockUpstream, proxy: Proxy) -> Iterator[tuple[Proxy, str, dict[str, Any]]]:
    """A proxy that answered live, then was killed with -9: its socket is left behind with nobody on it."""
    interception = codex_turn(mock)
    db = proxy.db_path
    poll(lambda: answer("interceptions", db=db)["interceptions"], lambda rows: ended(rows, 1))
    live = {q: answer(*q, db=db) for q in (("sessions",), ("session", "codex-live"), ("usage", "--by", "day"))}
    assert proxy.process is not None
    proxy.process.kill()
    proxy.process.wait(15)
    yield proxy, interception, live


def test_a_socket_left_by_a_killed_proxy_falls_back_to_the_file(killed: tuple[Proxy, str, dict[str, Any]]) -> None:
    proxy, interception, live = killed
    db = proxy.db_path
    assert Path(f"{db}.sock").exists()
    for query, result in live.items():  # what the proxy had committed, it answered live: all of it is in the file
        assert answer(*query, db=db) == result, query
    [row] = answer("interceptions", db=db)["interceptions"]
    assert (row["id"], row["status"]) == (interception, "completed")
