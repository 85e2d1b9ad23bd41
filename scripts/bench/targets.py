"""The scenarios' ends the load client talks to: the mock provider, the mitmdump proxies (the floor, the bridge
and its variants) and LiteLLM's proxy, each started as a subprocess and described as a `Target`."""

import asyncio
import contextlib
import importlib.util
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from plan import AUDIT_OFF, BIN, FLOOR_GC, FLOORS, FORMATS, HERE, HOSTS, MIXED, MODELS, PATHS, ROOT, WORKER
from procs import Procs, clean_env, proc_cpu, proc_rss_mb, read_log, wait_for_line

_EXPORT = re.compile(r"^export (\w+)=(.*)$", re.MULTILINE)


@dataclass
class Target:
    """How the load client reaches one scenario."""

    name: str
    urls: dict[tuple[str, bool], str]
    """(format, stream): the URL to post to."""
    ssl: ssl.SSLContext | bool
    proxy: str | None = None
    proxy_headers: dict[str, str] | None = None
    """Sent on the CONNECT: a bridge user's `proxy-authorization`."""
    process: subprocess.Popen[bytes] | None = None
    bridged: bool = False
    """Responses must carry the bridge's interception header."""
    strict: bool = True
    """The event count must be the mock's (false for gateways that re-encode streams)."""
    knobs_in_body_only: bool = False
    formats: tuple[str, ...] = FORMATS
    """The formats it serves: a format's figures are "–" for a target without it."""
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Processes of this scenario besides the proxy (the worker prototype's worker): counted with it."""

    def cpu(self) -> float | None:
        if self.process is None:
            return None
        return sum(proc_cpu(p.pid) for p in (self.process, *self.helpers))

    def rss(self) -> float | None:
        if self.process is None:
            return None
        return sum(proc_rss_mb(p.pid) for p in (self.process, *self.helpers))


@dataclass
class Mock:
    process: subprocess.Popen[bytes]
    url: str
    ca: Path
    ssl: ssl.SSLContext

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(self.url + path, ssl=self.ssl) as response:
            return await response.json()

    async def post(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.post(self.url + path, ssl=self.ssl) as response:
            return await response.json()


async def start_mock(procs: Procs, tmp: Path) -> Mock:
    log = tmp / "mock.log"
    process = procs.start([sys.executable, str(HERE / "mock_provider.py"), "--dir", str(tmp)], log, env=clean_env())
    match = await wait_for_line(process, log, r"^READY (\S+) CA=(\S+)$", 30)
    ca = Path(match.group(2))
    return Mock(process, match.group(1), ca, ssl.create_default_context(cafile=str(ca)))


def urls(base: str) -> dict[tuple[str, bool], str]:
    """Every (format, stream)'s URL under one base URL."""
    return {key: base + path for key, path in PATHS.items()}


def providers_toml(upstream: str) -> str:
    """The bridge's configuration: every benchmarked format's provider sent to the mock."""
    return "".join(f'[providers.{fmt}]\nupstream = "{upstream}"\n\n' for fmt in FORMATS)


def mcp_server_toml() -> str:
    return "\n".join(
        [
            "[mcp_servers.bench]",
            f"command = {json.dumps(sys.executable)}",
            'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]',
            f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}',
            "",
        ]
    )


async def start_proxy(procs: Procs, name: str, mock: Mock, tmp: Path, tag: str, extra_config: str = "") -> Target:
    """A mitmdump subprocess: the floor, or the bridge (with MCP tools when the name says so, and `extra_config`
    appended to its TOML)."""
    work = tmp / f"{name}-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "mitmdump"),
        "--listen-host", "127.0.0.1",
        "--listen-port", "0",
        "--set", f"confdir={tmp / ('conf-' + name)}",
        "--set", "connection_strategy=lazy",
        "--set", "flow_detail=0",
        "--set", f"ssl_verify_upstream_trusted_ca={mock.ca}",
    ]  # fmt: skip
    helpers = []
    if name in FLOORS:
        cmd += ["-s", str(HERE / "floor_addon.py"), "--set", f"floor_upstream={mock.url}"]
        cmd += ["--set", "floor_gc_policy=true"] if name == FLOOR_GC else []
    elif name == WORKER:
        (work / "aibridge.toml").write_text(providers_toml(mock.url))
        worker_cmd = [sys.executable, str(HERE / "worker_prototype.py"), "--config", str(work / "aibridge.toml")]
        worker_cmd += ["--db", str(work / "audit.duckdb"), "--ca", str(mock.ca)]
        worker_log = work / "worker.log"
        helpers.append(procs.start(worker_cmd, worker_log, env=clean_env(), cwd=work))
        hop = (await wait_for_line(helpers[0], worker_log, r"^READY (\S+)$", 60)).group(1)
        cmd += ["-s", str(HERE / "worker_prototype.py"), "--set", f"worker_hop={hop}"]
    else:
        config = providers_toml(mock.url)
        if name == "bridge+MCP":
            config += mcp_server_toml()
        config += extra_config
        (work / "aibridge.toml").write_text(config)
        cmd += ["-s", str(ROOT / "addon/aibridge.py")]
        if name == AUDIT_OFF:
            cmd += ["-s", str(HERE / "null_audit_addon.py")]
        cmd += [
            "--set", f"aibridge_config={work / 'aibridge.toml'}",
            "--set", f"aibridge_db={work / 'audit.duckdb'}",
        ]  # fmt: skip
    log = work / "mitmdump.log"
    process = procs.start(cmd, log, env=clean_env(), cwd=work)
    await wait_for_line(process, log, r"^export CURL_CA_BUNDLE=", 60)
    exports = dict(_EXPORT.findall(log.read_text(errors="replace")))
    return Target(
        name=name,
        urls={(fmt, stream): f"https://{HOSTS[fmt]}{path}" for (fmt, stream), path in PATHS.items()},
        ssl=ssl.create_default_context(cafile=exports["SSL_CERT_FILE"]),
        proxy=exports["HTTPS_PROXY"],
        process=process,
        bridged=name not in FLOORS,
        helpers=helpers,
    )


