"""The `aibridge` command: sessions, threads, usage and spend from the audit, live while the proxy runs.

Every listing takes `--json`. For a DuckDB file the answers come from the running proxy's query endpoint when
there is one, else from the file itself (read-only); a `postgresql://` URL is queried directly. All run the
same queries.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from rich.console import Console

from addon.audit.queries import CACHE_GROUPS, USAGE_GROUPS
from addon.cli import render
from addon.cli.source import open_source
from addon.cli.users import add_user
from addon.config import load_config

DEFAULT_DB = "aibridge.duckdb"


def _db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        default=lambda: os.environ.get("AIBRIDGE_DB", DEFAULT_DB),
        show_default="aibridge.duckdb or $AIBRIDGE_DB",
        help="The audit (the proxy's aibridge_db): a DuckDB file, whose live endpoint is <file>.sock, or a "
        "postgresql:// URL.",
    )(fn)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON, for scripts.")(fn)


def _filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--user", help="Only this initiator (proxy user, or 'anonymous')."),
        click.option("--provider", help="Only this provider type (anthropic, openai)."),
        click.option("--provider-name", help="Only this configured provider name."),
        click.option("--model", help="Only this requested model."),
        click.option("--client", help="Only this client (e.g. 'Claude Code')."),
        click.option("--session", help="Only this session id."),
        click.option("--repo", "repository", help="Only this repository (e.g. github.com/acme/app, or a name)."),
        click.option("--branch", help="Only this git branch."),
        click.option("--agent", help="Only this agent: 'main', or a sub-agent's name (e.g. Explore)."),
        click.option("--since", help="Started at or after (ISO 8601, UTC unless an offset is given)."),
        click.option("--until", help="Started before (ISO 8601)."),
    ]
    for option in reversed(options):
        fn = option(fn)

    @wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        names = (
            "user",
            "provider",
            "provider_name",
            "model",
            "client",
            "session",
            "repository",
            "branch",
            "agent",
            "since",
            "until",
        )
        values = {n: kwargs.pop(n, None) for n in names}
        kwargs["filters"] = {n: v for n, v in values.items() if v is not None}
        return fn(**kwargs)

    return wrapper


def _page_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--after", help="Continue after this cursor (printed at the end of a page).")(fn)
    return click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Rows per page.")(
        fn
    )


def _console() -> Console:
    """Rich output; piped, it is not cut to 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", 200)))


def _show(name: str, params: dict[str, Any], db: str, as_json: bool, draw: Callable[..., None]) -> None:
    result = open_source(db).run(name, params)
    console = _console()
    if as_json:
        render.as_json(console, result)
    else:
        draw(console, result)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="aibridge")
def cli() -> None:
    """Inspect the aibridge audit file: sessions, threads, actions, usage, spend and prompt-cache busts.

    While the proxy runs, answers come live through its query endpoint; otherwise from the file, read-only.
    `add-user` adds a user to the proxy's configuration.
    """


cli.add_command(add_user)


@cli.command()
@_filter_options
@_page_options
@_json_option
@_db_option
def sessions(filters: dict, after: str | None, limit: int, as_json: bool, db: str) -> None:
    """Sessions, most recently active first, with tokens, cost and the last prompt."""
    _show("sessions", {"filters": filters, "after": after, "limit": limit}, db, as_json, render.sessions)


@cli.command()
@click.argument("session_id")
@_json_option
@_db_option
def session(session_id: str, as_json: bool, db: str) -> None:
    """One session's threads in order: prompts, tool calls, thinking, tokens and cost per step."""
    _show("session", {"session_id": session_id}, db, as_json, render.session)


@cli.command()
@_filter_options
@_page_options
@_json_option
@_db_option
def interceptions(filters: dict, after: str | None, limit: int, as_json: bool, db: str) -> None:
    """Interceptions, newest first."""
    _show("interceptions", {"filters": filters, "after": after, "limit": limit}, db, as_json, render.interceptions)


@cli.command()
@_filter_options
@_json_option
@_db_option
def clients(filters: dict, as_json: bool, db: str) -> None:
    """The clients seen, with how often and when last."""
    _show("clients", {"filters": filters}, db, as_json, render.distinct)


@cli.command()
@_filter_options
@_json_option
@_db_option
def models(filters: dict, as_json: bool, db: str) -> None:
    """The models requested, with how often and when last."""
    _show("models", {"filters": filters}, db, as_json, render.distinct)


def _by_option(groups: tuple[str, ...], default: str, help: str) -> Callable[..., Any]:
    return click.option("--by", type=click.Choice(list(groups)), default=default, show_default=True, help=help)


@cli.command()
@_by_option(USAGE_GROUPS, "model", "What to group by (repo, branch and agent as the clients state them).")
@_filter_options
@_json_option
@_db_option
def usage(by: str, filters: dict, as_json: bool, db: str) -> None:
    """Tokens and cost grouped by user, model, client, provider, day, repository, branch or agent, with the cache
    hit ratio."""
    _show("usage", {"by": by, "filters": filters}, db, as_json, render.usage)


