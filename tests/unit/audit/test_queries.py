"""The audit's read side (addon/audit/queries.py) on a small, fully known audit written by the real `AuditWriter`,
once to a DuckDB file and once to a real PostgreSQL server, each test run against both with the same
expectations: listings and their filters, the cost rules (nothing used costs 0; usage none of which could be
priced costs NULL and counts in `unpriced_rows`), paging, and bad queries refused with a `QueryError`."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from addon.audit import AuditWriter, InterceptionEnded, PromptSubmitted, TokensUsed, queries
from addon.audit.duckfile import DuckReader, open_read_only
from addon.audit.postgres import connect_reader
from addon.audit.queries import MAX_LIMIT, QueryError, Reader, encode_cursor, run
from addon.audit.store import is_postgres
from addon.cli.source import open_source
from tests.support import audit_rows
from tests.support.audit_rows import T0, CallBust, CallResult, CallTool, started

HOUR = timedelta(hours=1)


def ident(at: datetime, n: int) -> UUID:
    """A UUIDv7 of `at` (ids sort by start time, as the writer's do)."""
    ms = int(at.timestamp() * 1000)
    return UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | n)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Call:
    name: str
    start: datetime
    user: str
    provider: str
    provider_name: str
    model: str
    client: str
    session: str | None
    status: str | None
    """None: still running (no end row)."""
    usages: tuple[int | None, ...] = ()
    """Each usage row's cost in micro-dollars (None: unpriced); 10 input and 1 output tokens each."""

    @property
    def id(self) -> UUID:
        return ident(self.start, CALL_NAMES.index(self.name) + 1)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=10)


CALL_NAMES = ["a1", "a2", "b1", "b2", "c1"]
A = {"user": "alice", "provider": "anthropic", "provider_name": "anthropic", "client": "Claude Code"}
B = {"user": "bob", "provider": "openai", "provider_name": "openai", "model": "gpt-4.1", "client": "Codex"}
CALLS = {
    c.name: c
    for c in [
        Call("a1", T0, **A, model="claude-sonnet-4-5", session="cc-1", status="completed", usages=(100, 50)),
        Call(
            "a2",
            T0 + timedelta(minutes=1),
            **A,
            model="claude-sonnet-4-5",
            session="cc-1",
            status="completed",
            usages=(30, None),
        ),
        Call("b1", T0 + HOUR, **B, session=None, status="completed", usages=(None, None)),
        Call("b2", T0 + 2 * HOUR, **B, session=None, status="failed"),
        Call(
            "c1",
            T0 + timedelta(days=1),
            user="carol",
            provider="anthropic",
            provider_name="anthropic-eu",
            model="claude-haiku-4-5",
            client="Claude Code",
            session="cc-2",
            status=None,
            usages=(7,),
        ),
    ]
}
ID = {name: str(c.id) for name, c in CALLS.items()}


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The audit's target: a DuckDB file or a PostgreSQL database."""
    if request.param == "postgresql":
        path = request.getfixturevalue("postgres_server").create_database(f"queries_{uuid4().hex[:12]}")
    else:
        path = str(tmp_path_factory.mktemp("queries") / "audit.duckdb")
    writer = AuditWriter(path)
    for call in CALLS.values():
        writer.emit(
            started(
                call.id,
                initiator=call.user,
                provider=call.provider,
                provider_name=call.provider_name,
                model=call.model,
                client=call.client,
                client_session_id=call.session,
                started_at=call.start,
            )
        )
        writer.emit(
            PromptSubmitted(
                interception_id=call.id, provider_response_id=None, prompt=f"prompt {call.name}", created_at=call.start
            )
        )
        for n, cost in enumerate(call.usages, 1):
            writer.emit(
                TokensUsed(
                    interception_id=call.id,
                    provider_response_id=f"resp-{call.name}-{n}",
                    input_tokens=10,
                    output_tokens=1,
                    cache_read_input_tokens=0,
                    cache_write_input_tokens=0,
                    cost_micros=cost,
                    created_at=call.start + timedelta(seconds=n),
                )
            )
        if call.status is not None:
            writer.emit(
                InterceptionEnded(
                    interception_id=call.id,
                    status=call.status,
                    http_status=200 if call.status == "completed" else 500,
                    ended_at=call.end,
                )
            )
    writer.close()
    return path


