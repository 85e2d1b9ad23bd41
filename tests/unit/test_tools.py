"""MCP tools: naming, result conversion, and `ToolManager` against real servers.

The servers are real processes: the in-repo test server (tests/support/mcp_server.py) over stdio and over
streamable HTTP on 127.0.0.1, and `mcp-server-time` from PyPI over stdio. Nothing of MCP is mocked. Backoff is
shortened so reconnection tests take a fraction of a second.
"""

import asyncio
import base64
import logging
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mcp.client.stdio
import mcp_types
import pytest

from addon.config import McpServer
from addon.tools import (
    MAX_NAME_LENGTH,
    ImagePart,
    TextPart,
    ToolManager,
    ToolResult,
    assign_names,
    convert_result,
    tool_name,
)
from tests.support.mcp_server import CODER_TOOLS, TINY_PNG, HttpServerProcess

ROOT = Path(__file__).resolve().parents[2]
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
TEST_TOOLS = {
    *CODER_TOOLS,
    *("echo", "add", "fail", "raise_error", "hang", "slow", "crash", "image", "resource", "header", "add_tool"),
}

pytestmark = pytest.mark.timeout(60)


def stdio_server(
    name: str = "test", *, args: Sequence[str] = ("-m", "tests.support.mcp_server"), **kw: Any
) -> McpServer:
    return McpServer(name=name, command=sys.executable, args=tuple(args), env=(("PYTHONPATH", str(ROOT)),), **kw)


def time_server(**kw: Any) -> McpServer:
    return McpServer(name="time", command=TIME_SERVER, args=("--local-timezone", "UTC"), **kw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll: the manager changes state in its own tasks, with no event a test could wait on."""
    for _ in range(int(within / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within} s")


def bare_names(manager: ToolManager, server: str) -> set[str]:
    return {t.tool for t in manager.tools() if t.server.name == server}


def text(result: ToolResult) -> str:
    return "".join(p.text for p in result.parts if isinstance(p, TextPart))


def children(pattern: str) -> set[int]:
    """PIDs of this process's children whose command line matches `pattern`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and re.search(pattern, cmdline):
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ToolManager, "backoff_base", 0.05)
    monkeypatch.setattr(ToolManager, "backoff_cap", 0.4)
    monkeypatch.setattr(ToolManager, "connect_timeout", 15.0)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[ToolManager]]]:
    """Start a manager and wait until its servers settled; every manager is stopped after the test."""
    managers: list[ToolManager] = []

    async def start(servers: Sequence[McpServer]) -> ToolManager:
        manager = ToolManager(servers)
        managers.append(manager)
        await manager.start()
        await manager.wait_until_settled(15)
        return manager

    yield start
    for manager in managers:
        await manager.stop()


