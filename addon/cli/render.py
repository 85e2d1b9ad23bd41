"""How the CLI shows query results with rich. No queries here: `audit.queries` answers, this module draws."""

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

JSON = dict[str, Any]


def money(micros: int | None, unpriced_rows: int = 0) -> str:
    """A cost, saying how many token usages it leaves out because the price book could not price them."""
    if micros is None:
        return "unpriced"
    return f"${micros / 1_000_000:,.4f}" + (f" (+{unpriced_rows} unpriced)" if unpriced_rows else "")


def count(n: int | None) -> str:
    return f"{n or 0:,}"


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def millis(value: int | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value} ms"


def when(stamp: str | None) -> str:
    return (stamp or "").replace("T", " ").removesuffix("Z")[:19]


def _next(console: Console, cursor: str | None) -> None:
    if cursor:
        console.print(Text(f"more: --after {cursor}", style="dim"), soft_wrap=True)


def sessions(console: Console, result: JSON) -> None:
    table = Table(title="Sessions", title_justify="left", header_style="bold")
    for column in (
        "session",
        "user",
        "client",
        "models",
        "threads",
        "input",
        "output",
        "cache read",
        "cache write",
        "cost",
        "last prompt",
        "started",
        "last active",
    ):
        table.add_column(
            column,
            justify="right"
            if column in {"threads", "input", "output", "cache read", "cache write", "cost"}
            else "left",
        )
    for s in result["sessions"]:
        table.add_row(
            s["session_id"],
            s["user"],
            s["client"],
            ", ".join(s["models"]),
            count(s["threads"]),
            count(s["input_tokens"]),
            count(s["output_tokens"]),
            count(s["cache_read_tokens"]),
            count(s["cache_write_tokens"]),
            money(s["cost_micros"], s["unpriced_rows"]),
            short(s["last_prompt"], 40),
            when(s["started_at"]),
            when(s["last_active"]),
        )
    console.print(table)
    _next(console, result["next"])


def interceptions(console: Console, result: JSON) -> None:
    table = Table(title="Interceptions", title_justify="left", header_style="bold")
    for column in (
        "id",
        "started",
        "user",
        "client",
        "provider",
        "model",
        "repo",
        "agent",
        "stream",
        "status",
        "input",
        "output",
        "cache hit",
        "cost",
    ):
        table.add_column(column, justify="right" if column in {"input", "output", "cache hit", "cost"} else "left")
    for i in result["interceptions"]:
        status = i["status"] or "in progress"
        style = {"completed": "green", "failed": "red", "cancelled": "yellow", "refused": "magenta"}.get(status, "")
        table.add_row(
            i["id"],
            when(i["started_at"]),
            i["user"],
            i["client"],
            i["provider_name"],
            i["model"],
            i["repository"] or "",
            i["agent"] or "",
            "yes" if i["streaming"] else "no",
            Text(status, style=style),
            count(i["input_tokens"]),
            count(i["output_tokens"]),
            ratio(i["cache_hit_ratio"]),
            money(i["cost_micros"], i["unpriced_rows"]),
        )
    console.print(table)
    _next(console, result["next"])


def distinct(console: Console, result: JSON) -> None:
    ((kind, rows),) = result.items()
    table = Table(title=kind.capitalize(), title_justify="left", header_style="bold")
    table.add_column(kind[:-1])
    table.add_column("interceptions", justify="right")
    table.add_column("last seen")
    for row in rows:
        table.add_row(row["name"], count(row["interceptions"]), when(row["last_seen"]))
    console.print(table)


