"""The web view on a known audit file (tests/unit/web/conftest.py), through Starlette's TestClient: each page shows
the known rows; filters, sorts, prompt search and paging pick the right ones; the downloads hold what the pages
show, as the query layer answers; anyone's text is escaped; no inline script or style (the CSP forbids them);
the file is let go between requests; and the same pages answer live through the proxy's query endpoint."""

import asyncio
import csv
import io
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from starlette.testclient import TestClient

from addon.audit import AuditWriter
from addon.audit.endpoint import QueryEndpoint
from addon.audit.store import masked
from addon.cli.source import Live, open_source
from addon.config import parse_config
from addon.web.app import create_app
from tests.unit.web.conftest import BY_NAME, FORMULA_PROMPT, NOW, SCRIPT_PROMPT, Call, emit, seed

HASH = "sha256:" + "0" * 64
CONFIG = parse_config(
    {
        "users": {"bob": {"token": HASH, "groups": ["eng"]}, "dave": {"token": HASH}, "erin": {"token": HASH}},
        "budgets": {"users": {"dave": 2.0, "erin": 5.0}, "groups": {"eng": 10.0}},
    }
)


@pytest.fixture
def client(audit_file: str) -> Iterator[TestClient]:
    with TestClient(create_app(audit_file)) as c:
        yield c


def html(client: TestClient, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return answer.text


def text(page: str) -> str:
    """The page's visible text, tags out, whitespace folded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())


def session_links(page: str) -> list[str]:
    """The session ids a sessions page lists, in order."""
    return re.findall(r'<td class="id"><a href="/sessions/([^"]+)"', page)


def rows_of(page: str, table_class: str = "list") -> list[list[str]]:
    body = page.split(f'<table class="{table_class}', 1)[1].split("</table>", 1)[0]
    return [
        [" ".join(unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", re.split(r"<tbody[^>]*>", body, maxsplit=1)[1], re.S)
    ]


def run(db: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the query layer itself answers, for comparing the downloads with."""
    source = open_source(db)
    try:
        return source.run(name, params)
    finally:
        source.close()


# --- sessions -----------------------------------------------------------------------------------------------


def test_the_sessions_page_lists_every_session_newest_first_with_its_numbers(client: TestClient) -> None:
    page = html(client, "/")
    assert session_links(page) == ["zed-1", "cc-2", "cx-1", "cc-1"]
    assert html(client, "/sessions") == page
    rows = {r[1]: r for r in rows_of(page)}
    # last active, session, user, client, models, threads, calls, input, output, cache read, cache write, cost, prompt
    assert rows["cc-1"][2:] == [
        "alice", "Claude Code", "claude-sonnet-4-5", "2", "3", "135", "90", "3,500", "200", "$0.0105", SCRIPT_PROMPT,
    ]  # fmt: skip
    assert rows["cc-1"][0] == "2026-03-01 10:05:01"
    assert rows["cx-1"][11] == "unpriced"  # never $0
    assert rows["zed-1"][11] == "$1.5000"
    assert 'href="/sessions/cc-1"' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("user=bob", ["cx-1"]),
        ("client=Claude+Code", ["cc-2", "cc-1"]),
        ("model=claude-haiku-4-5", ["cc-2"]),
        ("provider_name=anthropic-eu", ["cc-2"]),
        ("provider=openai", ["cx-1"]),
        ("since=2026-03-02", ["zed-1", "cc-2", "cx-1"]),
        ("since=2026-03-02&until=2026-03-03T10:00:00Z", ["cx-1"]),
        ("q=PARSER", ["cc-1"]),  # any case
        ("q=%3Cscript%3E", ["cc-1"]),  # taken literally
        ("q=100%25", []),  # no wildcards
        ("user=&client=&q=", ["zed-1", "cc-2", "cx-1", "cc-1"]),  # empty fields of the form are no filter
        ("user=+&q=cc", []),
        ("user=nobody", []),
    ],
)
def test_sessions_filters(client: TestClient, query: str, expected: list[str]) -> None:
    assert session_links(html(client, f"/sessions?{query}")) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("last_active", ["zed-1", "cc-2", "cx-1", "cc-1"]),
        ("cost", ["zed-1", "cc-2", "cc-1", "cx-1"]),  # cx-1 is unpriced: it counts 0
        ("tokens", ["cc-1", "cc-2", "cx-1", "zed-1"]),
    ],
)
def test_sessions_sort(client: TestClient, sort: str, expected: list[str]) -> None:
    page = html(client, f"/sessions?sort={sort}")
    assert session_links(page) == expected
    assert f'<option value="{sort}" selected>' in page


