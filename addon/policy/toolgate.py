"""The tool gate: rules on the tool calls a model asks the client to run, checked before the client sees them.
A rule matches by the tool's name and by its arguments (regexes searched in the name and in the arguments' JSON
text); `block` keeps the call from the client (a short text says why, and the turn ends), `audit` only records
the match. The first `block` rule that matches wins, else the first `audit` one."""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from addon.config import GateRule

BLOCKED = "[aibridge] The tool call {tool} was blocked by policy (rule {rule}) and was not run."
"""What the client sees instead of a blocked call."""


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str
    action: str

    @property
    def blocked(self) -> bool:
        return self.action == "block"


class ToolGate:
    def __init__(self, rules: Sequence[GateRule]) -> None:
        compiled = [
            (r, re.compile(r.tool) if r.tool else None, re.compile(r.arguments) if r.arguments else None) for r in rules
        ]
        self._rules = sorted(compiled, key=lambda c: c[0].action != "block")  # block rules first, stable

    def check(self, tool: str, arguments: str) -> Verdict | None:
        for rule, name, args in self._rules:
            if (name is None or name.search(tool)) and (args is None or args.search(arguments)):
                return Verdict(rule.name, rule.action)
        return None


def blocked_text(tool: str, verdict: Verdict) -> str:
    return BLOCKED.format(tool=tool, rule=verdict.rule)
