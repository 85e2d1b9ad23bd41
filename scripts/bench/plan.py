"""What a benchmark run measures: where it runs from, the wire formats and scenarios, and the sizes of its phases
(`FULL`, and `QUICK` for `--quick`).

The bench's modules are run as files, not installed: importing this one puts the repository root on `sys.path`,
so `addon` imports from the working tree.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from addon.providers import FAMILIES  # noqa: E402

FORMATS: tuple[str, ...] = ("anthropic", "openai", "gemini")
"""The wire formats with figures of their own (sequential phases, one format at a time)."""
MIXED: tuple[str, ...] = ("anthropic", "openai")
"""The formats the mixed phases take in turn (paced, dense, throughput, per-event cost, the fast marginal's long
streams) and the per-request CPU figures average over: Anthropic and OpenAI, as before Gemini came, so those
figures keep their meaning."""
NAMES = {"anthropic": "Anthropic", "openai": "OpenAI", "gemini": "Gemini"}
MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4.1", "gemini": "gemini-2.5-pro"}
PATHS: dict[tuple[str, bool], str] = {
    ("anthropic", True): "/v1/messages",
    ("anthropic", False): "/v1/messages",
    ("openai", True): "/v1/chat/completions",
    ("openai", False): "/v1/chat/completions",
    ("gemini", True): f"/v1beta/models/{MODELS['gemini']}:streamGenerateContent?alt=sse",
    ("gemini", False): f"/v1beta/models/{MODELS['gemini']}:generateContent",
}
"""Each (format, stream)'s bridged API path, as the clients call it (Gemini's path says the model and whether it
streams; the others' bodies do)."""
HOSTS = {name: FAMILIES[name].host for name in FORMATS}
"""The hosts clients call: proxied requests go there, and each proxy sends them to the mock."""
AUDIT_OFF = "bridge, audit off"
WORKER = "bridge, worker"
FLOOR_GC = "floor, bridge's GC"
FLOORS = ("floor", FLOOR_GC)
"""The scenarios that run `floor_addon.py` (not bridged: no interception header)."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    seq: int
    """Sequential requests per warm phase (per format)."""
    seq_new: int
    seq_long: int
    tput_seconds: float
    tput_max: int
    paced: tuple[int, ...]
    paced_events: int
    pace_ms: int
    audit_rows: int
    cost_streams: int
    """Streams per size in the paced per-event cost phase."""
    short_events: int = 20
    long_events: int = 200
    event_bytes: int = 200
    warmup: int = 5
    cost_concurrency: int = 4
    cost_pace_ms: int = 5
    cost_events: tuple[int, int] = (10, 110)
    concurrencies: tuple[int, ...] = (1, 16, 64)
    dense: tuple[int, ...] = (100, 150)
    """Stream counts for the issue's dense pattern (`dense_events` events `dense_pace_ms` apart): near one core."""
    dense_events: int = 50
    dense_pace_ms: int = 20
    paced_repeats: int = 3
    dense_repeats: int = 5
    """Batches of streams back to back per paced phase, their gaps pooled: a window of several seconds, so that
    pauses a process takes every few seconds (a full garbage collection) land in it as often as they do in
    steady use, not by the luck of one short batch."""


FULL = Plan(
    rounds=3,
    seq=120,
    seq_new=100,
    seq_long=50,
    tput_seconds=1.5,
    tput_max=5000,
    paced=(100, 300),
    paced_events=30,
    pace_ms=100,
    audit_rows=200_000,
    cost_streams=24,
)
QUICK = Plan(
    rounds=1,
    seq=20,
    seq_new=10,
    seq_long=10,
    tput_seconds=0.5,
    tput_max=500,
    paced=(20, 60),
    paced_events=10,
    pace_ms=50,
    audit_rows=20_000,
    cost_streams=8,
    warmup=3,
    dense=(40,),
    dense_events=20,
    paced_repeats=1,
    dense_repeats=1,
)