@pytest.mark.parametrize("sort", ["last_active", "cost", "tokens"])
def test_sessions_page_by_the_cursor_and_keep_their_filters(client: TestClient, sort: str) -> None:
    everything = session_links(html(client, f"/sessions?sort={sort}"))
    seen, url = [], f"/sessions?sort={sort}&limit=3"
    while url:
        page = html(client, url)
        seen += session_links(page)
        found = re.search(r'<a rel="next" href="([^"]+)"', page)
        url = unescape(found.group(1)) if found else ""
        if url:
            assert f"sort={sort}" in url or sort == "last_active"
            assert "limit=3" in url
    assert seen == everything
    narrowed = html(client, f"/sessions?sort={sort}&limit=1&client=Claude+Code")
    next_url = unescape(re.search(r'<a rel="next" href="([^"]+)"', narrowed).group(1))  # type: ignore[union-attr]
    assert "client=Claude+Code" in next_url
    assert len(session_links(html(client, next_url))) == 1
    assert "First page" in html(client, next_url)


@pytest.mark.parametrize("page", ["/sessions", "/spend"])
def test_a_submitted_form_lands_on_a_short_url(client: TestClient, page: str) -> None:
    answer = client.get(f"{page}?user=&client=Codex&model=&q=&since=", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, f"{page}?client=Codex")
    assert client.get(f"{page}?user=", follow_redirects=False).headers["location"] == page


def test_bad_sessions_queries_are_refused_saying_why(client: TestClient) -> None:
    answer = client.get("/sessions?since=yesterday")
    assert answer.status_code == 400
    assert "&#39;yesterday&#39; is not an ISO 8601 date" in answer.text
    assert client.get("/sessions?limit=0").status_code == 400
    assert client.get("/sessions?sort=colour").status_code == 400
    assert client.get("/sessions?after=nonsense").status_code == 400
    assert client.get("/sessions?format=xml").status_code == 400
    assert client.get("/sessions?since=x&format=json").json() == {
        "error": "--since: 'x' is not an ISO 8601 date or time (e.g. 2026-11-01 or 2026-11-01T09:30:00Z)"
    }


def test_sessions_downloads_hold_what_the_page_shows(client: TestClient, audit_file: str) -> None:
    query = "client=Claude+Code&sort=cost&limit=1"
    data = client.get(f"/sessions?{query}&format=json").json()
    expected = run(audit_file, "sessions", {"filters": {"client": "Claude Code"}, "sort": "cost", "limit": 1})
    assert data == {"filters": {"client": "Claude Code"}, "sort": "cost", **expected}
    assert [s["session_id"] for s in data["sessions"]] == ["cc-2"]
    answer = client.get(f"/sessions?{query}&format=csv")
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="aibridge-sessions-')
    (row,) = csv.DictReader(io.StringIO(answer.text))
    assert row["session_id"] == "cc-2"
    assert (row["cost_micros"], row["cost_usd"], row["models"]) == ("90000", "0.090000", "claude-haiku-4-5")
    page = html(client, f"/sessions?{query}")
    assert 'href="?client=Claude+Code&amp;sort=cost&amp;limit=1&amp;format=csv"' in page


def test_a_csv_cell_that_a_spreadsheet_would_run_is_defused(client: TestClient) -> None:
    rows = list(csv.DictReader(io.StringIO(client.get("/sessions?user=bob&format=csv").text)))
    assert rows[0]["last_prompt"] == "'" + FORMULA_PROMPT
    assert rows[0]["cost_micros"] == ""  # unpriced: empty, not 0
    assert rows[0]["cost_usd"] == ""


# --- one session --------------------------------------------------------------------------------------------