class HttpServer:
    """The in-repo server over streamable HTTP; started and killed off the event loop."""

    def __init__(self) -> None:
        self.process = HttpServerProcess(free_port())  # fixed, so a manager can be pointed at it before it runs
        self.url = self.process.url

    async def start(self) -> None:
        await asyncio.to_thread(self.process.start)

    async def kill(self) -> None:
        await asyncio.to_thread(self.process.stop)


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    """Not started: call `await http_server.start()`; killed after the test."""
    server = HttpServer()
    yield server
    await server.kill()


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing may log at ERROR or above: mitmdump exits on an error logged during start-up."""
    caplog.set_level(logging.DEBUG)
    yield
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors


# --- names (pure) ---------------------------------------------------------------------------------------------


def test_plain_name() -> None:
    assert tool_name("coder", "coder_list_workspaces") == "bmcp_coder_coder_list_workspaces"


def test_name_sanitised() -> None:
    assert tool_name("my-server", "files.read v2/ü") == "bmcp_my-server_files_read_v2__"


def test_long_name_is_cut_with_a_stable_hash() -> None:
    long_tool = "x" * 100
    name = tool_name("srv", long_tool)
    assert len(name) == MAX_NAME_LENGTH
    assert re.fullmatch(r"bmcp_srv_x+_[0-9a-f]{8}", name)
    assert name == tool_name("srv", long_tool)
    assert name != tool_name("srv", "x" * 99 + "y")  # same cut prefix, different hash


def test_name_at_the_limit_is_kept() -> None:
    tool = "t" * (MAX_NAME_LENGTH - len("bmcp_s_"))
    assert tool_name("s", tool) == f"bmcp_s_{tool}"


def test_sanitising_collisions_resolved_deterministically() -> None:
    pairs = [("a", "b.c"), ("a", "b_c"), ("a_b", "c"), ("a", "b_c")]
    names = assign_names(pairs)
    assert len(names) == 3
    assert len(set(names.values())) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names.values())
    assert names["a", "b.c"] == "bmcp_a_b_c"  # sorts first, keeps the plain name
    assert names == assign_names(reversed(pairs))


def test_long_colliding_names_stay_unique() -> None:
    pairs = [("s", "y" * 80 + c) for c in ".,;:"]  # all sanitise to the same long name
    names = assign_names(pairs)
    assert len(set(names.values())) == 4
    assert all(len(n) <= MAX_NAME_LENGTH for n in names.values())


# --- result conversion (pure; the result objects are real SDK types) ----------------------------------------------


def test_convert_text_image_and_sizes() -> None:
    data = mcp_types.ImageContent(type="image", data=base64.b64encode(TINY_PNG).decode(), mime_type="image/png")
    result = convert_result(
        mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text="héllo"), data]), 12.5
    )
    assert result.parts == (TextPart("héllo"), ImagePart("image/png", data.data))
    assert result.size == len("héllo".encode()) + len(TINY_PNG)
    assert (result.is_error, result.error, result.duration_ms) == (False, None, 12.5)


def test_convert_other_content_kinds() -> None:
    blob = mcp_types.BlobResourceContents(uri="file:///a.bin", mime_type="application/octet-stream", blob="AAE=")
    content: list[mcp_types.ContentBlock] = [
        mcp_types.AudioContent(type="audio", data="AAAA", mime_type="audio/wav"),
        mcp_types.EmbeddedResource(type="resource", resource=blob),
        mcp_types.ResourceLink(type="resource_link", name="readme", uri="file:///README.md", mime_type="text/markdown"),
    ]
    parts = convert_result(mcp_types.CallToolResult(content=content)).parts
    assert parts == (
        TextPart("(audio content omitted, MIME: audio/wav)"),
        TextPart("Binary resource (MIME: application/octet-stream, URI: file:///a.bin): AAE="),
        TextPart("Resource link: readme (URI: file:///README.md, MIME: text/markdown)"),
    )


def test_convert_structured_only_empty_and_is_error() -> None:
    structured = convert_result(mcp_types.CallToolResult(content=[], structured_content={"n": 1}))
    assert structured.parts == (TextPart('{"n": 1}'),)
    assert convert_result(mcp_types.CallToolResult(content=[])).parts == (TextPart("(no output)"),)
    failed = convert_result(mcp_types.CallToolResult(content=[], is_error=True))
    assert (failed.is_error, failed.error) == (True, None)


# --- listing ------------------------------------------------------------------------------------------------


async def test_stdio_server_listed_sorted_and_named(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server()])
    tools = manager.tools()
    assert [t.name for t in tools] == sorted(f"bmcp_test_{name}" for name in TEST_TOOLS)
    add = manager.get("bmcp_test_add")
    assert add is not None
    assert (add.tool, add.server.name, add.description) == ("add", "test", "Add two integers.")
    assert add.input_schema["type"] == "object"
    assert add.input_schema["required"] == ["a", "b"]
    assert manager.get("add") is None
    assert manager.tools() is manager.tools()  # a snapshot, not rebuilt per request


async def test_time_server_listed_and_called(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([time_server()])
    assert [t.name for t in manager.tools()] == ["bmcp_time_convert_time", "bmcp_time_get_current_time"]
    result = await manager.call("bmcp_time_get_current_time", {"timezone": "UTC"})
    assert not result.is_error
    assert '"timezone": "UTC"' in text(result)
    assert result.duration_ms > 0 and result.size == len(text(result).encode())


async def test_http_server_listed_and_called(
    http_server: HttpServer, start: Callable[..., Awaitable[ToolManager]]
) -> None:
    await http_server.start()
    manager = await start([McpServer(name="web", url=http_server.url, headers=(("x-team", "platform"),))])
    assert bare_names(manager, "web") == TEST_TOOLS
    assert text(await manager.call("bmcp_web_add", {"a": 2, "b": 40})) == "42"
    assert text(await manager.call("bmcp_web_header", {"name": "x-team"})) == "platform"


async def test_allow_and_deny(start: Callable[..., Awaitable[ToolManager]]) -> None:
    server = stdio_server(allow=re.compile("^coder_"), deny=re.compile("delete"))
    manager = await start([server])
    assert bare_names(manager, "test") == set(CODER_TOOLS) - {"coder_delete_template"}
    assert manager.get("bmcp_test_coder_delete_template") is None
    assert manager.get("bmcp_test_echo") is None
    result = await manager.call("bmcp_test_echo", {"message": "hi"})
    assert result.is_error and result.error == "unknown tool bmcp_test_echo"


# --- calls ----------------------------------------------------------------------------------------------------


async def test_calls_of_each_kind(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server()])

    echo = await manager.call("bmcp_test_echo", {"message": "hi there"})
    assert (echo.parts, echo.is_error, echo.error, echo.size) == ((TextPart("hi there"),), False, None, 8)

    image = await manager.call("bmcp_test_image", {})
    assert isinstance(image.parts[0], ImagePart) and image.parts[0].media_type == "image/png"
    assert image.parts[1:] == (TextPart("a tiny image"),)
    assert image.size == len(TINY_PNG) + len("a tiny image")

    resource = await manager.call("bmcp_test_resource", {})
    assert resource.parts == (TextPart("resource text"),)

    failed = await manager.call("bmcp_test_fail", {"message": "no such file"})
    assert (failed.parts, failed.is_error, failed.error) == ((TextPart("no such file"),), True, None)

    raised = await manager.call("bmcp_test_raise_error", {})
    assert raised.is_error and "raise_error" in text(raised)

    invalid = await manager.call("bmcp_test_add", {"a": "x"})
    assert invalid.is_error and "validation" in text(invalid)

    unknown = await manager.call("bmcp_nope", {})
    assert unknown.is_error and unknown.error == "unknown tool bmcp_nope"
    assert text(unknown) == "Error: tool bmcp_nope is not available"


async def test_timeout(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server(tool_timeout=0.3)])
    began = time.monotonic()
    result = await manager.call("bmcp_test_hang", {})
    assert time.monotonic() - began < 2
    assert result.is_error
    assert text(result) == "Error: tool hang timed out after 0.3 s"
    assert result.error == "timed out after 0.3 s"
    assert result.duration_ms >= 300
    assert text(await manager.call("bmcp_test_echo", {"message": "still here"})) == "still here"


async def test_cancelling_a_call(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server()])
    call = asyncio.create_task(manager.call("bmcp_test_slow", {"seconds": 30}))
    await asyncio.sleep(0.3)
    call.cancel()
    began = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - began < 1
    assert text(await manager.call("bmcp_test_echo", {"message": "next"})) == "next"


async def test_concurrent_calls(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server("one"), stdio_server("two")])
    began = time.monotonic()
    results = await asyncio.gather(
        *(manager.call("bmcp_one_slow", {"seconds": 0.5}) for _ in range(4)),
        manager.call("bmcp_two_slow", {"seconds": 0.5}),
        manager.call("bmcp_two_echo", {"message": "quick"}),
    )
    assert time.monotonic() - began < 1.5  # in parallel, not 2.5 s in turn
    assert [text(r) for r in results] == ["done"] * 5 + ["quick"]


# --- failures and recovery ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_crash_mid_call_then_back(
    start: Callable[..., Awaitable[ToolManager]], monkeypatch: pytest.MonkeyPatch, mode: str, no_error_logs: None
) -> None:
    monkeypatch.setattr(ToolManager, "client_mode", mode)
    manager = await start([stdio_server()])
    pids = children("tests.support.mcp_server")
    result = await manager.call("bmcp_test_crash", {})
    assert result.is_error and result.error
    assert "crash" in text(result)
    await eventually(lambda: children("tests.support.mcp_server") - pids != set())  # a new process
    await eventually(lambda: bare_names(manager, "test") == TEST_TOOLS)
    assert text(await manager.call("bmcp_test_echo", {"message": "back"})) == "back"


async def test_stdout_banner_is_survived_without_error_logs(
    start: Callable[..., Awaitable[ToolManager]], no_error_logs: None
) -> None:
    banner = (
        "print('starting up', flush=True); import runpy; "
        "runpy.run_module('tests.support.mcp_server', run_name='__main__')"
    )
    manager = await start([stdio_server(args=("-c", banner))])
    assert bare_names(manager, "test") == TEST_TOOLS


async def test_unresponsive_server_times_out_and_is_not_leaked(
    start: Callable[..., Awaitable[ToolManager]], monkeypatch: pytest.MonkeyPatch, no_error_logs: None
) -> None:
    monkeypatch.setattr(ToolManager, "connect_timeout", 0.3)
    monkeypatch.setattr(mcp.client.stdio, "PROCESS_TERMINATION_TIMEOUT", 0.2)  # the SDK's grace before SIGTERM
    silent = McpServer(name="silent", command=sys.executable, args=("-c", "import time; time.sleep(3600)"))
    manager = await start([silent])
    assert manager.tools() == ()
    await eventually(lambda: bool(children("time.sleep")))  # retrying: a fresh process waits for its answer
    await manager.stop()
    assert not children("time.sleep")


async def test_missing_command_leaves_others_working(
    start: Callable[..., Awaitable[ToolManager]], no_error_logs: None
) -> None:
    manager = await start([McpServer(name="gone", command="/nonexistent/mcp-server"), stdio_server()])
    assert bare_names(manager, "test") == TEST_TOOLS
    assert bare_names(manager, "gone") == set()
    assert text(await manager.call("bmcp_test_echo", {"message": "fine"})) == "fine"


async def test_http_server_down_at_start_comes_up_later(
    http_server: HttpServer, start: Callable[..., Awaitable[ToolManager]], no_error_logs: None
) -> None:
    manager = await start([McpServer(name="web", url=http_server.url), stdio_server()])
    assert bare_names(manager, "web") == set()
    assert bare_names(manager, "test") == TEST_TOOLS
    await http_server.start()
    await eventually(lambda: bare_names(manager, "web") == TEST_TOOLS)
    assert text(await manager.call("bmcp_web_echo", {"message": "up"})) == "up"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_http_server_dies_mid_call_then_back(
    http_server: HttpServer,
    start: Callable[..., Awaitable[ToolManager]],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    no_error_logs: None,
) -> None:
    monkeypatch.setattr(ToolManager, "client_mode", mode)
    await http_server.start()
    manager = await start([McpServer(name="web", url=http_server.url)])
    call = asyncio.create_task(manager.call("bmcp_web_slow", {"seconds": 30}))
    await asyncio.sleep(0.3)
    await http_server.kill()
    async with asyncio.timeout(5):
        result = await call
    assert result.is_error and result.error
    await eventually(lambda: not manager.tools())
    await http_server.start()
    await eventually(lambda: bare_names(manager, "web") == TEST_TOOLS)
    assert text(await manager.call("bmcp_web_echo", {"message": "again"})) == "again"


async def test_call_while_disconnected(http_server: HttpServer, start: Callable[..., Awaitable[ToolManager]]) -> None:
    await http_server.start()
    manager = await start([McpServer(name="web", url=http_server.url)])
    tool = manager.get("bmcp_web_echo")
    await http_server.kill()
    await eventually(lambda: not manager.tools())
    assert tool is not None
    result = await manager.call(tool.name, {"message": "x"})  # the model saw it before the server went away
    assert result.is_error and result.error


# --- list changes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_list_changed_over_stdio(
    start: Callable[..., Awaitable[ToolManager]], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(ToolManager, "client_mode", mode)
    manager = await start([stdio_server()])
    assert text(await manager.call("bmcp_test_add_tool", {"name": "fresh"})) == "added fresh"
    await eventually(lambda: manager.get("bmcp_test_fresh") is not None, within=5)
    assert text(await manager.call("bmcp_test_fresh", {})) == "mock"


async def test_list_changed_over_http(http_server: HttpServer, start: Callable[..., Awaitable[ToolManager]]) -> None:
    await http_server.start()
    manager = await start([McpServer(name="web", url=http_server.url)])
    await manager.call("bmcp_web_add_tool", {"name": "fresh"})
    await eventually(lambda: manager.get("bmcp_web_fresh") is not None, within=5)


async def test_periodic_refresh(start: Callable[..., Awaitable[ToolManager]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ToolManager, "refresh_interval", 0.2)
    manager = await start([stdio_server()])
    await manager.call("bmcp_test_add_tool", {"name": "quiet", "notify": False})
    await eventually(lambda: manager.get("bmcp_test_quiet") is not None, within=5)


# --- lifecycle ------------------------------------------------------------------------------------------------


async def test_start_does_not_block() -> None:
    manager = ToolManager([stdio_server(), McpServer(name="web", url=f"http://127.0.0.1:{free_port()}/mcp")])
    began = time.monotonic()
    await manager.start()
    assert time.monotonic() - began < 0.1
    assert manager.tools() == ()
    await manager.stop()


async def test_stop_ends_every_server_process(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server(), time_server()])
    pids = children("tests.support.mcp_server|mcp-server-time")
    assert len(pids) == 2
    call = asyncio.create_task(manager.call("bmcp_test_hang", {}))
    await asyncio.sleep(0.2)
    await manager.stop()
    assert not children("tests.support.mcp_server|mcp-server-time") & pids
    assert manager.tools() == ()
    result = await asyncio.wait_for(call, 5)  # a call cut short by stop() still gets an answer
    assert result.is_error
    await manager.stop()  # idempotent


async def test_reconfigure_restarts_only_what_changed(start: Callable[..., Awaitable[ToolManager]]) -> None:
    manager = await start([stdio_server()])
    await manager.call("bmcp_test_add_tool", {"name": "marker"})  # lives only as long as this process
    await eventually(lambda: manager.get("bmcp_test_marker") is not None)

    await manager.reconfigure([stdio_server(deny=re.compile("^coder_"), tool_timeout=5)])
    assert manager.get("bmcp_test_marker") is not None  # same connection: filters apply at once
    assert not bare_names(manager, "test") & set(CODER_TOOLS)
    echo = manager.get("bmcp_test_echo")
    assert echo is not None and echo.server.tool_timeout == 5

    await manager.reconfigure([time_server()])
    assert bare_names(manager, "test") == set()
    await manager.wait_until_settled(15)
    assert bare_names(manager, "time") == {"get_current_time", "convert_time"}


async def test_wait_until_settled_returns_after_timeout() -> None:
    manager = ToolManager([stdio_server()])
    await manager.start()
    began = time.monotonic()
    await manager.wait_until_settled(0.05)
    assert time.monotonic() - began < 0.5
    await manager.stop()
