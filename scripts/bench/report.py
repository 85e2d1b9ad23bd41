"""The markdown report: the table of figures (medians over rounds, "added" ones against direct, ratios against the
floor), the notes and checks around it, and what machine and versions it ran on."""

import contextlib
import math
import os
import platform
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from load import BODY_KB
from phases import Bench
from plan import FLOOR_GC, FORMATS, NAMES, Plan


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    kind: str
    """added: proxies show the excess over direct (direct shows its own value in parentheses);
    abs: every column its own value; proxy: proxies only; bridge: one figure, in the bridge column."""
    digits: int = 2


def per_format(label: str, key: str, kind: str, digits: int = 2) -> list[Row]:
    """One row per format: `{name}` in the label is its name, `{fmt}` in the key its id."""
    return [Row(label.replace("{name}", NAMES[f]), key.replace("{fmt}", f), kind, digits) for f in FORMATS]


def rows(plan: Plan) -> list[Row]:
    ttfe = [
        Row(f"TTFE {q}, warm, {NAMES[f]} stream (ms, added)", f"ttfe_warm_{f}_{q}", "added")
        for f in FORMATS
        for q in ("p50", "p99")
    ]
    json_rows = [
        Row(f"JSON response {q}, {NAMES[f]} (ms, added)", f"json_{f}_{q}", "added")
        for f in FORMATS
        for q in ("p50", "p99")
    ]
    out = [
        *ttfe,
        Row("TTFE p50, new connection per request (ms, added)", "ttfe_new_p50", "added"),
        Row("TTFE p99, new connection per request (ms, added)", "ttfe_new_p99", "added"),
        *json_rows,
        *per_format(
            f"total stream time p50, {plan.short_events} events, {{name}} (ms)", "total_short_{fmt}_p50", "abs"
        ),
        Row(f"total stream time p50, {plan.long_events} events (ms)", "total_long_p50", "abs"),
        Row(f"total stream time p99, {plan.long_events} events (ms)", "total_long_p99", "abs"),
        Row("proxy CPU per JSON request, warm (ms)", "cpu_json_ms", "proxy"),
        Row(f"proxy CPU per {plan.short_events}-event stream, warm (ms)", "cpu_short_ms", "proxy"),
        Row(f"proxy CPU per {plan.short_events}-event stream, new connection (ms)", "cpu_new_ms", "proxy"),
        Row("proxy CPU per relayed event, fast stream, marginal (µs)", "cpu_event_us", "proxy", 0),
        *per_format(
            "proxy CPU per relayed event, fast stream, marginal, {name} (µs)", "cpu_event_{fmt}_us", "proxy", 0
        ),
        Row(
            f"proxy CPU per relayed event, {plan.cost_pace_ms} ms apart, marginal (µs)",
            "cpu_paced_event_us",
            "proxy",
            0,
        ),
    ]
    for c in plan.concurrencies:
        out.append(Row(f"req/s, {plan.short_events}-event streams, c={c}", f"rps_c{c}", "abs", 0))
    out.append(Row(f"proxy CPU at c={max(plan.concurrencies)} (cores)", f"cores_c{max(plan.concurrencies)}", "proxy"))
    for n in plan.paced:
        out += [
            Row(f"inter-event delay p50, {n} paced streams (ms, added)", f"gap_{n}_p50", "added"),
            Row(f"inter-event delay p99, {n} paced streams (ms, added)", f"gap_{n}_p99", "added"),
            Row(f"RSS per stream, {n} paced streams (MB)", f"rss_{n}_mb", "proxy", 3),
            Row(f"proxy CPU, {n} paced streams (cores)", f"cores_paced_{n}", "proxy"),
        ]
    for n in plan.dense:
        pattern = f"{n} streams × {plan.dense_events} events {plan.dense_pace_ms} ms apart"
        out += [
            Row(f"inter-event delay p50, {pattern} (ms, added)", f"gap_dense_{n}_p50", "added"),
            Row(f"inter-event delay p99, {pattern} (ms, added)", f"gap_dense_{n}_p99", "added"),
            Row(f"proxy CPU per relayed event, {pattern} (µs)", f"cpu_per_event_dense_{n}_us", "proxy", 0),
            Row(f"proxy CPU, {pattern} (cores)", f"cores_paced_dense_{n}", "proxy"),
        ]
    out.append(Row("audit writer, sustained committed rows/s", "audit_rows_s", "bridge", 0))
    return out


def fmt_number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:,.{digits}f}"


def table(bench: Bench, names: list[str], plan: Plan) -> list[str]:
    median = statistics.median
    bases = ["floor"] + ([FLOOR_GC] if FLOOR_GC in names else [])
    lines = [
        "| figure | " + " | ".join(names) + " | " + " | ".join(f"bridge/{b}" for b in bases) + " |",
        "|---|" + "---:|" * (len(names) + len(bases)),
    ]
    for row in rows(plan):
        cells: dict[str, float | None] = {}
        shown: dict[str, str] = {}
        for name in names:
            values = bench.metrics[name].get(row.key, [])
            if row.kind == "bridge" and name != "bridge":
                values = []
            if row.kind == "proxy" and name == "direct":
                values = []
            if row.kind == "added" and name != "direct":
                base = bench.metrics["direct"].get(row.key, [])
                values = [v - b for v, b in zip(values, base, strict=False)]
            cells[name] = median(values) if values else None
            text = fmt_number(cells[name], row.digits)
            shown[name] = f"({text})" if row.kind == "added" and name == "direct" and values else text
        ratios = [_ratio(cells.get("bridge"), cells.get(base)) for base in bases]
        lines.append(f"| {row.label} | " + " | ".join(shown[n] for n in names) + " | " + " | ".join(ratios) + " |")
    errors = " | ".join(str(bench.errors.get(n, 0)) + f" of {bench.sent.get(n, 0)}" for n in names)
    lines.append(f"| failed requests (all phases, all rounds) | {errors} |" + " |" * len(bases))
    return lines