def test_the_session_page_shows_the_timeline_of_threads_in_order(client: TestClient) -> None:
    page = html(client, "/sessions/cc-1")
    seen = text(page)
    assert [t.split('"')[0] for t in re.findall(r'<section class="thread" id="(thread-\d+)', page)] == [
        "thread-1",
        "thread-2",
    ]
    order = [seen.index(s) for s in ("refactor the parser", "search_docs", "fetch_page", "now write tests")]
    assert order == sorted(order)
    assert "Let me look at the parser first." in seen  # thinking
    assert "Read" in seen and "&#34;path&#34;: &#34;parser.py&#34;" in page  # client tool call, arguments shown
    assert "overloaded_error: Overloaded" in seen and "HTTP 529" in seen and "failed" in seen
    assert "5.0 s" in seen  # i1 ran 5 s


def test_the_session_page_shows_each_client_calls_outcome_and_where_the_session_ran(client: TestClient) -> None:
    page = html(client, "/sessions/cc-1")
    [read] = rows_of(page, "tools")
    assert read[0] == "Read" and read[3:] == ["error", "2.0 KB", "59.0 s", "No such file: parser.py"]
    seen = text(page)
    assert "Tool calls 3 · error 2" in seen  # the client's Read, and search_docs the bridge ran
    assert "Repository github.com/acme/parser" in seen and "Branch main" in seen and "Agents Explore, main" in seen
    assert '<span class="tag agent">Explore</span>' in page  # the sub-agent's step


def test_injected_tool_calls_show_result_size_duration_and_error(client: TestClient) -> None:
    page = html(client, "/sessions/cc-1")
    rows = rows_of(page, "tools injected")
    assert [r[0] for r in rows] == ["search_docs", "fetch_page"]
    assert rows[0][1] == "http://127.0.0.1:9100/mcp"
    assert rows[0][3:] == ["–", "30.0 s", "timeout after 30 s"]
    assert rows[1][3:] == ["2.0 KB", "120 ms", ""]


def test_tokens_per_round_with_cache_reads_and_writes_apart_and_the_totals(client: TestClient) -> None:
    page = html(client, "/sessions/cc-1")
    usage = re.findall(r'<table class="usage">.*?</table>', page, re.S)
    rounds = [rows_of(t, "usage") for t in usage]
    assert rounds == [
        [["1", "100", "50", "1,000", "200", "$0.0050"]],
        [["1", "20", "30", "1,200", "0", "$0.0030"], ["2", "15", "10", "1,300", "0", "$0.0025"]],
    ]
    seen = text(page)
    assert "Input 135 Output 90 Cache read 3,500 Cache write 200 Cache hit 91.3% Cost $0.0105" in seen
    assert "Calls 3" in seen and "Tool calls 3" in seen and "Threads 2" in seen


def test_a_session_that_could_not_be_priced_says_unpriced(client: TestClient) -> None:
    assert "Cost unpriced" in text(html(client, "/sessions/cx-1"))


def test_an_unknown_session_is_a_404(client: TestClient) -> None:
    answer = client.get("/sessions/no-such")
    assert answer.status_code == 404
    assert "no session &#39;no-such&#39;" in answer.text


def test_session_downloads(client: TestClient, audit_file: str) -> None:
    assert client.get("/sessions/cc-1?format=json").json() == run(audit_file, "session", {"session_id": "cc-1"})
    rows = list(csv.DictReader(io.StringIO(client.get("/sessions/cc-1?format=csv").text)))
    assert [(r["thread"], r["id"]) for r in rows] == [
        ("1", str(BY_NAME["i1"].id)),
        ("1", str(BY_NAME["i2"].id)),
        ("2", str(BY_NAME["i3"].id)),
    ]
    i2 = rows[1]
    assert (i2["rounds"], i2["injected_tool_calls"], i2["tool_errors"], i2["cache_read_tokens"]) == (
        "2",
        "2",
        "1",
        "2500",
    )
    assert (i2["cost_micros"], i2["duration_ms"]) == ("5500", "4000")
    assert rows[2]["error"] == "overloaded_error: Overloaded"
    assert rows[2]["cost_micros"] == "0"  # used nothing: costs nothing


# --- spend --------------------------------------------------------------------------------------------------


