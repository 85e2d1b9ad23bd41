"""The action ledger, the cache report and attribution, read back from both stores through `queries.run`."""

from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from addon.audit import AuditWriter, queries
from addon.audit.queries import QueryError, Reader
from addon.cli.source import open_source
from tests.support.audit_rows import T0, Call, CallBust, CallResult, CallTool, ident, record_call

BASE = {"user": "alice", "client": "Claude Code", "provider": "anthropic", "provider_name": "anthropic"}
WIDGETS = {"working_directory": "/work/widgets", "repository": "github.com/acme/widgets", "branch": "feature/ledger"}


def at(seconds: float) -> "timedelta":
    return timedelta(seconds=seconds)


CALLS = [
    # the main conversation calls Agent and Bash; the sub-agent runs Read (fails) and Grep (never answered)
    Call("m1", T0, "completed", T0 + at(2), **BASE, model="claude-opus-5-5", session="cc", agent="main",
         **WIDGETS, usages=((10, 5, 0, 5000, 100),),
         tools=(CallTool("Agent", "toolu_agent", '{"prompt":"look"}'), CallTool("Bash", "toolu_bash", '{"command":"ls"}'))),
    Call("s1", T0 + at(3), "completed", T0 + at(4), **BASE, model="claude-opus-5-5", session="cc", agent="Explore",
         **WIDGETS, usages=((10, 5, 0, 2000, 40),), tools=(CallTool("Read", "toolu_read", '{"file_path":"a.py"}'),)),
    Call("s2", T0 + at(6), "completed", T0 + at(7), **BASE, model="claude-opus-5-5", session="cc", agent="Explore",
         **WIDGETS, usages=((10, 5, 2000, 0, 10),), results=(CallResult("toolu_read", True, 31, "File does not exist."),),
         tools=(CallTool("Grep", "toolu_grep", '{"pattern":"x"}'),)),
    Call("m2", T0 + at(10), "completed", T0 + at(11), **BASE, model="claude-opus-5-5", session="cc", agent="main",
         **WIDGETS, usages=((10, 5, 0, 5000, 100),),
         results=(CallResult("toolu_agent", False, 400, "found it"), CallResult("toolu_bash", False, 12, "a.py")),
         busts=(CallBust("m1", 5000, 0, 5500, "system"),),
         tools=(CallTool("mcp_time", "toolu_mcp", "{}", injected=True),
                CallTool("Bash", "toolu_rm", '{"command":"rm -rf /"}', metadata={"gate": "no-rm", "blocked": True}))),
    Call("m3", T0 + at(12), "completed", T0 + at(13), **BASE, model="claude-opus-5-5", session="cc", agent="main",
         **WIDGETS, usages=((10, 5, 5000, 0, 20),), results=(CallResult("toolu_bash", False, 12, "a.py"),)),  # a retry
    # another user's Codex session in another repository, with a cheaper bust
    Call("c1", T0 + at(20), "completed", T0 + at(21), user="bob", client="Codex", provider="openai",
         provider_name="openai", model="gpt-5", session="cx", agent="main", working_directory="/src/tool",
         repository="tool", branch="main", usages=((100, 5, 3000, 0, 30),)),
    Call("c2", T0 + at(22), "completed", T0 + at(23), user="bob", client="Codex", provider="openai",
         provider_name="openai", model="gpt-5", session="cx", agent="main", working_directory="/src/tool",
         repository="tool", branch="main", usages=((3100, 5, 0, 0, 300),), busts=(CallBust("c1", 3000, 0, None, "tools"),)),
    # an SDK call that says nothing about where it came from
    Call("x1", T0 + at(30), "completed", T0 + at(31), **BASE, model="claude-haiku-4-5", session=None,
         usages=((10, 1, 0, 0, 1),)),
]  # fmt: skip
IDS = {c.name: ident(c.started, n) for n, c in enumerate(CALLS)}


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    if request.param == "postgresql":
        path = request.getfixturevalue("postgres_server").create_database(f"insights_{uuid4().hex[:12]}")
    else:
        path = str(tmp_path_factory.mktemp("insights") / "audit.duckdb")
    writer = AuditWriter(path)
    for call in CALLS:
        record_call(writer, call, IDS)
    writer.close()
    source = open_source(path)
    yield source._reader  # type: ignore[attr-defined]
    source.close()