@pytest.fixture
def db(path: str) -> Iterator[Reader]:
    reader = connect_reader(path) if is_postgres(path) else DuckReader(open_read_only(Path(path)))
    yield reader
    reader.close()  # type: ignore[attr-defined]


def listed(db: Reader, filters: dict[str, str] | None = None, **params: Any) -> list[str]:
    """The interception names the `interceptions` listing gives, in its order."""
    result = run(db, "interceptions", {"filters": filters, **params})
    names = {v: k for k, v in ID.items()}
    return [names[row["id"]] for row in result["interceptions"]]


# --- interceptions ------------------------------------------------------------------------------------------


def test_interceptions_are_listed_newest_first_running_ones_too(db: Reader) -> None:
    assert listed(db) == ["c1", "b2", "b1", "a2", "a1"]
    rows = {row["id"]: row for row in run(db, "interceptions")["interceptions"]}
    a1 = rows[ID["a1"]]
    assert a1["user"] == "alice"
    assert a1["session_id"] == "cc-1"
    assert a1["status"] == "completed"
    assert a1["started_at"] == iso(T0)
    assert a1["ended_at"] == iso(T0 + timedelta(seconds=10))
    assert (a1["input_tokens"], a1["output_tokens"]) == (20, 2)
    assert rows[ID["b1"]]["session_id"] == ID["b1"]  # no client session, no thread: its own id
    assert rows[ID["c1"]]["status"] is None and rows[ID["c1"]]["ended_at"] is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"user": "bob"}, ["b2", "b1"]),
        ({"user": "nobody"}, []),
        ({"provider": "anthropic"}, ["c1", "a2", "a1"]),
        ({"provider_name": "anthropic-eu"}, ["c1"]),
        ({"model": "claude-sonnet-4-5"}, ["a2", "a1"]),
        ({"client": "Codex"}, ["b2", "b1"]),
        ({"session": "cc-1"}, ["a2", "a1"]),
        ({"session": str(CALLS["b1"].id)}, ["b1"]),
        ({"since": iso(T0 + HOUR)}, ["c1", "b2", "b1"]),  # inclusive
        ({"until": iso(T0 + HOUR)}, ["a2", "a1"]),  # exclusive
        ({"since": "2026-03-02"}, ["c1"]),  # a date: its UTC midnight
        ({"since": "2026-03-01T13:00:00+01:00"}, ["c1", "b2", "b1", "a2", "a1"]),  # an offset is honoured
        ({"user": "alice", "since": iso(T0 + timedelta(seconds=30))}, ["a2"]),
        ({"provider": "openai", "model": "claude-sonnet-4-5"}, []),
    ],
)
def test_interception_filters(db: Reader, filters: dict[str, str], expected: list[str]) -> None:
    assert listed(db, filters) == expected


def test_interception_costs(db: Reader) -> None:
    rows = {row["id"]: row for row in run(db, "interceptions")["interceptions"]}
    cost = {name: (rows[ID[name]]["cost_micros"], rows[ID[name]]["unpriced_rows"]) for name in ID}
    assert cost == {
        "a1": (150, 0),
        "a2": (30, 1),  # partly priced: the priced part, and the unpriced row counted
        "b1": (None, 2),  # usage none of which could be priced: NULL, not 0
        "b2": (0, 0),  # no usage at all costs nothing
        "c1": (7, 0),
    }
    assert (rows[ID["b2"]]["input_tokens"], rows[ID["b2"]]["output_tokens"]) == (0, 0)


def test_interceptions_page_without_gaps_or_repeats(db: Reader) -> None:
    first = run(db, "interceptions", {"limit": 2})
    assert [r["id"] for r in first["interceptions"]] == [ID["c1"], ID["b2"]]
    assert first["next"] is not None
    second = run(db, "interceptions", {"limit": 2, "after": first["next"]})
    assert [r["id"] for r in second["interceptions"]] == [ID["b1"], ID["a2"]]
    third = run(db, "interceptions", {"limit": 2, "after": second["next"]})
    assert [r["id"] for r in third["interceptions"]] == [ID["a1"]]
    assert third["next"] is None
    assert listed(db, {"user": "alice"}, limit=1, after=first["next"]) == ["a2"]