def test_the_spend_page_by_user_model_client_and_day(client: TestClient) -> None:
    page = html(client, "/spend")
    by = {
        name: rows_of(page.split(f'<section id="by-{name}">', 1)[1], "list")
        for name in ("user", "model", "client", "day")
    }
    assert [(r[0], r[-1]) for r in by["user"]] == [
        ("dave", "$1.5000"),
        ("carol", "$0.0900"),
        ("alice", "$0.0105"),
        ("bob", "unpriced"),
    ]
    assert by["user"][2][1:7] == ["2", "135", "90", "3,500", "200", "91.3%"]  # i3 used nothing: 2 calls with usage
    assert [r[0] for r in by["model"]] == ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1"]
    assert [(r[0], r[-1]) for r in by["client"]] == [
        ("Zed", "$1.5000"),
        ("Claude Code", "$0.1005"),
        ("Codex", "unpriced"),
    ]
    assert [r[0] for r in by["day"]][-3:] == ["2026-03-03", "2026-03-02", "2026-03-01"]  # newest first
    assert by["day"][0][0] == NOW.strftime("%Y-%m-%d") or by["day"][0][0] == (NOW - timedelta(minutes=3)).strftime(
        "%Y-%m-%d"
    )
    assert '<a href="/sessions?user=carol">carol</a>' in page
    assert "Cost $1.6005 (+1 unpriced)" in text(page)


def test_spend_charts_are_inline_svg(client: TestClient) -> None:
    page = html(client, "/spend")
    charts = re.findall(r'<svg class="chart (\w+)"', page)
    assert charts == ["columns", "rows", "rows", "rows"]
    by_user = page.split('<section id="by-user">', 1)[1].split("</svg>", 1)[0]
    widths = [float(w) for w in re.findall(r'<rect class="bar" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', by_user)]
    assert widths[0] == max(widths) and widths[-1] == 0  # dave's the longest bar; bob's unpriced spend none
    assert "<title>dave: $1.5000</title>" in by_user


def test_spend_filters(client: TestClient) -> None:
    page = html(client, "/spend?client=Claude+Code&until=2026-03-02")
    users = rows_of(page.split('<section id="by-user">', 1)[1], "list")
    assert [(r[0], r[-1]) for r in users] == [("alice", "$0.0105")]
    assert 'value="Claude Code"' in page


def test_without_a_config_spend_shows_no_limits_and_says_so(client: TestClient) -> None:
    page = html(client, "/spend")
    assert "started without --config" in text(page)
    assert rows_of(page, "list budgets") == [["dave", "$1.5000"]]  # this month's spend only
    data = client.get("/spend?format=json").json()
    assert data["limits"] is False
    assert data["budgets"] == [
        {"user": "dave", "spent_micros": 1_500_000, "unpriced_rows": 0, "limit_micros": None, "used": None}
    ]


def test_with_a_config_each_users_budget_this_month_against_the_limit(audit_file: str) -> None:
    with TestClient(create_app(audit_file, config=CONFIG)) as client:
        page = html(client, "/spend")
        assert "started without --config" not in page
        assert rows_of(page, "list budgets") == [
            ["dave", "$1.5000", "$2.0000", "75.0%", "75.0%"],
            ["bob", "$0.0000", "$10.0000", "0.0%", "0.0%"],  # the limit of his group
            ["erin", "$0.0000", "$5.0000", "0.0%", "0.0%"],
        ]
        assert '<meter min="0" max="2000000" low="1600000" high="1900000" optimum="0" value="1500000">' in page
        data = client.get("/spend?format=json").json()
        assert data["month"] == NOW.strftime("%Y-%m") and data["limits"] is True
        assert data["budgets"][0] == {
            "user": "dave",
            "spent_micros": 1_500_000,
            "unpriced_rows": 0,
            "limit_micros": 2_000_000,
            "used": 0.75,
        }
        rows = list(csv.DictReader(io.StringIO(client.get("/spend?format=csv").text)))
        budget = [r for r in rows if r["group"].startswith("budget ")]
        assert [(r["key"], r["cost_micros"], r["limit_micros"]) for r in budget] == [
            ("dave", "1500000", "2000000"),
            ("bob", "0", "10000000"),
            ("erin", "0", "5000000"),
        ]


