"""The scripts the README documents start: their imports follow the package they measure or drive."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script",
    [
        "scripts/bench/run.py",
        "scripts/bench/cli_queries.py",
        "scripts/bench/web_pages.py",
        "scripts/bench/worker_prototype.py",
        "scripts/bench/shared_store.py",
        "scripts/bench/fleet.py",
        "scripts/bench/redaction.py",
        "scripts/bench/guards.py",
        "scripts/bench/insights.py",
        "scripts/soak/run.py",
        "-m tests.support.fleet",  # what scripts/fleet runs once scripts/setup is done
    ],
)
def test_script_help(script: str) -> None:
    done = subprocess.run(
        [sys.executable, *script.split(), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
