"""Another process holding a DuckDB file open, as a proxy (or a forgotten duckdb shell) would."""

import contextlib
import subprocess
import sys
from collections.abc import Iterator

_CODE = "import duckdb, sys; db = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"


@contextlib.contextmanager
def holding(path: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _CODE, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)