def test_spend_downloads_match_the_query_layer(client: TestClient, audit_file: str) -> None:
    data = client.get("/spend?user=alice&format=json").json()
    expected = run(audit_file, "spend", {"filters": {"user": "alice"}})
    assert {k: data[k] for k in expected} == expected
    assert data["filters"] == {"user": "alice"}
    rows = list(csv.DictReader(io.StringIO(client.get("/spend?user=alice&format=csv").text)))
    assert [(r["group"], r["key"], r["cost_micros"]) for r in rows if not r["group"].startswith("budget")] == [
        ("user", "alice", "10500"),
        ("model", "claude-sonnet-4-5", "10500"),
        ("client", "Claude Code", "10500"),
        ("day", "2026-03-01", "10500"),
    ]


# --- live ---------------------------------------------------------------------------------------------------


def test_the_live_page_starts_with_the_last_ten_minutes(client: TestClient) -> None:
    page = html(client, "/live")
    (row,) = rows_of(page, "list live")
    assert row[1:5] == ["dave", "Zed", "anthropic", "claude-sonnet-4-5"]
    assert f'href="/sessions/zed-1#i-{BY_NAME["i6"].id}"' in page
    assert re.search(r'data-next="[A-Za-z0-9_-]+"', page)
    assert '<script src="/static/live.js" defer></script>' in page


def test_live_json_follows_the_cursor_as_interceptions_end(own_file: str) -> None:
    with TestClient(create_app(own_file)) as client:
        first = client.get("/live?format=json").json()
        assert [r["user"] for r in first["interceptions"]] == ["dave"]
        assert first["interceptions"][0]["cost"] == "$1.5000"
        assert client.get(f"/live?format=json&after={first['next']}").json() == {
            "interceptions": [],
            "next": first["next"],
        }
        # the proxy opens the file while the view runs (the view let go of it after each request)
        later = Call(
            "i7", 7, NOW - timedelta(seconds=30), 10, user="erin", client="Codex", model="gpt-4.1",
            provider="openai", provider_name="openai", session="cx-9", prompt="new", usages=((1, 2, 0, 0, 33),),
        )  # fmt: skip
        writer = AuditWriter(own_file)
        emit(writer, later)
        writer.close()
        found = client.get(f"/live?format=json&after={first['next']}").json()
        assert [(r["user"], r["session_id"], r["cost_micros"]) for r in found["interceptions"]] == [
            ("erin", "cx-9", 33)
        ]
        rows = list(csv.DictReader(io.StringIO(client.get(f"/live?format=csv&after={first['next']}").text)))
        assert [(r["user"], r["status"], r["cost_usd"]) for r in rows] == [("erin", "completed", "0.000033")]


def test_live_js_builds_rows_without_parsing_html(client: TestClient) -> None:
    script = client.get("/static/live.js")
    assert script.status_code == 200
    assert "innerHTML" not in script.text and "textContent" in script.text
    assert "/live?format=json" in script.text


# --- what every page promises -------------------------------------------------------------------------------