def litellm_command() -> list[str] | None:
    exe = BIN / "litellm"
    if exe.exists():
        return [str(exe)]
    if found := shutil.which("litellm"):
        return [found]
    if importlib.util.find_spec("litellm") is not None:
        return [sys.executable, "-m", "litellm"]
    return None


async def start_litellm(procs: Procs, mock: Mock, tmp: Path, tag: str) -> Target:
    """LiteLLM's proxy as a base-URL gateway (no CONNECT): clients talk plain HTTP to it, it calls the mock.
    Anthropic and OpenAI only: Gemini through it (its `/v1beta/models/{model}:generateContent` routes, Gemini
    models sent to the mock as `api_base`) is not set up or checked here, so its Gemini figures are "–"."""
    command = litellm_command()
    assert command is not None
    work = tmp / f"litellm-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(
        "model_list:\n"
        f"  - model_name: {MODELS['anthropic']}\n"
        f"    litellm_params: {{model: anthropic/{MODELS['anthropic']}, api_base: '{mock.url}', api_key: sk-ant-b}}\n"
        f"  - model_name: {MODELS['openai']}\n"
        f"    litellm_params: {{model: openai/{MODELS['openai']}, api_base: '{mock.url}/v1', api_key: sk-b}}\n"
        "litellm_settings:\n  drop_params: true\n"
    )
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # No master key: a benchmark on 127.0.0.1, and LiteLLM then skips its own key checks (in its favour).
    env = clean_env() | {
        "SSL_CERT_FILE": str(mock.ca),
        "SSL_VERIFY": str(mock.ca),
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        "LITELLM_LOG": "ERROR",
    }
    log = work / "litellm.log"
    process = procs.start(
        [*command, "--config", str(work / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)], log, env, work
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(base + "/health/liveliness") as response:
                    if response.status == 200:
                        return Target(
                            name="litellm",
                            urls=urls(base),
                            ssl=False,
                            process=process,
                            strict=False,
                            knobs_in_body_only=True,
                            formats=MIXED,
                        )
            await asyncio.sleep(0.5)
    tail = "\n".join(read_log(log).splitlines()[-30:])
    raise RuntimeError(f"litellm did not become ready:\n{tail}")