# --- sessions -----------------------------------------------------------------------------------------------


def test_sessions_are_ended_interceptions_summed_most_recently_active_first(db: Reader) -> None:
    result = run(db, "sessions")
    assert result["next"] is None
    sessions = result["sessions"]
    assert [s["session_id"] for s in sessions] == [ID["b2"], ID["b1"], "cc-1"]  # c1 has not ended
    cc1 = sessions[2]
    assert cc1["user"] == "alice"
    assert cc1["interceptions"] == 2
    assert cc1["models"] == ["claude-sonnet-4-5"]
    assert cc1["providers"] == ["anthropic"]
    assert cc1["started_at"] == iso(T0)
    assert cc1["last_active"] == iso(CALLS["a2"].end)
    assert cc1["last_prompt"] == "prompt a2"
    assert (cc1["input_tokens"], cc1["output_tokens"]) == (40, 4)
    costs = {s["session_id"]: (s["cost_micros"], s["unpriced_rows"]) for s in sessions}
    assert costs == {"cc-1": (180, 1), ID["b1"]: (None, 2), ID["b2"]: (0, 0)}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"user": "alice"}, ["cc-1"]),
        ({"user": "carol"}, []),  # her only call is still running
        ({"provider": "openai"}, [ID["b2"], ID["b1"]]),
        ({"model": "gpt-4.1", "until": iso(T0 + 2 * HOUR)}, [ID["b1"]]),
        ({"since": iso(T0 + timedelta(seconds=30))}, [ID["b2"], ID["b1"], "cc-1"]),
    ],
)
def test_session_filters(db: Reader, filters: dict[str, str], expected: list[str]) -> None:
    assert [s["session_id"] for s in run(db, "sessions", {"filters": filters})["sessions"]] == expected


def test_a_session_narrowed_by_time_sums_only_its_matching_interceptions(db: Reader) -> None:
    (cc1,) = run(db, "sessions", {"filters": {"user": "alice", "since": iso(T0 + timedelta(seconds=30))}})["sessions"]
    assert cc1["interceptions"] == 1
    assert cc1["started_at"] == iso(CALLS["a2"].start)


def test_sessions_page(db: Reader) -> None:
    first = run(db, "sessions", {"limit": 2})
    assert [s["session_id"] for s in first["sessions"]] == [ID["b2"], ID["b1"]]
    second = run(db, "sessions", {"limit": 2, "after": first["next"]})
    assert [s["session_id"] for s in second["sessions"]] == ["cc-1"]
    assert second["next"] is None


def test_one_session_in_full_with_its_totals(db: Reader) -> None:
    session = run(db, "session", {"session_id": "cc-1"})
    assert session["user"] == "alice"
    assert [i["id"] for t in session["threads"] for i in t["interceptions"]] == [ID["a1"], ID["a2"]]
    assert session["threads"][0]["prompt"] == "prompt a1"
    assert session["totals"]["cost_micros"] == 180
    assert session["totals"]["unpriced_rows"] == 1
    assert run(db, "session", {"session_id": ID["b1"]})["totals"]["cost_micros"] is None
    assert run(db, "session", {"session_id": ID["b2"]})["totals"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_micros": 0,
        "unpriced_rows": 0,
    }


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("last_active", [ID["b2"], ID["b1"], "cc-1"]),
        ("cost", ["cc-1", ID["b2"], ID["b1"]]),  # b1 is unpriced and b2 used nothing: both rank 0, then by id
        ("tokens", ["cc-1", ID["b1"], ID["b2"]]),  # 44, 22 and 0 tokens
    ],
)
def test_sessions_sorted_by_activity_cost_or_tokens_page_alike(db: Reader, sort: str, expected: list[str]) -> None:
    assert [s["session_id"] for s in run(db, "sessions", {"sort": sort})["sessions"]] == expected
    seen, after = [], None
    while True:
        page = run(db, "sessions", {"sort": sort, "limit": 1, "after": after})
        seen += [s["session_id"] for s in page["sessions"]]
        if (after := page["next"]) is None:
            break
    assert seen == expected