PAGES = ["/", "/sessions?sort=cost", "/sessions/cc-1", "/spend", "/live"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_has_the_nav_and_no_inline_script_or_style(client: TestClient, url: str) -> None:
    page = html(client, url)
    assert re.findall(r"<nav>.*?</nav>", page, re.S)[0].count("<a ") == 3
    for name in ("Sessions", "Spend", "Live"):
        assert f">{name}</a>" in page
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []  # scripts come from /static only
    assert " style=" not in page and "<style" not in page
    assert " on" not in re.sub(r'"[^"]*"', '""', " ".join(re.findall(r"<[a-z][^>]*>", page)))  # no onclick=...
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from another host


@pytest.mark.parametrize("url", [*PAGES, "/static/style.css", "/sessions?format=json", "/no-such-page"])
def test_every_answer_carries_the_security_headers(client: TestClient, url: str) -> None:
    headers = client.get(url).headers
    assert headers["content-security-policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_a_prompt_holding_a_script_shows_as_text(client: TestClient) -> None:
    for url in ("/sessions", "/sessions/cc-1", "/sessions?q=script"):
        page = html(client, url)
        assert "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; now write tests" in page


def test_the_static_files_and_favicon(client: TestClient) -> None:
    css = client.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "font-variant-numeric: tabular-nums" in css.text
    assert client.get("/favicon.ico", follow_redirects=False).headers["location"] == "/static/favicon.svg"


def test_no_audit_is_a_503_that_says_why(tmp_path: Path) -> None:
    with TestClient(create_app(str(tmp_path / "none.duckdb"))) as client:
        answer = client.get("/sessions")
    assert answer.status_code == 503
    assert "no audit file at" in answer.text


def test_a_postgresql_password_is_not_shown(audit_file: str) -> None:
    app = create_app("postgresql://aibridge:s3cret@127.0.0.1:1/audit", opener=lambda _: open_source(audit_file))
    with TestClient(app) as client:
        page = html(client, "/sessions")
    assert "s3cret" not in page
    assert "postgresql://aibridge:***@127.0.0.1:1/audit" in page


def test_with_a_token_the_pages_need_it_and_never_show_it(audit_file: str) -> None:
    token = "tok-Xy9-web"
    with TestClient(create_app(audit_file, token=token)) as client:
        for url in ("/sessions", "/sessions/cc-1", "/spend?format=json", "/live", "/static/style.css"):
            assert client.get(url).status_code == 401
        assert client.get("/sessions", headers={"authorization": "Bearer nope"}).status_code == 403
        bearer = client.get("/sessions/cc-1?format=json", headers={"authorization": f"Bearer {token}"})
        assert bearer.status_code == 200 and bearer.json()["session_id"] == "cc-1"
        first = client.get(f"/sessions?user=alice&token={token}", follow_redirects=False)
        assert (first.status_code, first.headers["location"]) == (303, "/sessions?user=alice")
        page = client.get(first.headers["location"])  # with the cookie the answer set
        assert page.status_code == 200 and session_links(page.text) == ["cc-1"]
        for url in ("/spend", "/live", "/sessions/cc-1"):
            assert token not in html(client, url)


def test_on_postgresql_the_pages_answer_as_on_the_file(audit_file: str, postgres_server: Any) -> None:
    url = postgres_server.create_database(f"web_{uuid4().hex[:12]}")
    seed(url)
    with TestClient(create_app(url, config=CONFIG)) as pg, TestClient(create_app(audit_file, config=CONFIG)) as file:
        for page in (
            "/sessions?format=json",
            "/sessions?sort=tokens&q=parser&format=json",
            "/sessions/cc-1?format=json",
            "/spend?format=json",
            "/spend?user=alice&format=csv",
        ):
            answer = pg.get(page)
            assert answer.status_code == 200, answer.text
            if "format=csv" in page:
                assert answer.text == file.get(page).text
            else:
                assert answer.json() == file.get(page).json()
        page = html(pg, "/sessions/cc-1")
        assert "&lt;script&gt;alert(1)" in page and "91.3%" in page
        assert masked(url) in page  # the source, without a password


# --- live through the proxy ---------------------------------------------------------------------------------


@pytest.fixture
def proxy_endpoint(own_file: str) -> Iterator[str]:
    """The proxy's query endpoint on the file, as a running proxy serves it (the writer holds the file)."""
    writer = AuditWriter(own_file)
    endpoint = QueryEndpoint(writer.reader, own_file)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(endpoint.start(), loop).result(10)
    try:
        yield own_file
    finally:
        asyncio.run_coroutine_threadsafe(endpoint.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        writer.close()


def test_while_the_proxy_runs_the_pages_answer_through_its_endpoint(proxy_endpoint: str, audit_file: str) -> None:
    assert isinstance(open_source(proxy_endpoint), Live)
    with TestClient(create_app(proxy_endpoint, config=CONFIG)) as live, TestClient(create_app(audit_file)) as offline:
        for url in (
            "/sessions?sort=cost&format=json",
            "/sessions?sort=tokens&q=parser&format=json",
            "/sessions/cc-1?format=json",
            "/spend?format=json",
        ):
            answer = live.get(url)
            assert answer.status_code == 200, answer.text
            expected = offline.get(url).json()
            if url.startswith("/spend"):
                expected = {**expected, "limits": True}
                answer_json = answer.json()
                assert {k: answer_json[k] for k in expected if k != "budgets"} == {
                    k: v for k, v in expected.items() if k != "budgets"
                }
            else:
                assert answer.json() == expected
        assert "$1.5000" in html(live, "/spend")
        assert [r["user"] for r in live.get("/live?format=json").json()["interceptions"]] == ["dave"]
