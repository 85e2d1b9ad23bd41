"""A real `mitmdump -s addon/aibridge.py` in a subprocess, on 127.0.0.1 with a fresh CA and audit file."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
_EXPORT = re.compile(r"^export (\w+)=(.*)$")


def provider_config(upstream_url: str, **extra: str) -> str:
    """TOML pointing both default providers at a mock upstream."""
    lines = [
        f'[providers.anthropic]\nupstream = "{upstream_url}"\n',
        f'[providers.openai]\nupstream = "{upstream_url}"\n',
    ]
    lines.extend(extra.values())
    return "\n".join(lines)


class Proxy:
    def __init__(
        self,
        tmp: Path,
        config: str | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        *,
        confdir: Path | None = None,
        db: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        """`confdir` (the CA), `db` (the audit store: a path or a postgresql:// URL) and `cwd` default to `tmp`'s
        own: `tmp/conf`, `db_path` (`tmp/audit.duckdb`, read when the command is built) and `tmp`. Several
        proxies given one confdir share one CA."""
        self.tmp = tmp
        self.db_path = tmp / "audit.duckdb"
        self.db = db
        self.confdir = confdir if confdir is not None else tmp / "conf"
        self.cwd = cwd if cwd is not None else tmp
        self.config_path = tmp / "aibridge.toml" if config is not None else None
        if self.config_path is not None:
            self.config_path.write_text(config or "")
        self.args = args
        self.extra_env = env or {}
        self.output: list[str] = []
        self.env: dict[str, str] = {}
        self.process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def command(self) -> list[str]:
        cmd = [
            str(MITMDUMP),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "-s",
            str(ROOT / "addon/aibridge.py"),
            "--set",
            f"confdir={self.confdir}",
            "--set",
            "connection_strategy=lazy",
            "--set",
            f"aibridge_db={self.db if self.db is not None else self.db_path}",
            "--set",
            "flow_detail=0",
        ]
        if self.config_path is not None:
            cmd += ["--set", f"aibridge_config={self.config_path}"]
        return cmd + list(self.args)

    def spawn(self) -> "Proxy":
        """Start without waiting for readiness (for startup failures)."""
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | self.extra_env
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=self.cwd
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def start(self, timeout: float = 30) -> "Proxy":
        self.spawn()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("mitmdump did not become ready:\n" + "\n".join(self.output))
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if match := _EXPORT.match(line):
                self.env[match.group(1)] = match.group(2)
                if match.group(1) == "CURL_CA_BUNDLE":
                    self._ready.set()

    @property
    def url(self) -> str:
        return self.env["HTTPS_PROXY"]

    def client_env(self) -> dict[str, str]:
        """The proxy's printed lines, as a client's environment gets them."""
        return dict(self.env)

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait for the process to exit by itself; its output is then complete."""
        assert self.process is not None
        rc = self.process.wait(timeout)
        time.sleep(0.2)  # let the reader thread take the last lines
        return rc

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Query the audit file (after stop(): DuckDB lets no other process open it while the proxy runs)."""
        with duckdb.connect(str(self.db_path), read_only=True) as db:
            cursor = db.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def live_interceptions(db: Path, at_least: int, within: float = 30.0) -> bytes:
    """`aibridge interceptions --json` from a running proxy's live endpoint, asked again until at least
    `at_least` interceptions show: the audit writer commits once a second."""
    command = [str(Path(sys.executable).parent / "aibridge"), "interceptions", "--db", str(db), "--json"]
    deadline = time.monotonic() + within
    while True:
        out = subprocess.run([*command, "--limit", "1000"], capture_output=True, timeout=60, check=True).stdout
        if len(json.loads(out)["interceptions"]) >= at_least or time.monotonic() > deadline:
            return out
        time.sleep(0.2)
