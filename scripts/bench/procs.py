"""The processes of a run: starting and stopping them (with whatever they started), waiting for a line in their
logs, and their CPU and RSS from /proc."""

import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_path(stat_path: Path) -> float:
    """Seconds of CPU (user + system) from a /proc stat file: a process's (all threads) or one thread's."""
    stat = stat_path.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, all threads) a process has used."""
    return proc_cpu_path(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread id of a process."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            out[task.name] = proc_cpu_path(task / "stat")
    return out


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of a process's descendants, from /proc/<pid>/task/*/children."""
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if (start := _start_time(int(child))) is not None:
                        found.append((int(child), start))
                        todo.append(int(child))
    return found


class Procs:
    """Every process this run starts; `stop_all` ends them (and what they started), whatever happened."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
        with log.open("wb") as out:
            process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True,
            )  # fmt: skip
        self.items.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
        if process.poll() is None:
            children = descendants(process.pid)
            process.terminate()  # mitmdump shuts down cleanly: MCP servers stopped, audit flushed
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            for pid, started in children:  # anything it left behind, checked against pid reuse
                if _start_time(pid) == started:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ValueError):
            self.items.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.items)):
            self.stop(process, timeout=10)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def wait_for_line(process: subprocess.Popen[bytes], log: Path, pattern: str, within: float) -> re.Match[str]:
    """The first match of `pattern` in a process's log, waiting at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if match := re.search(pattern, read_log(log), re.MULTILINE):
            return match
        if process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    tail = "\n".join(read_log(log).splitlines()[-30:])
    raise RuntimeError(f"{' '.join(process.args[:4])}... not ready (exit code {process.poll()}):\n{tail}")  # type: ignore[index]