def test_sessions_by_cost_are_whole_sessions_with_the_usual_row(db: Reader) -> None:
    """The same rows as the default sort gives, in another order."""
    by_cost = {s["session_id"]: s for s in run(db, "sessions", {"sort": "cost"})["sessions"]}
    assert by_cost == {s["session_id"]: s for s in run(db, "sessions")["sessions"]}
    (alice,) = run(
        db, "sessions", {"sort": "tokens", "filters": {"user": "alice", "since": iso(T0 + timedelta(seconds=30))}}
    )["sessions"]
    assert (alice["interceptions"], alice["input_tokens"]) == (1, 40)  # the matching calls counted, all tokens summed


def test_a_cursor_of_another_sort_is_refused(db: Reader) -> None:
    by_cost = run(db, "sessions", {"sort": "cost", "limit": 1})["next"]
    by_time = run(db, "sessions", {"limit": 1})["next"]
    for sort, cursor in (("tokens", by_cost), ("last_active", by_cost), ("cost", by_time)):
        with pytest.raises(QueryError, match="not a cursor this command printed"):
            run(db, "sessions", {"sort": sort, "after": cursor})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prompt a2", ["a2"]),
        ("PROMPT B", ["b2", "b1"]),  # any case
        ("prompt", ["c1", "b2", "b1", "a2", "a1"]),
        ("_1", []),  # taken literally: no LIKE wildcards
        ("%", []),
        ("nowhere", []),
    ],
)
def test_the_prompt_filter_finds_text_in_prompts(db: Reader, text: str, expected: list[str]) -> None:
    assert listed(db, {"prompt": text}) == expected


def test_sessions_with_a_prompt_filter(db: Reader) -> None:
    (cc1,) = run(db, "sessions", {"filters": {"prompt": "a2"}})["sessions"]
    assert (cc1["session_id"], cc1["interceptions"], cc1["last_prompt"]) == ("cc-1", 1, "prompt a2")
    assert [
        s["session_id"] for s in run(db, "sessions", {"sort": "cost", "filters": {"prompt": "prompt b"}})["sessions"]
    ] == [
        ID["b2"],
        ID["b1"],
    ]


# --- usage, spend, clients, models, tail --------------------------------------------------------------------


def test_usage_by_user(db: Reader) -> None:
    result = run(db, "usage", {"by": "user"})
    assert result["by"] == "user"
    rows = {r["key"]: r for r in result["rows"]}
    assert {k: (r["cost_micros"], r["unpriced_rows"], r["interceptions"]) for k, r in rows.items()} == {
        "alice": (180, 1, 2),
        "bob": (None, 2, 1),  # b2 used nothing, so it adds no usage row
        "carol": (7, 0, 1),
    }
    assert [r["key"] for r in result["rows"]] == ["alice", "carol", "bob"]  # by cost, unpriced last


def test_usage_defaults_to_by_model_and_honours_filters(db: Reader) -> None:
    result = run(db, "usage", {"filters": {"provider": "anthropic", "until": "2026-03-02"}})
    assert result["by"] == "model"
    assert [(r["key"], r["input_tokens"]) for r in result["rows"]] == [("claude-sonnet-4-5", 40)]


@pytest.mark.parametrize("filters", [{}, {"provider": "anthropic"}, {"user": "bob"}, {"until": "2026-03-02"}])
def test_spend_is_usage_by_user_model_client_and_day_at_once(db: Reader, filters: dict[str, str]) -> None:
    spend = run(db, "spend", {"filters": filters})
    assert set(spend) == {"by_user", "by_model", "by_client", "by_day"}
    for by in ("user", "model", "client", "day"):
        rows = run(db, "usage", {"by": by, "filters": filters})["rows"]
        assert sorted(spend[f"by_{by}"], key=lambda r: r["key"]) == sorted(rows, key=lambda r: r["key"])
    assert [r["key"] for r in spend["by_day"]] == sorted(r["key"] for r in spend["by_day"])


