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

from addon.audit import AuditWriter, InterceptionEnded, PromptSubmitted, TokensUsed
from addon.audit.duckfile import DuckReader, open_read_only
from addon.audit.postgres import connect_reader
from addon.audit.queries import MAX_LIMIT, QueryError, Reader, encode_cursor, run
from addon.audit.store import is_postgres
from tests.support.audit_rows import T0, started

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
