"""Real AI clients (installed by scripts/setup under tests/clients/) run headless through the proxy.

A client gets a throwaway HOME, `PATH`, and exactly the lines the proxy printed (HTTPS_PROXY and https_proxy,
and every CA variable pointing at the bundle of system CAs plus the proxy CA): what the README tells a
developer to paste. Every run is bounded by `timeout`.
"""

import os
import subprocess
from pathlib import Path

from .proxy import ROOT, Proxy

BIN = ROOT / "tests/clients/node_modules/.bin"
RUN_LIMIT = 90
"""Seconds a client run may take before `timeout` kills it (a hang fails the test instead of stalling it)."""


def binary(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run scripts/setup (it installs the clients from npm)")
    return path


def client_env(proxy: Proxy, home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb"}
    return env | proxy.client_env() | extra


def run(args: list[str], env: dict[str, str], cwd: Path, limit: int = RUN_LIMIT) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["timeout", "-k", "5", str(limit), *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=limit + 30,
    )