def test_spend_rows(db: Reader) -> None:
    spend = run(db, "spend")
    assert [(r["key"], r["cost_micros"], r["unpriced_rows"], r["interceptions"]) for r in spend["by_user"]] == [
        ("alice", 180, 1, 2),
        ("carol", 7, 0, 1),
        ("bob", None, 2, 1),  # by cost, unpriced last, as `usage` orders them
    ]
    assert [(r["key"], r["cost_micros"]) for r in spend["by_client"]] == [("Claude Code", 187), ("Codex", None)]
    assert [(r["key"], r["cost_micros"], r["unpriced_rows"]) for r in spend["by_day"]] == [
        ("2026-03-01", 180, 3),
        ("2026-03-02", 7, 0),
    ]  # oldest first
    assert spend["by_user"][0]["cache_hit_ratio"] == 0.0


def test_month_spend_is_each_users_priced_spend_of_a_utc_month(db: Reader) -> None:
    march = run(db, "month_spend", {"month": "2026-03"})
    assert (march["month"], march["since"], march["until"]) == (
        "2026-03",
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    assert march["users"] == [
        {"user": "alice", "spent_micros": 180, "unpriced_rows": 1},
        {"user": "carol", "spent_micros": 7, "unpriced_rows": 0},
        {"user": "bob", "spent_micros": 0, "unpriced_rows": 2},  # unpriced usage costs nothing against a budget
    ]
    assert run(db, "month_spend", {"month": "2026-02"})["users"] == []
    now = run(db, "month_spend")
    assert now["month"] == datetime.now(UTC).strftime("%Y-%m") and now["users"] == []


def test_clients_and_models(db: Reader) -> None:
    clients = run(db, "clients")["clients"]
    assert [(c["name"], c["interceptions"]) for c in clients] == [("Claude Code", 3), ("Codex", 2)]
    assert clients[0]["last_seen"] == iso(CALLS["c1"].start)
    models = run(db, "models", {"filters": {"user": "alice"}})["models"]
    assert [(m["name"], m["interceptions"]) for m in models] == [("claude-sonnet-4-5", 2)]


def test_tail_from_a_cursor_lists_the_later_ends_oldest_first(db: Reader) -> None:
    after = encode_cursor(CALLS["a1"].end, ID["a1"])
    result = run(db, "tail", {"after": after})
    assert [(r["id"], r["cost_micros"], r["unpriced_rows"]) for r in result["interceptions"]] == [
        (ID["a2"], 30, 1),
        (ID["b1"], None, 2),
        (ID["b2"], 0, 0),
    ]
    assert run(db, "tail", {"after": result["next"]}) == {"interceptions": [], "next": result["next"]}
    assert [r["session_id"] for r in result["interceptions"]] == ["cc-1", ID["b1"], ID["b2"]]  # to link to it


def test_tail_without_a_cursor_shows_only_the_last_ten_minutes(db: Reader) -> None:
    assert run(db, "tail") == {"interceptions": [], "next": None}  # the file's history is months old


# --- bad queries --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nope", None, "unknown query 'nope'"),
        ("interceptions", {"filters": {"colour": "red"}}, "unknown filter(s): colour"),
        ("interceptions", {"filters": {"user": 7}}, "filter(s) must be strings: user"),
        ("interceptions", {"filters": {"since": "yesterday"}}, "--since: 'yesterday' is not an ISO 8601 date"),
        ("sessions", {"filters": {"until": "2026-13-01"}}, "--until: '2026-13-01' is not an ISO 8601 date"),
        ("interceptions", {"limit": 0}, f"--limit must be from 1 to {MAX_LIMIT}"),
        ("sessions", {"limit": MAX_LIMIT + 1}, f"--limit must be from 1 to {MAX_LIMIT}"),
        ("interceptions", {"limit": "5"}, "--limit must be from 1 to"),
        ("interceptions", {"after": 5}, "--after must be a cursor string"),
        ("interceptions", {"after": "!!not a cursor"}, "--after: not a cursor this command printed"),
        ("interceptions", {"after": encode_cursor(T0, "cc-1")}, "--after: not a cursor this command printed"),
        ("sessions", {"after": encode_cursor(T0, "x", "y")}, "--after: not a cursor this command printed"),
        ("interceptions", {"by": "user"}, "unexpected parameter(s) for interceptions: by"),
        ("session", {}, "session_id is required"),
        ("session", {"session_id": "no-such"}, "no session 'no-such'"),
        ("usage", {"by": "colour"}, "--by must be one of user, model, client, provider, day"),
        ("sessions", {"sort": "colour"}, "--sort must be one of last_active, cost, tokens"),
        ("sessions", {"sort": "cost", "after": "!!"}, "--after: not a cursor this command printed"),
        ("sessions", {"sort": "cost", "after": encode_cursor("cost", "x", "cc-1")}, "--after: not a cursor"),
        ("month_spend", {"month": "March"}, "month: 'March' is not YYYY-MM"),
        ("month_spend", {"month": 3}, "month must be a string"),
        ("spend", {"by": "user"}, "unexpected parameter(s) for spend: by"),
        ("interceptions", {"filters": {"prompt": 5}}, "filter(s) must be strings: prompt"),
        ("export", {"directory": "/tmp/x", "instance": "a/b"}, "the instance name must be"),
        ("snapshot", {"path": "/tmp/x.tmp"}, "the snapshot path must not end in .tmp"),
    ],
)
def test_a_bad_query_is_refused_saying_why(db: Reader, name: str, params: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(QueryError) as info:
        run(db, name, params)
    assert message in str(info.value)


def test_a_query_error_is_a_value_error() -> None:
    assert issubclass(QueryError, ValueError)


# --- insights: the action ledger, the cache report, attribution --------------------------------------------


def at(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def cc(name: str, start: float, agent: str, **kw: Any) -> audit_rows.Call:
    """A step of alice's Claude Code session `cc` in github.com/acme/widgets, ended a second after it started."""
    where = {"working_directory": "/work/widgets", "repository": "github.com/acme/widgets", "branch": "feature/ledger"}
    return audit_rows.Call(
        name, T0 + at(start), "completed", T0 + at(start + 1), user="alice", client="Claude Code",
        provider="anthropic", provider_name="anthropic", model="claude-opus-5-5", session="cc", agent=agent,
        **where, **kw,
    )  # fmt: skip


def codex(name: str, start: float, **kw: Any) -> audit_rows.Call:
    """A step of bob's Codex session `cx` in the directory `tool`."""
    return audit_rows.Call(
        name, T0 + at(start), "completed", T0 + at(start + 1), user="bob", client="Codex", provider="openai",
        provider_name="openai", model="gpt-5", session="cx", agent="main", working_directory="/src/tool",
        repository="tool", branch="main", **kw,
    )  # fmt: skip


BLOCKED = {"gate": "no-rm", "blocked": True}
INSIGHT_CALLS = [
    # the main conversation calls Agent and Bash; the sub-agent runs Read (fails) and Grep (never answered)
    cc("m1", 0, "main", usages=((10, 5, 0, 5000, 100),),
       tools=(CallTool("Agent", "toolu_agent", '{"prompt":"look"}'), CallTool("Bash", "toolu_bash", '{"cmd":"ls"}'))),
    cc("s1", 3, "Explore", usages=((10, 5, 0, 2000, 40),), tools=(CallTool("Read", "toolu_read", '{"path":"a"}'),)),
    cc("s2", 6, "Explore", usages=((10, 5, 2000, 0, 10),), results=(CallResult("toolu_read", True, 31, "No file."),),
       tools=(CallTool("Grep", "toolu_grep", '{"pattern":"x"}'),)),
    cc("m2", 10, "main", usages=((10, 5, 0, 5000, 100),),
       results=(CallResult("toolu_agent", False, 400, "found it"), CallResult("toolu_bash", False, 12, "a.py")),
       busts=(CallBust("m1", 5000, 0, 5500, "system"),),
       tools=(CallTool("mcp_time", "toolu_mcp", "{}", injected=True),
              CallTool("Bash", "toolu_rm", '{"command":"rm -rf /"}', metadata=BLOCKED))),
    # a retry of m2's request, for the cache read: the Bash result again
    cc("m3", 12, "main", usages=((10, 5, 5000, 0, 20),), results=(CallResult("toolu_bash", False, 12, "a.py"),)),
    # another user's Codex session in another repository, with an unpriced bust
    codex("c1", 20, usages=((100, 5, 3000, 0, 30),), tools=(CallTool("shell", "call_1", '{"cmd":"ls"}'),)),
    codex("c2", 22, usages=((3100, 5, 0, 0, 300),), busts=(CallBust("c1", 3000, 0, None, "tools"),),
          results=(CallResult("call_1", None, 4, "a.py"),)),  # chat has no error flag: answered
    # Gemini CLI's call: its results are not paired
    audit_rows.Call("g1", T0 + at(25), "completed", T0 + at(26), user="bob", client="Gemini CLI",
                    provider="gemini", provider_name="gemini", model="gemini-2.5-pro", session="gm",
                    route="/v1beta/models/gemini-2.5-pro:streamGenerateContent",
                    tools=(CallTool("run_shell_command", "", '{"command":"ls"}'),)),
    # an SDK call that says nothing about where it came from
    audit_rows.Call("x1", T0 + at(30), "completed", T0 + at(31), user="alice", client="Unknown", provider="anthropic",
                    provider_name="anthropic", model="claude-haiku-4-5", session=None, usages=((10, 1, 0, 0, 1),)),
]  # fmt: skip
INSIGHT_IDS = {c.name: audit_rows.ident(c.started, n) for n, c in enumerate(INSIGHT_CALLS)}


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def insights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    if request.param == "postgresql":
        path = request.getfixturevalue("postgres_server").create_database(f"insights_{uuid4().hex[:12]}")
    else:
        path = str(tmp_path_factory.mktemp("insights") / "audit.duckdb")
    writer = AuditWriter(path)
    for call in INSIGHT_CALLS:
        audit_rows.record_call(writer, call, INSIGHT_IDS)
    writer.close()
    source = open_source(path)
    yield source._reader  # type: ignore[attr-defined]
    source.close()


def test_actions_pair_each_call_with_its_first_result_in_order(insights: Reader) -> None:
    result = queries.run(insights, "actions", {"session_id": "cc"})
    got = [(a["tool"], a["agent"], a["outcome"], a["result_bytes"], a["duration_ms"]) for a in result["actions"]]
    assert got == [
        ("Agent", "main", "ok", 400, 9000),  # made at m1's start + 1 s, answered by m2 at T0 + 10 s
        ("Bash", "main", "ok", 12, 8000),  # answered by m2 and again by m3's retry: the first counts
        ("Read", "Explore", "error", 31, 2000),
        ("Grep", "Explore", "unanswered", None, None),
        ("mcp_time", "main", "ok", None, None),  # run by the bridge
        ("Bash", "main", "blocked", None, None),
    ]
    bash = result["actions"][1]
    assert (bash["arguments"], bash["result_excerpt"], bash["result_interception_id"]) == (
        '{"cmd":"ls"}',
        "a.py",
        str(INSIGHT_IDS["m2"]),
    )
    assert result["actions"][5]["gate"] == "no-rm"
    assert result["outcomes"] == {
        "ok": 3,
        "error": 1,
        "answered": 0,
        "unanswered": 1,
        "blocked": 1,
        "not run": 0,
        "unpaired": 0,
    }
    assert result["truncated"] is False


def test_a_result_without_an_error_flag_is_answered_and_an_unpaired_apis_call_is_unpaired(insights: Reader) -> None:
    [shell] = queries.run(insights, "actions", {"session_id": "cx"})["actions"]
    assert (shell["outcome"], shell["result_bytes"], shell["is_error"]) == ("answered", 4, None)
    [gemini] = queries.run(insights, "actions", {"session_id": "gm"})["actions"]
    assert (gemini["tool"], gemini["outcome"]) == ("run_shell_command", "unpaired")


def test_actions_of_a_session_without_calls_and_of_none(insights: Reader) -> None:
    assert queries.run(insights, "actions", {"session_id": str(INSIGHT_IDS["x1"])})["actions"] == []
    with pytest.raises(QueryError, match="no session 'nope'"):
        queries.run(insights, "actions", {"session_id": "nope"})


def test_cache_report_by_session_user_and_model(insights: Reader) -> None:
    report = queries.run(insights, "cache", {"by": "session"})
    assert report["totals"] == {
        "busts": 2,
        "lost_tokens": 8000,
        "rewritten_tokens": 8000,
        "lost_micros": 5500,
        "unpriced_busts": 1,
    }
    rows = [(r["key"], r["busts"], r["lost_micros"], r["unpriced_busts"], r["interceptions"]) for r in report["rows"]]
    assert rows == [("cc", 1, 5500, 0, 5), ("cx", 1, None, 1, 2)]
    # cc: 7000 of 19050 input tokens were read from the cache
    assert report["rows"][0]["cache_hit_ratio"] == round(7000 / 19050, 4)
    [worst, other] = report["busts"]
    assert (worst["interception_id"], worst["session_id"], worst["location"], worst["lost_tokens"]) == (
        str(INSIGHT_IDS["m2"]),
        "cc",
        "system",
        5000,
    )
    assert other["cost_micros"] is None
    by_user = queries.run(insights, "cache", {"by": "user"})["rows"]
    assert [(r["key"], r["busts"], r["interceptions"]) for r in by_user] == [("alice", 1, 6), ("bob", 1, 2)]
    assert queries.run(insights, "cache", {"by": "model", "filters": {"user": "bob"}})["rows"][0]["key"] == "gpt-5"


def test_cache_report_of_no_busts_is_zero_not_unpriced(insights: Reader) -> None:
    report = queries.run(insights, "cache", {"by": "branch", "filters": {"client": "Gemini CLI"}})
    assert report["totals"] == {
        "busts": 0,
        "lost_tokens": 0,
        "rewritten_tokens": 0,
        "lost_micros": 0,
        "unpriced_busts": 0,
    }
    assert (report["rows"], report["busts"]) == ([], [])
    by_branch = queries.run(insights, "cache", {"by": "branch"})["rows"]
    assert [(r["key"], r["busts"]) for r in by_branch] == [("feature/ledger", 1), ("main", 1)]


def test_cache_report_refuses_an_unknown_grouping(insights: Reader) -> None:
    with pytest.raises(QueryError, match="--by must be one of session, user"):
        queries.run(insights, "cache", {"by": "colour"})


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("repo", [("github.com/acme/widgets", 5), ("tool", 2), (None, 1)]),
        ("branch", [("feature/ledger", 5), ("main", 2), (None, 1)]),
        ("agent", [("main", 5), ("Explore", 2), (None, 1)]),
    ],
)
def test_usage_by_repository_branch_and_agent(
    insights: Reader, by: str, expected: list[tuple[str | None, int]]
) -> None:
    rows = queries.run(insights, "usage", {"by": by})["rows"]
    assert sorted(((r["key"], r["interceptions"]) for r in rows), key=lambda r: -r[1]) == expected


