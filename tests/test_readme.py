"""The README is the contract other tools and people rely on: it must not drift from the code."""

import os
import re
from pathlib import Path

from mitmproxy.test import taddons

from addon.config import (
    _ALLOWED_MODEL_KEYS,
    _BREAKER_KEYS,
    _BUDGET_KEYS,
    _GATE_RULE_KEYS,
    _MCP_KEYS,
    _PRICE_KEYS,
    _PROVIDER_KEYS,
    _RATE_KEYS,
    _RATE_LIMIT_KEYS,
    _REDACTION_KEYS,
    _TOP_LEVEL_KEYS,
    _USER_KEYS,
)
from addon.mitm.bridge import Bridge
from addon.mitm.operations import Operations

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_addon_option_is_documented() -> None:
    options = []
    umask = os.umask(0o022)
    try:
        for addon in (Bridge(), Operations(Bridge())):  # one at a time: together, they would open an audit file
            with taddons.context(addon) as tctx:
                names = tctx.options.keys()
                options += [name for name in names if name.startswith("aibridge_")]
    finally:
        os.umask(umask)  # the addon's load() makes the process umask 0077: not for the rest of this worker
    assert len(options) >= 8
    assert [name for name in options if f"`{name}`" not in README] == []


def test_every_configuration_key_is_documented() -> None:
    section = README.split("### The TOML file", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    documented = {key for block in blocks for key in re.findall(r"^(\w+) =", block, re.MULTILINE)}
    tables = {table for block in blocks for table in re.findall(r"^\[(\w+)[.\]]", block, re.MULTILINE)}
    every = _PROVIDER_KEYS | _MCP_KEYS | _USER_KEYS | _BUDGET_KEYS | _PRICE_KEYS | _BREAKER_KEYS | _RATE_KEYS
    every |= _REDACTION_KEYS | _ALLOWED_MODEL_KEYS | _GATE_RULE_KEYS
    assert (every | set(_RATE_LIMIT_KEYS)) - documented == set()
    assert {k for k in _TOP_LEVEL_KEYS if k not in tables} - documented == set()


def test_ci_runs_the_readmes_test_command() -> None:
    assert "scripts/test           # the whole test suite" in README
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^exec scripts/test$", ci, re.MULTILINE)
