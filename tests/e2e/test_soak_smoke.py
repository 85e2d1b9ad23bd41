"""scripts/soak/run.py, for a few seconds: the script keeps working (the real soak runs outside the suite)."""

import subprocess
import sys

from tests.support.proxy import ROOT


def test_a_short_soak_passes_and_reports_its_figures() -> None:
    short = ["--minutes", "0.1", "--sample", "1", "--concurrency", "4"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/soak/run.py"), *short, "--max-rss-slope", "1000000"],  # seconds: no slope
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "soak: passed" in out and " 0 errors" in out
    for figure in ("RSS after warm-up", "fds:", "tasks:", "threads:", "interceptions recorded"):
        assert figure in out
