"""The proxy's garbage-collection policy, applied in a fresh interpreter (it changes process-wide state)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import gc, json
from addon.mitm import gc_policy
before = gc.get_threshold()
gc_policy.settle()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_settle_freezes_what_is_loaded_and_spaces_out_full_collections() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    from addon.mitm.gc_policy import FULL_COLLECTION_EVERY

    assert result["after"][:2] == result["before"][:2]  # young generations as CPython sets them
    assert result["after"][2] == FULL_COLLECTION_EVERY != result["before"][2]
    assert result["frozen"] >= 1000  # what start-up loaded left the collector's generations
