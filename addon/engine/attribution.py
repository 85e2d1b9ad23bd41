"""Where a request comes from, as the client itself says: its working directory, repository, branch, and agent
(the main conversation or a named sub-agent). Pure; parsed defensively: a client that changes its format yields
empty fields, never an error.

What each client says (captured from the real clients: tests/fixtures/clients/):
- Claude Code: `Primary working directory: <dir>` in a `system` entry among the first messages, `Current branch:
  <name>` in the first user turn's gitStatus reminder; no remote. Sub-agents send `x-claude-code-agent-type`
  (`general-purpose`, `Explore`, `custom`: a custom agent's name is only in the Agent call, `SubAgentNames`) and
  `x-claude-code-request-class: subagent`.
- Codex: `<cwd>` in the `<environment_context>` user message; the git remotes in `x-codex-turn-metadata`'s
  `workspaces`; no branch. Its `agent_name` is `/root` for the main thread, `/root/<task>` for a spawned agent,
  whose requests also carry `x-openai-subagent`.
- opencode: `Working directory: <dir>` in its `<env>` system block; a sub-agent's requests carry
  `x-parent-session-id`; the title call's system prompt is the title generator's.
"""

import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit

from addon.wire.base import parse_arguments

MAIN: Final = "main"
SUBAGENT: Final = "subagent"
TITLE: Final = "title"
CUSTOM: Final = "custom"
AGENT_TOOLS: Final = frozenset({"Agent", "Task"})
"""Claude Code's tools that start a sub-agent; their `subagent_type` names it."""
THREAD_HEADERS: Final = ("x-claude-code-agent-id", "thread-id")
"""A sub-agent's own thread: Claude Code's agent id, Codex's thread id (its session id is the parent's)."""
_MAX_FIELD: Final = 512
_LEADING_MESSAGES: Final = 8
"""Only the first messages are read: the environment is stated once, at the start of the conversation."""
_DIRECTORY: Final = ("Primary working directory:", "Working directory:")
_BRANCH: Final = ("Current branch:",)
_CWD = re.compile(r"<cwd>([^<\n]+)</cwd>")
_TITLE_PROMPT = "You are a title generator"


@dataclass(frozen=True, slots=True)
class Attribution:
    working_directory: str | None = None
    repository: str | None = None
    """The git remote (as `host/owner/name`) where the client names one, else the directory's name."""
    branch: str | None = None
    agent: str | None = None
    """`main`, a sub-agent's name (or `subagent` where it has none), or `title` for a title call."""


