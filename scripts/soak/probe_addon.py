"""Loaded beside the bridge by scripts/soak/run.py: writes the proxy's asyncio task count once a second to the file
named by AIBRIDGE_SOAK_PROBE (one JSON line each), so the soak can see tasks pile up from outside."""

import asyncio
import gc
import itertools
import json
import os
import time
from typing import TextIO

from mitmproxy import ctx


class Probe:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def running(self) -> None:
        out = open(os.environ["AIBRIDGE_SOAK_PROBE"], "a", buffering=1)  # noqa: SIM115, ASYNC230 (once; closed by _sample)
        self._task = asyncio.create_task(self._sample(out))

    async def _sample(self, out: TextIO) -> None:
        with out:
            for n in itertools.count():
                line: dict[str, float] = {"t": time.time(), "tasks": len(asyncio.all_tasks())}
                if n % 5 == 0:  # the costlier figures, every 5 s: where memory goes, Python heap or DuckDB's
                    line["py_objects"] = len(gc.get_objects())
                    line["duckdb_mb"] = _duckdb_mb()
                out.write(json.dumps(line) + "\n")
                await asyncio.sleep(1)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _duckdb_mb() -> float:
    bridge = ctx.master.addons.get("bridge")
    if bridge is None or bridge.writer is None:
        return -1.0
    cursor = bridge.writer.reader()
    try:
        [(used,)] = cursor.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()
    finally:
        cursor.close()
    return round((used or 0) / 2**20, 1)


addons = [Probe()]