def test_attribution_filters_sessions_and_interceptions(insights: Reader) -> None:
    sessions = queries.run(insights, "sessions", {"filters": {"repository": "github.com/acme/widgets"}})["sessions"]
    assert [(s["session_id"], s["repositories"], s["branches"], s["agents"]) for s in sessions] == [
        ("cc", ["github.com/acme/widgets"], ["feature/ledger"], ["Explore", "main"])
    ]
    listed = queries.run(insights, "interceptions", {"filters": {"agent": "Explore"}})["interceptions"]
    assert [UUID(i["id"]) for i in listed] == [INSIGHT_IDS["s2"], INSIGHT_IDS["s1"]]
    assert listed[0]["cache_hit_ratio"] == round(2000 / 2010, 4)
    assert (listed[0]["repository"], listed[0]["branch"], listed[0]["working_directory"]) == (
        "github.com/acme/widgets",
        "feature/ledger",
        "/work/widgets",
    )
    none = queries.run(insights, "interceptions", {"filters": {"branch": "main", "user": "alice"}})["interceptions"]
    assert none == []


def test_a_session_shows_each_interceptions_attribution_and_cache_hit_ratio(insights: Reader) -> None:
    shown = queries.run(insights, "session", {"session_id": "cc"})
    steps = [i for t in shown["threads"] for i in t["interceptions"]]
    assert [(i["agent"], i["cache_hit_ratio"]) for i in steps][:3] == [
        ("main", 0.0),
        ("Explore", 0.0),
        ("Explore", round(2000 / 2010, 4)),
    ]
