"""For the benchmark's `--audit-cost` scenario: the bridge with its recording switched off.

    mitmdump -s addon/aibridge.py -s scripts/bench/null_audit_addon.py ...

Once the bridge is running, its engine's recorder is swapped for one that drops every event, so comparing this
scenario with the plain bridge in one run shows what recording costs the request path (the events, the
writer thread's GIL time, DuckDB's appends).
"""

from uuid import UUID

from mitmproxy import ctx


class _Dropped:
    def emit(self, event: object) -> None:
        pass

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        return None


class NullAudit:
    def running(self) -> None:
        bridge = ctx.master.addons.get("bridge")
        bridge.gateway.engine.recorder = _Dropped()


addons = [NullAudit()]
