"""Where a request comes from, as the client itself says: its working directory, repository, branch, and agent
(the main conversation or a named sub-agent). Pure; parsed defensively: a client that changes its format yields
empty fields, never an error.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAIN = "main"


@dataclass(frozen=True, slots=True)
class Attribution:
    working_directory: str | None = None
    repository: str | None = None
    """The git remote (as `host/owner/name`) where the client names one, else the directory's name."""
    branch: str | None = None
    agent: str | None = None


def attribute(client: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> Attribution:
    """The attribution of one request; empty where the client says nothing this module understands."""
    try:
        return _attribute(client, headers, body)
    except Exception:
        return Attribution()


def _attribute(client: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> Attribution:
    return Attribution()