def test_actions_pair_each_call_with_its_first_result_in_order(db: Reader) -> None:
    result = queries.run(db, "actions", {"session_id": "cc"})
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
        '{"command":"ls"}',
        "a.py",
        str(IDS["m2"]),
    )
    assert result["actions"][5]["gate"] == "no-rm"
    assert result["outcomes"] == {"ok": 3, "error": 1, "unanswered": 1, "blocked": 1, "not run": 0}


def test_actions_of_a_session_without_calls_and_of_none(db: Reader) -> None:
    assert queries.run(db, "actions", {"session_id": str(IDS["x1"])})["actions"] == []
    with pytest.raises(QueryError, match="no session 'nope'"):
        queries.run(db, "actions", {"session_id": "nope"})


def test_cache_report_by_session_user_and_model(db: Reader) -> None:
    report = queries.run(db, "cache", {"by": "session"})
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
        str(IDS["m2"]),
        "cc",
        "system",
        5000,
    )
    assert other["cost_micros"] is None
    by_user = queries.run(db, "cache", {"by": "user"})["rows"]
    assert [(r["key"], r["busts"], r["interceptions"]) for r in by_user] == [("alice", 1, 6), ("bob", 1, 2)]
    assert queries.run(db, "cache", {"by": "model", "filters": {"user": "bob"}})["rows"][0]["key"] == "gpt-5"


def test_cache_report_refuses_an_unknown_grouping(db: Reader) -> None:
    with pytest.raises(QueryError, match="--by must be one of session, user"):
        queries.run(db, "cache", {"by": "colour"})


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("repo", [("github.com/acme/widgets", 5), ("tool", 2), (None, 1)]),
        ("branch", [("feature/ledger", 5), ("main", 2), (None, 1)]),
        ("agent", [("main", 5), ("Explore", 2), (None, 1)]),
    ],
)
def test_usage_by_repository_branch_and_agent(db: Reader, by: str, expected: list[tuple[str | None, int]]) -> None:
    rows = queries.run(db, "usage", {"by": by})["rows"]
    assert sorted(((r["key"], r["interceptions"]) for r in rows), key=lambda r: -r[1]) == expected


def test_attribution_filters_sessions_and_interceptions(db: Reader) -> None:
    sessions = queries.run(db, "sessions", {"filters": {"repository": "github.com/acme/widgets"}})["sessions"]
    assert [(s["session_id"], s["repositories"], s["branches"], s["agents"]) for s in sessions] == [
        ("cc", ["github.com/acme/widgets"], ["feature/ledger"], ["Explore", "main"])
    ]
    listed = queries.run(db, "interceptions", {"filters": {"agent": "Explore"}})["interceptions"]
    assert [UUID(i["id"]) for i in listed] == [IDS["s2"], IDS["s1"]]
    assert listed[0]["cache_hit_ratio"] == round(2000 / 2010, 4)
    assert (listed[0]["repository"], listed[0]["branch"], listed[0]["working_directory"]) == (
        "github.com/acme/widgets",
        "feature/ledger",
        "/work/widgets",
    )
    none = queries.run(db, "interceptions", {"filters": {"branch": "main", "user": "alice"}})["interceptions"]
    assert none == []


def test_a_session_shows_each_interceptions_attribution_and_cache_hit_ratio(db: Reader) -> None:
    shown = queries.run(db, "session", {"session_id": "cc"})
    steps = [i for t in shown["threads"] for i in t["interceptions"]]
    assert [(i["agent"], i["cache_hit_ratio"]) for i in steps][:3] == [
        ("main", 0.0),
        ("Explore", 0.0),
        ("Explore", round(2000 / 2010, 4)),
    ]