def usage(console: Console, result: JSON) -> None:
    table = Table(title=f"Usage by {result['by']}", title_justify="left", header_style="bold")
    table.add_column(result["by"])
    for column in ("interceptions", "input", "output", "cache read", "cache write", "cache hit", "cost"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(
            "(none)" if row["key"] is None else str(row["key"]),
            count(row["interceptions"]),
            count(row["input_tokens"]),
            count(row["output_tokens"]),
            count(row["cache_read_tokens"]),
            count(row["cache_write_tokens"]),
            ratio(row["cache_hit_ratio"]),
            money(row["cost_micros"], row["unpriced_rows"]),
        )
    console.print(table)


def session(console: Console, result: JSON) -> None:
    totals = result["totals"]
    tree = Tree(
        Text.assemble(
            ("Session ", "bold"),
            result["session_id"],
            f"  {result['user']} · {result['client']} · "
            f"{when(result['started_at'])} → {when(result['ended_at'])} · "
            f"in {count(totals['input_tokens'])} out {count(totals['output_tokens'])} "
            f"cache {count(totals['cache_read_tokens'])}/{count(totals['cache_write_tokens'])} · "
            f"{money(totals['cost_micros'], totals['unpriced_rows'])}",
        )
    )
    for n, thread in enumerate(result["threads"], 1):
        branch = tree.add(
            Text.assemble(
                (f"Thread {n}", "bold cyan"),
                f"  {when(thread['started_at'])}  ",
                (short(thread["prompt"], 100) or "(no prompt)", "italic"),
            )
        )
        for step in thread["interceptions"]:
            status = step["status"] or "in progress"
            agent = f" [{step['agent']}]" if step.get("agent") and step["agent"] != "main" else ""
            hit = f" · cache hit {ratio(step['cache_hit_ratio'])}" if step.get("cache_hit_ratio") is not None else ""
            node = branch.add(
                f"{when(step['started_at'])} {step['provider_name']} {step['model']}{agent} — {status}"
                + (f" ({short(step['error'], 80)})" if step["error"] else "")
                + hit
            )
            for thought in step["thoughts"]:
                node.add(Text(f"thinking: {short(thought['content'], 100)}", style="dim"))
            for tool in step["tools"]:
                kind = "injected" if tool["injected"] else "client"
                label = f"{kind} tool {tool['tool']}({short(tool['input'], 80)})"
                if tool["error"]:
                    label += f" → error: {short(tool['error'], 60)}"
                node.add(Text(label, style="yellow" if tool["injected"] else ""))
            for u in step["usage"]:
                node.add(
                    Text(
                        f"tokens in {count(u['input_tokens'])} out {count(u['output_tokens'])} cache "
                        f"{count(u['cache_read_tokens'])}/{count(u['cache_write_tokens'])} · "
                        f"{money(u['cost_micros'])}",
                        style="dim",
                    )
                )
    console.print(tree)


_OUTCOME_STYLES = {
    "ok": "green",
    "error": "red",
    "unanswered": "yellow",
    "blocked": "magenta",
    "not run": "dim",
    "unpaired": "dim",
}


def actions(console: Console, result: JSON) -> None:
    table = Table(title=f"Actions of session {result['session_id']}", title_justify="left", header_style="bold")
    for column in ("at", "agent", "tool", "arguments", "outcome", "result", "took", "excerpt"):
        table.add_column(column, justify="right" if column in {"result", "took"} else "left")
    for a in result["actions"]:
        tool = a["tool"] + (" (bridge)" if a["injected"] else "")
        size = "" if a["result_bytes"] is None else f"{a['result_bytes']:,} B"
        outcome = a["outcome"] + (f" ({a['gate']})" if a.get("gate") else "")
        table.add_row(
            when(a["at"]),
            a["agent"] or "",
            tool,
            short(a["arguments"], 50),
            Text(outcome, style=_OUTCOME_STYLES.get(a["outcome"], "")),
            size,
            millis(a["duration_ms"]),
            short(a["result_excerpt"], 40),
        )
    console.print(table)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in result["outcomes"].items() if n)
    console.print(Text(f"{len(result['actions'])} calls" + (f": {counts}" if counts else ""), style="dim"))
    if result.get("truncated"):
        console.print(Text("only the first 10,000 calls are shown", style="yellow"))


def cache(console: Console, result: JSON) -> None:
    totals = result["totals"]
    console.print(
        Text.assemble(
            ("Prompt-cache busts ", "bold"),
            f"{count(totals['busts'])} · {count(totals['lost_tokens'])} tokens not read from the cache · "
            f"lost {money(totals['lost_micros'], totals.get('unpriced_busts', 0))}",
        )
    )
    table = Table(title=f"By {result['by']}", title_justify="left", header_style="bold")
    table.add_column(result["by"])
    for column in ("busts", "lost tokens", "rewritten", "lost", "interceptions", "cache hit"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(
            "(none)" if row["key"] is None else str(row["key"]),
            count(row["busts"]),
            count(row["lost_tokens"]),
            count(row["rewritten_tokens"]),
            money(row["lost_micros"], row["unpriced_busts"]),
            count(row["interceptions"]),
            ratio(row["cache_hit_ratio"]),
        )
    console.print(table)
    if not result["busts"]:
        return
    worst = Table(title="Costliest busts", title_justify="left", header_style="bold")
    for column in ("at", "session", "model", "agent", "changed", "expected", "read", "lost", "after"):
        worst.add_column(column, justify="right" if column in {"expected", "read", "lost", "after"} else "left")
    for b in result["busts"]:
        worst.add_row(
            when(b["created_at"]),
            b["session_id"],
            b["model"],
            b["agent"] or "",
            b["location"] or "?",
            count(b["expected_tokens"]),
            count(b["read_tokens"]),
            money(b["cost_micros"]),
            millis(b["gap_ms"]),
        )
    console.print(worst)


def tail_line(console: Console, i: JSON) -> None:
    status = i["status"] or "in progress"
    console.print(
        f"{when(i['ended_at'])}  {i['user']:<12} {i['client']:<14} {i['provider_name']}/{i['model']}  "
        f"{status} {i['http_status'] or ''}  in {count(i['input_tokens'])} out {count(i['output_tokens'])}"
        f"  {money(i['cost_micros'], i['unpriced_rows'])}" + (f"  {short(i['error'], 60)}" if i["error"] else ""),
        highlight=False,
    )


def as_json(console: Console, result: JSON) -> None:
    console.print_json(json.dumps(result)) if console.is_terminal else print(json.dumps(result, indent=2))
