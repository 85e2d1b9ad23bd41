"""`aibridge web`: a read-only view of the audit in a browser: sessions, one session's timeline, spend, live.

Every answer comes from the query layer (`addon.audit.queries`) through the CLI's sources: the proxy's live
endpoint while it runs, else the file read-only, else PostgreSQL. A source is opened per request and let go
after it, so the view never keeps the proxy from opening its file. Each page's URL holds its filters (paste it
into a ticket); `?format=json` and `?format=csv` give what the page shows.
"""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import click
import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from addon.audit.queries import MAX_LIMIT, SESSION_SORTS, cache_hit_ratio, usage_totals
from addon.audit.store import masked
from addon.cli import render
from addon.cli.source import Source, open_source
from addon.config import Config
from addon.policy.budgets import Ledger
from addon.web import charts
from addon.web.downloads import dollars, to_csv
from addon.web.guard import Guard

HERE: Final = Path(__file__).parent
FILTERS: Final = ("user", "client", "model", "provider", "provider_name", "since", "until")
"""Query-string filters, named as the CLI's options; `q` searches the prompts."""
PAGE_SIZE: Final = 50
TOP: Final = 100
"""Rows per group the spend page's tables show; the downloads have them all."""
SESSION_COLUMNS: Final = (
    "session_id",
    "user",
    "client",
    "models",
    "providers",
    "threads",
    "interceptions",
    "started_at",
    "last_active",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micros",
    "cost_usd",
    "unpriced_rows",
    "last_prompt",
)
STEP_COLUMNS: Final = (
    "thread",
    "id",
    "started_at",
    "ended_at",
    "duration_ms",
    "provider_name",
    "model",
    "response_model",
    "status",
    "http_status",
    "error",
    "prompt",
    "client_tool_calls",
    "injected_tool_calls",
    "tool_errors",
    "rounds",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micros",
    "cost_usd",
    "unpriced_rows",
)
USAGE_COLUMNS: Final = (
    "group",
    "key",
    "interceptions",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_hit_ratio",
    "cost_micros",
    "cost_usd",
    "unpriced_rows",
    "limit_micros",
)
TAIL_COLUMNS: Final = (
    "ended_at",
    "id",
    "session_id",
    "user",
    "client",
    "provider_name",
    "model",
    "streaming",
    "status",
    "http_status",
    "error",
    "started_at",
    "input_tokens",
    "output_tokens",
    "cost_micros",
    "cost_usd",
    "unpriced_rows",
)


# --- formatting, for the templates --------------------------------------------------------------------------


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def millis(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    began, ended = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    return round((ended - began).total_seconds() * 1000)


def duration(ms: int | float | None) -> str:
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000:.0f} min {ms % 60_000 / 1000:.0f} s"