def _ratio(bridge: float | None, base: float | None) -> str:
    if bridge is None or base is None or bridge <= 0 or base < 0.05:
        return "–"
    return f"{bridge / base:.2f}"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc {os.cpu_count()}, {model}, Linux {platform.release()}"


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def versions() -> str:
    import importlib.metadata as md

    found = []
    for package in ("mitmproxy", "aiohttp", "httpx", "httptools", "duckdb"):
        with contextlib.suppress(md.PackageNotFoundError):
            found.append(f"{package} {md.version(package)}")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def render(
    bench: Bench,
    names: list[str],
    quick: bool,
    started: datetime,
    load_before: str,
    injected: Counter[str],
    upstream_requests: Counter[str],
    notes: list[str],
    profile_lines: list[str],
) -> str:
    """The report of a run begun at `started` (now is its end): header, table, how to read it, and checks."""
    plan = bench.plan
    elapsed = (datetime.now(UTC) - started).total_seconds()
    lines = [
        f"# aibridge proxy benchmark ({'quick' if quick else 'full'})",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s; load average before: {load_before}, "
        f"after: {load_average()}",
        f"- machine: {machine()}; {versions()}",
        f"- {plan.rounds} interleaved round(s), medians over rounds; request bodies ~{BODY_KB} KB; text events "
        f"{plan.event_bytes} B; sequential phases {plan.seq} requests per format ({plan.seq_long} long, formats "
        f"alternating and again per format; {plan.seq_new} new-connection); throughput {plan.tput_seconds:g} s "
        "per level; paced streams "
        f"{plan.paced_events} text events {plan.pace_ms} ms apart, {plan.paced_repeats} batches back to back "
        f"({plan.dense_repeats} of the dense pattern)",
        "",
        *table(bench, names, plan),
        "",
        "Figures marked *added* are the per-round difference from direct (direct's own value in parentheses): "
        "TTFE is the time from sending to the first complete SSE event; inter-event delay is the client-side gap "
        "between events minus the mock's pacing. Proxy CPU is the proxy process's utime+stime (all threads: the "
        "bridge's audit writer and local server included) over the phase. CPU per relayed event is a marginal cost: "
        f"fast: (CPU per {plan.long_events}-event stream − per {plan.short_events}-event stream) / "
        f"{plan.long_events - plan.short_events}, events written back to back (so read and written in batches), "
        "over Anthropic and OpenAI streams alternating, and per format (a format's long streams against its "
        "short ones); "
        f"paced: streams of {plan.cost_events[0]} and {plan.cost_events[1]} events {plan.cost_pace_ms} ms apart, "
        f"{plan.cost_concurrency} at a time, per extra event: one read and one write per event, as LLM tokens "
        "arrive. RSS per stream: peak VmRSS with all streams open minus VmRSS of the fresh process before its "
        "first paced phase (connections included), per stream. Audit rows/s: one writer thread, in-process, a mix "
        "of start/prompt/tokens/end rows. Figures that mix formats (per-request CPU, the alternating long streams, "
        f"paced, dense, {plan.cost_pace_ms} ms apart, throughput) take Anthropic and OpenAI in turn; Gemini has its "
        "per-format rows. Anthropic's and OpenAI's streams have 5 and 4 frame events besides their text deltas; "
        "Gemini's is text chunks only (`data: {...}` ended by CRLF CRLF, the last with the finish reason and final "
        "usage), each carrying usage, model version and response id, so its smallest text event is about 215 B "
        f"(what it sends when {plan.event_bytes} B is asked for).",
        "",
        "Checks:",
    ]
    for name in names:
        c = bench.checks.get(name, {})
        sent = bench.sent.get(name, 0)
        lines.append(
            f"- {name}: {sent} measured requests; the mock saw {upstream_requests.get(name, 0)} requests from it "
            f"(warm-ups included), {injected.get(name, 0)} with injected MCP tools; paced phases opened "
            f"{int(c.get('paced_new_connections', 0))} connections beyond the "
            f"{int(c.get('paced_pooled_connections', 0))} pooled beforehand; harness (client + mock) CPU at "
            f"c={max(plan.concurrencies)}: {c.get('harness_cores_cmax', math.nan):.2f} cores"
        )
        for sample in bench.error_samples.get(name, [])[:3]:
            lines.append(f"  - error: {sample}")
    if injected.get("bridge+MCP", 0) == 0:
        lines.append("- WARNING: no request of bridge+MCP carried injected tools: the MCP figures are not meaningful")
    lines += [f"- {note}" for note in notes]
    if profile_lines:
        lines += ["", *profile_lines]
    return "\n".join(lines) + "\n"
