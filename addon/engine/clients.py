"""Which AI client sent a request, and the session it belongs to, from its headers and body. Pure.

`headers` are lower-cased names mapped to values. The rules follow the reference's list (first match wins).
"""

import json
import re
from collections.abc import Mapping
from typing import Any

UNKNOWN = "Unknown"

_UA_PREFIXES: tuple[tuple[str, str], ...] = (
    ("mux/", "Mux"),
    ("xum/", "Xum"),
)
_UA_CONTAINS: tuple[tuple[str, str], ...] = (("claude", "Claude Code"), ("codex", "Codex"))
_UA_PREFIXES_LATE: tuple[tuple[str, str], ...] = (
    ("zed/", "Zed"),
    ("githubcopilotchat/", "GitHub Copilot (VS Code)"),
    ("copilot/", "GitHub Copilot (CLI)"),
    ("kilo-code/", "Kilo Code"),
    ("roo-code/", "Roo Code"),
    ("coder-agents/", "Coder Agents"),
    ("charm crush/", "Charm Crush"),
    ("charm-crush/", "Charm Crush"),
    ("geminicli", "Gemini CLI"),  # `GeminiCLI/<version>/<model> (...)`, `GeminiCLI-tui/...`
)
_ORIGINATORS = {"kilo-code": "Kilo Code", "roo-code": "Roo Code"}
_UA_PREFIXES_LAST: tuple[tuple[str, str], ...] = (
    ("opencode/", "OpenCode"),
    ("junie:", "Junie"),
    ("google-genai-sdk/", "Google GenAI SDK"),  # Python's `google-genai`; Node's is `@google/genai`'s
)

# Session headers per client, in order of preference.
_SESSION_HEADERS: dict[str, tuple[str, ...]] = {
    "Claude Code": ("x-claude-code-session-id",),
    "Codex": ("session-id", "session_id"),
    "Mux": ("x-mux-workspace-id",),
    "Xum": ("x-mux-workspace-id",),
    "GitHub Copilot (VS Code)": ("x-interaction-id",),
    "GitHub Copilot (CLI)": ("x-client-session-id",),
    "Kilo Code": ("x-kilocode-taskid",),
    "Coder Agents": ("x-coder-chat-id",),
    "OpenCode": ("x-opencode-session", "x-session-affinity", "x-session-id"),
}
_LEGACY_CLAUDE_USER_ID = re.compile(r"_session_(.+)$")
_MAX_SESSION_ID = 256


def detect_client(headers: Mapping[str, str]) -> str:
    ua = headers.get("user-agent", "").lower()
    originator = headers.get("originator", "").lower()
    for prefix, name in _UA_PREFIXES:
        if ua.startswith(prefix):
            return name
    for needle, name in _UA_CONTAINS:
        if needle in ua:
            return name
    for prefix, name in _UA_PREFIXES_LATE:
        if ua.startswith(prefix):
            return name
    if originator in _ORIGINATORS:
        return _ORIGINATORS[originator]
    if "x-cursor-client-version" in headers:
        return "Cursor"
    for prefix, name in _UA_PREFIXES_LAST:
        if ua.startswith(prefix):
            return name
    return UNKNOWN


def client_session_id(client: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    for name in _SESSION_HEADERS.get(client, ()):
        if value := _clean(headers.get(name)):
            return value
    if client == "Claude Code":
        return _claude_metadata_session(body)
    if client == "Gemini CLI":  # logged in with Google: Code Assist's envelope carries it (API-key calls do not)
        request = body.get("request")
        return _clean(request.get("session_id")) if isinstance(request, dict) else None
    return None


def _claude_metadata_session(body: Mapping[str, Any]) -> str | None:
    """Claude Code's `metadata.user_id`: a JSON-encoded object with `session_id`, or the legacy
    `user_<hash>_account_<id>_session_<uuid>` string."""
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return None
    if user_id.lstrip().startswith("{"):
        try:
            decoded = json.loads(user_id)
        except ValueError:
            return None
        return _clean(decoded.get("session_id")) if isinstance(decoded, dict) else None
    match = _LEGACY_CLAUDE_USER_ID.search(user_id)
    return _clean(match.group(1)) if match else None


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:_MAX_SESSION_ID] or None