def size(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 1024:
        return f"{n:,} B"
    return f"{n / 1024:,.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def pretty(text: str | None) -> str:
    """Tool arguments, indented when they are JSON."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # prompts and tool arguments are anyone's text: always escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(money=render.money, count=render.count, when=render.when, short=render.short)
    env.globals.update(ratio=ratio, duration=duration, size=size, pretty=pretty)
    env.filters["merged"] = lambda params, **more: {**params, **more}
    env.filters["q"] = lambda params: urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return Jinja2Templates(env=env)


# --- the application ----------------------------------------------------------------------------------------


class Pages:
    def __init__(self, db: str, config: Config | None, opener: Callable[[str], Source] = open_source) -> None:
        self.db = db
        self.label = masked(db)  # a postgresql:// URL without its password
        self.config = config
        self._open = opener
        self._templates = templates()

    @contextmanager
    def source(self) -> Iterator[Source]:
        """A source for one request; its errors as HTTP errors that say why."""
        try:
            source = self._open(self.db)
        except click.ClickException as e:
            raise HTTPException(503, e.message) from None
        try:
            yield source
        except click.ClickException as e:
            status = 404 if e.message.startswith("no session ") else 400
            raise HTTPException(status, e.message) from None
        except OSError as e:  # the proxy went away mid-request
            raise HTTPException(503, f"the audit stopped answering: {e}") from None
        finally:
            source.close()

    def page(self, request: Request, template: str, context: dict[str, Any]) -> Response:
        return self._templates.TemplateResponse(
            request, template, {"db": self.label, "path": request.url.path, **context}
        )

    # --- sessions

    def sessions(self, request: Request) -> Response:
        if (clean := _without_empty(request)) is not None:
            return clean
        query, wanted = request.query_params, _format(request)
        filters = _filters(query)
        sort = query.get("sort") or "last_active"
        params = {"filters": filters, "limit": _limit(query), "after": query.get("after") or None, "sort": sort}
        with self.source() as source:
            result = source.run("sessions", params)
            if wanted is None:  # the form's choices
                clients = source.run("clients", {"filters": {}})["clients"]
                models = source.run("models", {"filters": {}})["models"]
        match wanted:
            case "json":
                return JSONResponse({"filters": filters, "sort": sort, **result})
            case "csv":
                rows = [{**s, "cost_usd": dollars(s["cost_micros"])} for s in result["sessions"]]
                return _csv(to_csv(rows, SESSION_COLUMNS), "sessions")
        form = {name: query.get(name, "") for name in (*FILTERS, "q")}
        return self.page(
            request,
            "sessions.html",
            {
                "result": result,
                "form": form,
                "sort": sort,
                "sorts": SESSION_SORTS,
                "here": {**form, "sort": sort if sort != "last_active" else "", "limit": query.get("limit", "")},
                "clients": [c["name"] for c in clients],
                "models": [m["name"] for m in models],
                "paged": bool(query.get("after")),
            },
        )

    # --- one session

    def session(self, request: Request) -> Response:
        session_id, wanted = request.path_params["session_id"], _format(request)
        with self.source() as source:
            result = source.run("session", {"session_id": session_id})
            ledger = source.run("actions", {"session_id": session_id}) if wanted is None else None
        if wanted == "json":
            return JSONResponse(result)  # as the query layer answers (the CLI's --json)
        steps = []
        for n, thread in enumerate(result["threads"], 1):
            for step in thread["interceptions"]:
                step["thread"] = n
                step["duration_ms"] = millis(step["started_at"], step["ended_at"])
                step["totals"] = usage_totals(step["usage"])
                steps.append(step)
        if wanted == "csv":
            return _csv(to_csv((_step_row(s) for s in steps), STEP_COLUMNS), f"session-{_safe(session_id)}")
        totals = result["totals"]
        return self.page(
            request,
            "session.html",
            {
                "s": result,
                "totals": totals,
                "hit": cache_hit_ratio(totals),
                "duration_ms": millis(result["started_at"], result["ended_at"]),
                "steps": len(steps),
                "tool_calls": sum(len(s["tools"]) for s in steps),
                "actions": {a["call_id"]: a for a in ledger["actions"] if a["call_id"]} if ledger else {},
                "outcomes": ledger["outcomes"] if ledger else {},
                "where": {
                    key: sorted({step[column] for step in steps if step[column]})
                    for key, column in (("Repository", "repository"), ("Branch", "branch"), ("Agents", "agent"))
                },
            },
        )

    # --- spend

    def spend(self, request: Request) -> Response:
        if (clean := _without_empty(request)) is not None:
            return clean
        filters, wanted = _filters(request.query_params), _format(request)
        with self.source() as source:
            groups = source.run("spend", {"filters": filters})
            month = source.run("month_spend", {})
        budgets = self._budgets(month)
        match wanted:
            case "json":
                return JSONResponse(
                    {"filters": filters, **groups, "month": month["month"], "budgets": budgets, "limits": self._limits}
                )
            case "csv":
                rows = [
                    {"group": name.removeprefix("by_"), **row, "cost_usd": dollars(row["cost_micros"])}
                    for name, group in groups.items()
                    for row in group
                ]
                rows += [
                    {
                        "group": f"budget {month['month']}",
                        "key": b["user"],
                        "cost_micros": b["spent_micros"],
                        "cost_usd": dollars(b["spent_micros"]),
                        "unpriced_rows": b["unpriced_rows"],
                        "limit_micros": b["limit_micros"],
                    }
                    for b in budgets
                ]
                return _csv(to_csv(rows, USAGE_COLUMNS), "spend")

        by_day = groups["by_day"]
        chart_of = {
            name: charts.rows(
                [(str(r["key"]), r["cost_micros"]) for r in groups[f"by_{name}"][:12]], f"cost by {name}", render.money
            )
            for name in ("user", "model", "client")
        }
        # over the range's days (at most MAX_LIMIT, the newest); each day row counts its own unpriced rows
        totals = usage_totals(by_day) | {k: sum(r[k] or 0 for r in by_day) for k in ("interceptions", "unpriced_rows")}
        return self.page(
            request,
            "spend.html",
            {
                "groups": groups,
                "top": TOP,
                "form": {name: request.query_params.get(name, "") for name in FILTERS},
                "here": {name: request.query_params.get(name, "") for name in FILTERS},
                "day_chart": charts.columns(
                    [(r["key"], r["cost_micros"]) for r in by_day], "cost by day", render.money
                ),
                "charts": chart_of,
                "totals": totals,
                "hit": cache_hit_ratio(totals),
                "month": month["month"],
                "budgets": budgets,
                "limits": self._limits,
            },
        )

    @property
    def _limits(self) -> bool:
        return self.config is not None and bool(self.config.budgets.users or self.config.budgets.groups)

    def _budgets(self, month: dict[str, Any]) -> list[dict[str, Any]]:
        """Each user's spend this month against their limit (the proxy's rule: their own, else their groups'
        highest); users with a limit and no spend too. Without a config, the spend alone."""
        spent = {r["user"]: r for r in month["users"]}
        ledger = Ledger(self.config.budgets, self.config.users) if self.config else None
        names = set(spent)
        if self.config is not None:
            names |= {n for n, _ in self.config.budgets.users}
            names |= {u.name for u in self.config.users if ledger and ledger.limit_for(u.name) is not None}
        out = []
        for name in names:
            row = spent.get(name, {"spent_micros": 0, "unpriced_rows": 0})
            limit = ledger.limit_for(name) if ledger else None
            used = row["spent_micros"] / limit if limit else None
            out.append(
                {
                    "user": name,
                    "spent_micros": row["spent_micros"],
                    "unpriced_rows": row["unpriced_rows"],
                    "limit_micros": limit,
                    "used": None if used is None else round(used, 4),
                }
            )
        # the nearest their limit first, then the biggest spenders
        out.sort(key=lambda b: (-(b["used"] if b["used"] is not None else -1), -b["spent_micros"], b["user"]))
        return out

    # --- live

    def live(self, request: Request) -> Response:
        after, wanted = request.query_params.get("after") or None, _format(request)
        with self.source() as source:
            result = source.run("tail", {"after": after, "limit": 200})
        match wanted:
            case "json":
                rows = [
                    {
                        **r,
                        "cost": render.money(r["cost_micros"], r["unpriced_rows"]),
                        "when": render.when(r["ended_at"]),
                    }
                    for r in result["interceptions"]
                ]
                return JSONResponse({"interceptions": rows, "next": result["next"]})
            case "csv":
                rows = [{**r, "cost_usd": dollars(r["cost_micros"])} for r in result["interceptions"]]
                return _csv(to_csv(rows, TAIL_COLUMNS), "live")
        return self.page(
            request, "live.html", {"rows": list(reversed(result["interceptions"])), "next": result["next"]}
        )


def _step_row(step: dict[str, Any]) -> dict[str, Any]:
    totals = step["totals"]
    return {
        **step,
        **totals,
        "prompt": step["prompts"][-1]["prompt"] if step["prompts"] else None,
        "client_tool_calls": sum(not t["injected"] for t in step["tools"]),
        "injected_tool_calls": sum(bool(t["injected"]) for t in step["tools"]),
        "tool_errors": sum(bool(t["error"]) for t in step["tools"]),
        "rounds": len(step["usage"]),
        "cost_usd": dollars(totals["cost_micros"]),
    }


def _without_empty(request: Request) -> Response | None:
    """A submitted form sends its empty fields too: the redirect drops them, so the URL to paste is short."""
    query = request.query_params.multi_items()
    if all(value.strip() for _, value in query):
        return None
    rest = urlencode([(k, v) for k, v in query if v.strip()])
    return RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), 303)


def _filters(query: Any) -> dict[str, str]:
    filters = {name: query[name].strip() for name in FILTERS if query.get(name, "").strip()}
    if text := query.get("q", "").strip():
        filters["prompt"] = text
    return filters


def _limit(query: Any) -> int:
    try:
        limit = int(query.get("limit") or PAGE_SIZE)
    except ValueError:
        raise HTTPException(400, f"limit must be a number from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise HTTPException(400, f"limit must be a number from 1 to {MAX_LIMIT}")
    return limit


def _format(request: Request) -> str | None:
    wanted = request.query_params.get("format") or None
    if wanted not in (None, "html", "json", "csv"):
        raise HTTPException(400, "format must be html, json or csv")
    return None if wanted == "html" else wanted


def _csv(text: str, name: str) -> Response:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="aibridge-{name}-{stamp}.csv"'},
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def create_app(
    db: str,
    *,
    token: str | None = None,
    config: Config | None = None,
    opener: Callable[[str], Source] = open_source,
) -> Guard:
    """The web view of the audit `db` (a DuckDB file or a postgresql:// URL), behind the token rule."""
    pages = Pages(db, config, opener)
    errors = templates()

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.query_params.get("format") in ("json", "csv"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return errors.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status_code, "message": exc.detail, "path": request.url.path, "db": pages.label},
            status_code=exc.status_code,
        )

    app = Starlette(
        routes=[
            Route("/", pages.sessions),
            Route("/sessions", pages.sessions),
            Route("/sessions/{session_id:path}", pages.session),
            Route("/spend", pages.spend),
            Route("/live", pages.live),
            Route("/favicon.ico", lambda _: RedirectResponse("/static/favicon.svg", 301)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={HTTPException: error},
    )
    return Guard(app, token)


def serve(app: Any, host: str, port: int) -> None:
    """Serve until interrupted. No access log: a first visit's URL holds the token."""
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", server_header=False)
