"""The Operations addon's options: validated in configure() with clear errors, and wired into the engine."""

import socket
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addon.config import CircuitBreakerConfig, Config
from addon.gateway import Gateway
from addon.mitm.operations import Operations, route_label
from addon.observe import NO_OBSERVER, ObservedRecorder, Observers
from tests.support.fakes import FakeUpstream


def fake_bridge(**config: object) -> SimpleNamespace:
    """What Operations reads of the Bridge: its gateway (real, over a stand-in audit writer) and tools."""
    writer = SimpleNamespace(
        path="audit.duckdb", retention=None, dropped=0, write_errors=0, rows_written=0, purged=0, queue_depth=lambda: 0
    )
    writer.set_retention = lambda days: setattr(writer, "retention", days)
    writer.find_tool_call = lambda tool_call_id: None
    gateway = Gateway(writer, FakeUpstream())  # type: ignore[arg-type]
    gateway.apply(Config(**config))  # type: ignore[arg-type]
    return SimpleNamespace(gateway=gateway, engine=gateway.engine, writer=writer, tools=None)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("aibridge_metrics", "not-a-port", "aibridge_metrics: 'not-a-port': expected PORT or HOST:PORT"),
        ("aibridge_metrics", "127.0.0.1:70000", "aibridge_metrics: '127.0.0.1:70000': port must be 0-65535"),
        ("aibridge_dump_dir", "/proc/no/such/dir", "aibridge_dump_dir: cannot create /proc/no/such/dir"),
    ],
)
def test_bad_options_are_refused(option: str, value: str, message: str) -> None:
    ops = Operations(fake_bridge())  # type: ignore[arg-type]
    with taddons.context(ops) as tctx, pytest.raises(exceptions.OptionsError) as e:
        tctx.configure(ops, **{option: value})
    assert message in str(e.value)


async def test_observers_are_wired_and_unwired(tmp_path: Path) -> None:
    bridge = fake_bridge(circuit_breaker=CircuitBreakerConfig(), retention_days=40)
    ops = Operations(bridge)  # type: ignore[arg-type]
    with taddons.context(ops) as tctx:
        tctx.configure(ops, aibridge_metrics="127.0.0.1:0", aibridge_json_logs=True, aibridge_dump_dir=str(tmp_path))
        assert ops.metrics is not None and ops.metrics.address is not None
        assert isinstance(bridge.engine.observer, Observers)
        assert {type(o).__name__ for o in bridge.engine.observer.observers} == {
            "Breakers",
            "Metrics",
            "Dumps",
            "JsonLog",
        }
        assert isinstance(bridge.engine.recorder, ObservedRecorder) and bridge.engine.recorder.inner is bridge.writer
        assert bridge.engine.recorder.scrub is bridge.gateway.scrubber  # the JSON log sees what the audit keeps
        assert bridge.writer.retention == 40
        tctx.configure(ops, aibridge_metrics="", aibridge_json_logs=False, aibridge_dump_dir=None)
        assert ops.metrics is None and ops.dumps is None
        assert [type(o).__name__ for o in bridge.engine.observer.observers] == ["Breakers"]
        bridge.gateway.apply(Config())  # the breaker removed from the configuration (the Bridge's configure)
        ops.configure({"aibridge_config"})  # and then the Operations'
        assert bridge.engine.observer is NO_OBSERVER and bridge.engine.recorder is bridge.writer
        await ops.done()


def test_passthrough_route_labels_fold_ids() -> None:
    assert route_label("/v1/models?limit=5") == "/v1/models"
    assert route_label("/v1/models/claude-sonnet-4-5-20250929") == "/v1/models/{id}"
    assert route_label("/v1/responses/resp_0123456789abcdef0123") == "/v1/responses/{id}"
    assert route_label("/api/event_logging/batch") == "/api/event_logging/batch"
    assert route_label("/a/b/c/d/e/f") == "/a/b/c/d/..."


async def test_moving_metrics_to_a_taken_port_keeps_the_old_endpoint_and_counts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ops = Operations(fake_bridge())  # type: ignore[arg-type]
        with taddons.context(ops) as tctx:
            tctx.configure(ops, aibridge_metrics="127.0.0.1:0")
            assert ops.metrics is not None
            ops.metrics.passed_through("anthropic", "/v1/models", "GET", "200")
            with pytest.raises(exceptions.OptionsError, match=f"cannot listen on 127.0.0.1:{port}"):
                tctx.configure(ops, aibridge_metrics=f"127.0.0.1:{port}")
            assert tctx.options.aibridge_metrics == "127.0.0.1:0"  # rolled back, and served again
            assert ops.metrics.address is not None
            host, served = ops.metrics.address
            async with httpx.AsyncClient(trust_env=False) as http:
                text = (await http.get(f"http://{host}:{served}/metrics")).text
            assert 'aibridge_passthrough_total{method="GET",provider="anthropic"' in text
            await ops.done()
