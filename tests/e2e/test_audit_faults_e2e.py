"""The audit store under faults, with a real mitmdump and a real DuckDB file: the file turning read-only and
the disk filling up while traffic runs (a small tmpfs the test mounts), and `kill -9` under load."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import duckdb
import pytest

from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, live_interceptions, provider_config
from tests.support.scenarios import anthropic_message

MESSAGES = [{"role": "user", "content": "hi"}]
AIBRIDGE = Path(sys.executable).parent / "aibridge"


def ask(text: str = "hi") -> str:
    message = anthropic.Anthropic(api_key="sk-ant-audit", max_retries=0, timeout=30).messages.create(
        model="claude-x", max_tokens=8, messages=[{"role": "user", "content": text}]
    )
    return message.content[0].text  # type: ignore[union-attr]


def wait_for_line(proxy: Proxy, text: str, after: int = 0, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(text in line for line in proxy.output[after:]):
            return
        time.sleep(0.1)
    raise AssertionError(f"no log line with {text!r}:\n" + "\n".join(proxy.output[after:]))


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, unmounted after the test (this needs root, as the project's machines give)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write until the filesystem is full."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def test_a_full_disk_loses_no_record(
    mock: MockUpstream, tmp_path: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    proxy = Proxy(tmp_path, provider_config(mock.url))
    proxy.db_path = small_fs / "audit.duckdb"
    request.addfinalizer(proxy.stop)
    proxy.start()
    for name, value in proxy.client_env().items():
        monkeypatch.setenv(name, value)
    mock.default = Answer.json(anthropic_message("served"))
    assert ask("before") == "served"

    # The disk fills up (the way a file turns unwritable for a proxy running as root, whom permissions do not
    # stop; a read-only remount is refused while the file is open): traffic goes on, records wait in memory,
    # and land once space is freed.
    mark = len(proxy.output)
    filler = small_fs / "filler"
    fill(filler)
    assert [ask(f"disk full {i}") for i in range(5)] == ["served"] * 5
    wait_for_line(proxy, "cannot write the audit store", mark)
    filler.unlink()
    wait_for_line(proxy, "writable again", mark)
    assert ask("after") == "served"

    proxy.stop()
    prompts = [r["prompt"] for r in proxy.rows("SELECT prompt FROM user_prompts ORDER BY created_at")]
    assert prompts == [
        "before",
        *(f"disk full {i}" for i in range(5)),
        "after",
    ]
    rows = proxy.rows("SELECT status, ended_at FROM interceptions")
    assert len(rows) == 7 and all(r["status"] == "completed" and r["ended_at"] for r in rows)


def test_kill_9_under_load_keeps_every_flushed_record_and_the_file_opens(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(provider_config(mock.url))
    mock.default = Answer.json(anthropic_message("load"))
    stop = threading.Event()
    sent = [0]

    def load() -> None:  # bounded: at most 2,000 requests or until the kill
        client = anthropic.Anthropic(api_key="sk-ant-load", max_retries=0, timeout=10)
        for i in range(2000):
            if stop.is_set():
                return
            try:
                client.messages.create(model="claude-x", max_tokens=8, messages=[{"role": "user", "content": f"{i}"}])
                sent[0] += 1
            except anthropic.APIError:
                return  # the proxy is gone

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 30
        while sent[0] < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        live = live_interceptions(proxy.db_path, at_least=20)  # what the proxy has committed, asked live
        assert proxy.process is not None
        os.kill(proxy.process.pid, signal.SIGKILL)
        proxy.process.wait(10)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    flushed = {row["id"] for row in json.loads(live)["interceptions"]}
    assert len(flushed) >= 20

    with duckdb.connect(str(proxy.db_path)) as db:  # opens cleanly (the WAL replays) and holds them all
        kept = {str(row[0]) for row in db.execute("SELECT id FROM interceptions").fetchall()}
    assert flushed <= kept

    restarted = start_proxy(provider_config(mock.url))  # the same file, taken up again
    assert ask("after the kill") == "load"
    restarted.stop()
    prompts = {r["prompt"] for r in restarted.rows("SELECT prompt FROM user_prompts")}
    assert "after the kill" in prompts, "\n".join(restarted.output[-30:])
