"""The README is the contract other tools and people rely on: it must not drift from the code."""

import re
from pathlib import Path

from mitmproxy.test import taddons

from addon.config import _PROVIDER_KEYS
from addon.proxy import Bridge

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_addon_option_is_documented() -> None:
    with taddons.context(Bridge()) as tctx:
        options = [name for name in tctx.options.keys() if name.startswith("aibridge_")]
    assert options
    assert [name for name in options if f"`{name}`" not in README] == []


def test_every_provider_key_is_documented() -> None:
    toml_block = README.split("### The TOML file", 1)[1].split("```", 2)[1]
    documented = set(re.findall(r"^(\w+) =", toml_block, re.MULTILINE))
    assert _PROVIDER_KEYS <= documented


def test_ci_runs_the_readmes_test_command() -> None:
    assert "scripts/test           # the whole test suite" in README
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^exec scripts/test$", ci, re.MULTILINE)