def attribute(client: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> Attribution:
    """The attribution of one request; empty where the client says nothing this module understands."""
    try:
        found = _attribute(client, headers, body)
    except Exception:
        return Attribution()
    if found.repository is None and found.working_directory:
        found = replace(found, repository=_clean(found.working_directory.rstrip("/").rsplit("/", 1)[-1]))
    return found


def agent_thread(headers: Mapping[str, str]) -> str | None:
    """The agent's own thread within its session, where the client names one: two sub-agents of one type that run
    side by side are two threads (each with its own prompt cache)."""
    return next((_clean(headers[name]) for name in THREAD_HEADERS if headers.get(name)), None)


def _attribute(client: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> Attribution:
    texts = list(_context_texts(body))
    directory = _line_value(_DIRECTORY, texts) or _first(_CWD, texts)
    branch = _line_value(_BRANCH, texts)
    branch = branch.split()[0] if branch else None
    repository, agent = None, None
    if client == "Claude Code":
        agent = _claude_agent(headers, body)
    elif client == "Codex":
        metadata = _json_header(headers.get("x-codex-turn-metadata"))
        repository = _codex_remote(metadata, directory)
        agent = _codex_agent(metadata, headers)
    elif client == "OpenCode":
        agent = SUBAGENT if headers.get("x-parent-session-id") else MAIN
    if any(t.startswith(_TITLE_PROMPT) for t in texts[:2]):
        agent = TITLE
    return Attribution(_clean(directory), repository, _clean(branch), _clean(agent))


def _context_texts(body: Mapping[str, Any]) -> Iterator[str]:
    """The texts where clients state their environment: the system prompt or instructions, and the first few
    messages (Messages, Chat) or input items (Responses)."""
    for key in ("system", "instructions"):
        yield from _texts(body.get(key))
    for key in ("messages", "input"):
        items = body.get(key)
        if isinstance(items, list):
            for item in items[:_LEADING_MESSAGES]:
                if isinstance(item, dict):
                    yield from _texts(item.get("content"))


def _texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(text := part.get("text"), str):
                yield text


def _line_value(labels: tuple[str, ...], texts: list[str]) -> str | None:
    """The rest of the first line that starts with one of `labels` (after spaces or a list's dash). Found with
    `str.find`: a regex anchored at line starts would try every character of a 40 KB system prompt."""
    for text in texts:
        for label in labels:
            at = text.find(label)
            while at >= 0:
                start = text.rfind("\n", 0, at) + 1
                if not text[start:at].strip(" \t-"):
                    end = text.find("\n", at)
                    return text[at + len(label) : end if end >= 0 else len(text)].strip()
                at = text.find(label, at + 1)
    return None


def _first(pattern: re.Pattern[str], texts: list[str]) -> str | None:
    for text in texts:
        if match := pattern.search(text):
            return match.group(1).strip()
    return None


def _claude_agent(headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
    if kind := headers.get("x-claude-code-agent-type"):
        return kind
    request_class = headers.get("x-claude-code-request-class")
    if request_class:
        return MAIN if request_class == MAIN else request_class
    system = body.get("system")  # base-URL mode sends no request class; the billing block still says
    first = next(_texts(system), "") if isinstance(system, list) else ""
    return SUBAGENT if "cc_is_subagent=true" in first else MAIN


def _json_header(value: str | None) -> dict[str, Any]:
    try:
        decoded = json.loads(value) if value else {}
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _codex_remote(metadata: Mapping[str, Any], directory: str | None) -> str | None:
    """The remote of the working directory's workspace (else of the only one): `origin` first."""
    workspaces = metadata.get("workspaces")
    if not isinstance(workspaces, dict) or not workspaces:
        return None
    workspace = workspaces.get(directory) if directory else None
    if workspace is None and len(workspaces) == 1:
        workspace = next(iter(workspaces.values()))
    remotes = workspace.get("associated_remote_urls") if isinstance(workspace, dict) else None
    if not isinstance(remotes, dict) or not remotes:
        return None
    url = remotes.get("origin") or next(iter(remotes.values()))
    return remote_name(url) if isinstance(url, str) else None


def _codex_agent(metadata: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    name = metadata.get("agent_name")
    if isinstance(name, str) and name.strip("/") and name.strip("/") != "root":
        return name.rstrip("/").rsplit("/", 1)[-1]
    if kind := headers.get("x-openai-subagent"):
        return kind
    return SUBAGENT if metadata.get("thread_source") == SUBAGENT else MAIN


_MAX_SESSIONS: Final = 10_000


@dataclass(slots=True)
class _Calls:
    pending: list[str]
    """The `subagent_type` of the session's Agent calls no sub-agent has taken yet, in order."""
    named: dict[str, str]
    """By agent id: the name each sub-agent was given."""


class SubAgentNames:
    """The names of Claude Code's custom sub-agents, which their own requests do not carry (only `custom` and an
    agent id): the main conversation's Agent call names the type, and the sub-agent's first request follows it.
    A custom sub-agent is named when the session's Agent calls not yet taken leave one name; else it stays
    `custom`. In memory, per session, bounded."""

    def __init__(self, max_sessions: int = _MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, _Calls] = OrderedDict()
        self._max = max_sessions

    def called(self, session: str, arguments: str) -> None:
        """An Agent call the model made in `session`, with its arguments (JSON text)."""
        kind = (parse_arguments(arguments) or {}).get("subagent_type")
        if isinstance(kind, str) and kind.strip():
            self._sessions.setdefault(session, _Calls([], {})).pending.append(kind.strip()[:_MAX_FIELD])
            self._sessions.move_to_end(session)
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)

    def name(self, session: str | None, agent_id: str | None, agent: str | None) -> str | None:
        """`agent` as this request states it, a custom one named where that is certain."""
        calls = self._sessions.get(session) if session is not None else None
        if calls is None or agent is None or not agent_id:
            return agent
        if (known := calls.named.get(agent_id)) is not None:
            return known
        if agent != CUSTOM:
            if agent in calls.pending:
                calls.pending.remove(agent)  # a built-in sub-agent took its call
                calls.named[agent_id] = agent
            return agent
        if len(set(calls.pending)) != 1:
            return agent
        calls.named[agent_id] = named = calls.pending.pop(0)
        return named


def remote_name(url: str) -> str | None:
    """A git remote as `host/owner/name`: `https://github.com/acme/widgets.git`, `git@github.com:acme/widgets`
    and `ssh://git@github.com/acme/widgets` alike; credentials in the URL are dropped."""
    url = url.strip()
    if "://" not in url and ":" in url.split("/", 1)[0]:  # scp-like: [user@]host:path
        host, _, path = url.partition(":")
        host = host.rsplit("@", 1)[-1]
    else:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git")
    return _clean(f"{host}/{path}" if host else path)


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:_MAX_FIELD] or None