@cli.command()
@click.argument("session_id")
@_json_option
@_db_option
def actions(session_id: str, as_json: bool, db: str) -> None:
    """What the agent did in one session, in order: each tool call, its arguments and outcome (ok, error,
    answered, unanswered, blocked, not run, unpaired), the result's size and excerpt, and how long the agent took
    to answer it."""
    _show("actions", {"session_id": session_id}, db, as_json, render.actions)


@cli.command()
@_by_option(CACHE_GROUPS, "session", "What to group the busts by.")
@_filter_options
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Groups to show.")
@_json_option
@_db_option
def cache(by: str, filters: dict, limit: int, as_json: bool, db: str) -> None:
    """Prompt-cache busts: requests that wrote again (or sent uncached) a prefix the previous request of their
    conversation had cached, still alive. The tokens and dollars lost, grouped, with each group's cache hit ratio,
    and the costliest busts with where their prefix first changed (tools, system, messages[N])."""
    _show("cache", {"by": by, "filters": filters, "limit": limit}, db, as_json, render.cache)


@cli.command()
@click.option(
    "--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, help="Seconds between polls."
)
@click.option("--count", "max_count", type=click.IntRange(1), help="Stop after this many interceptions.")
@click.option("--timeout", type=click.FloatRange(0), help="Stop after this many seconds.")
@_json_option
@_db_option
def tail(interval: float, max_count: int | None, timeout: float | None, as_json: bool, db: str) -> None:
    """Interceptions as they end (starting with the last ten minutes), until interrupted."""
    source, console = open_source(db), _console()
    cursor, seen, started = None, 0, time.monotonic()
    try:
        while True:
            result = source.run("tail", {"after": cursor, "limit": 200})
            for row in result["interceptions"]:
                if as_json:
                    print(json.dumps(row), flush=True)
                else:
                    render.tail_line(console, row)
                seen += 1
                if max_count is not None and seen >= max_count:
                    return
            cursor = result["next"]
            if timeout is not None and time.monotonic() - started >= timeout:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option(
    "--parquet",
    "directory",
    required=True,
    type=click.Path(file_okay=False),
    help="Write Parquet files under this directory.",
)
@click.option("--instance", help="Name this proxy's files carry (default: host name and audit file name).")
@click.option("--until", help="Export UTC days before this date (default: before today).")
@_json_option
@_db_option
def export(directory: str, instance: str | None, until: str | None, as_json: bool, db: str) -> None:
    """Export closed UTC days to Parquet, DIR/<table>/date=YYYY-MM-DD/<instance>.parquet; already exported days
    are skipped, so it can run on a schedule and many proxies can share DIR."""
    params = {"directory": os.path.abspath(directory), "instance": instance, "until": until}
    result = open_source(db).run("export", {k: v for k, v in params.items() if v is not None})
    if as_json:
        render.as_json(Console(), result)
    else:
        click.echo(f"wrote {len(result['written'])} file(s), skipped {result['skipped']} already exported")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@_json_option
@_db_option
def snapshot(path: str, as_json: bool, db: str) -> None:
    """Write a consistent copy of the audit file that any DuckDB client can open, even while the proxy runs."""
    result = open_source(db).run("snapshot", {"path": os.path.abspath(path)})
    if as_json:
        render.as_json(Console(), result)
    else:
        click.echo(f"wrote {result['snapshot']} ({result['bytes']:,} bytes)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port to listen on.")
@click.option(
    "--token",
    envvar="AIBRIDGE_WEB_TOKEN",
    help="Access token every request must show ($AIBRIDGE_WEB_TOKEN): once as ?token=, which sets a cookie, or as "
    "Authorization: Bearer. Required on any address but the loopback.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="The proxy's TOML configuration, for the users' budget limits (without it, spend is shown without limits).",
)
@_db_option
def web(host: str, port: int, token: str | None, config_path: str | None, db: str) -> None:
    """Serve a read-only web view of the audit: sessions, a session's timeline, spend and budgets, live calls.

    Each page's URL holds its filters, and ?format=json or ?format=csv downloads what it shows. The pages read
    through the same queries as the other commands, live through the proxy while it runs."""
    from addon.web import app as web_app  # starlette, jinja2 and uvicorn load for this command only
    from addon.web.guard import needs_token

    if why := needs_token(host, token):
        raise click.UsageError(why)
    try:
        config = load_config(config_path) if config_path else None
    except ValueError as e:
        raise click.ClickException(f"--config: {e}") from None
    source = open_source(db)  # a wrong --db is said now, not on the first page
    where = source.description
    source.close()
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"aibridge web: the audit {where}, on http://{shown}:{port}/", err=True)
    if token:
        click.echo("  every request needs the access token: open the page once with ?token=<token>", err=True)
    if config is None:
        click.echo("  no --config: spend is shown without budget limits", err=True)
    web_app.serve(web_app.create_app(db, token=token, config=config), host, port)


def main() -> None:
    cli()
