"""Loaded beside the bridge by scripts/soak.py: writes the proxy's asyncio task count once a second to the file
named by AIBRIDGE_SOAK_PROBE (one JSON line each), so the soak can see tasks pile up from outside."""

import asyncio
import json
import os
import time
from typing import TextIO


class Probe:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def running(self) -> None:
        out = open(os.environ["AIBRIDGE_SOAK_PROBE"], "a", buffering=1)  # noqa: SIM115, ASYNC230 (once; closed by _sample)
        self._task = asyncio.create_task(self._sample(out))

    async def _sample(self, out: TextIO) -> None:
        with out:
            while True:
                out.write(json.dumps({"t": time.time(), "tasks": len(asyncio.all_tasks())}) + "\n")
                await asyncio.sleep(1)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()


addons = [Probe()]
