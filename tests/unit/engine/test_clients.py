"""Client detection and client session ids (reference §7.4, §7.5)."""

import json

import pytest

from addon.engine.clients import UNKNOWN, client_session_id, detect_client


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"user-agent": "claude-cli/2.1.329 (external, sdk-cli)"}, "Claude Code"),
        ({"user-agent": "claude-code/2.1.329"}, "Claude Code"),
        ({"user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.169.0)"}, "Codex"),
        ({"user-agent": "codex_cli_rs/0.42.0 (Mac OS 15.0.0; arm64)"}, "Codex"),
        ({"user-agent": "opencode/1.18.33 ai-sdk/provider-utils/4.0.46 runtime/bun/1.3.14"}, "OpenCode"),
        ({"user-agent": "mux/1.0.0"}, "Mux"),
        ({"user-agent": "xum/1.0.0"}, "Xum"),
        ({"user-agent": "mux/1.0.0 (claude)"}, "Mux"),  # first match wins
        ({"user-agent": "Zed/0.201.3 (macos; aarch64)"}, "Zed"),
        ({"user-agent": "GitHubCopilotChat/0.31.0"}, "GitHub Copilot (VS Code)"),
        ({"user-agent": "copilot/1.0.2 (linux v22)"}, "GitHub Copilot (CLI)"),
        ({"user-agent": "kilo-code/4.80.0"}, "Kilo Code"),
        ({"user-agent": "roo-code/3.25.0"}, "Roo Code"),
        ({"user-agent": "OpenAI/JS 5.10.1", "originator": "kilo-code"}, "Kilo Code"),
        ({"user-agent": "OpenAI/JS 5.10.1", "originator": "Roo-Code"}, "Roo Code"),
        ({"user-agent": "coder-agents/2.0"}, "Coder Agents"),
        ({"user-agent": "Charm Crush/0.7.1"}, "Charm Crush"),
        ({"user-agent": "charm-crush/0.7.1"}, "Charm Crush"),
        ({"user-agent": "connect-es/1.6.1", "x-cursor-client-version": "1.4.5"}, "Cursor"),
        ({"user-agent": "junie:1.0.0"}, "Junie"),
        ({"user-agent": "GeminiCLI/0.61.0/gemini-2.5-pro (linux; x64)"}, "Gemini CLI"),
        ({"user-agent": "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal)"}, "Gemini CLI"),
        ({"user-agent": "google-genai-sdk/3.6.1 gl-python/3.13.0"}, "Google GenAI SDK"),
        ({"user-agent": "Anthropic/Python 1.17.0"}, UNKNOWN),
        ({"user-agent": "OpenAI/Python 3.52.0"}, UNKNOWN),
        ({"user-agent": "python-httpx/0.28.1", "originator": "codex_exec"}, UNKNOWN),
        ({"user-agent": "curl/8.5.0"}, UNKNOWN),
        ({}, UNKNOWN),
    ],
)
def test_detect_client(headers: dict[str, str], expected: str) -> None:
    assert detect_client(headers) == expected


def test_unknown_is_the_reference_spelling() -> None:
    assert UNKNOWN == "Unknown"


CLAUDE_SESSION = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
LEGACY_USER_ID = f"user_{'ab' * 32}_account_1234abcd-0000-4000-8000-000000000000_session_{CLAUDE_SESSION}"
JSON_USER_ID = json.dumps({"device_id": "dev", "account_uuid": "acc", "session_id": "sess-json-1"})


@pytest.mark.parametrize(
    ("client", "headers", "body", "expected"),
    [
        (
            "Claude Code",
            {"x-claude-code-session-id": "sess-header"},
            {"metadata": {"user_id": JSON_USER_ID}},
            "sess-header",
        ),
        ("Claude Code", {"x-claude-code-session-id": "  padded  "}, {}, "padded"),
        ("Claude Code", {"x-claude-code-session-id": "   "}, {"metadata": {"user_id": JSON_USER_ID}}, "sess-json-1"),
        ("Claude Code", {}, {"metadata": {"user_id": JSON_USER_ID}}, "sess-json-1"),
        ("Claude Code", {}, {"metadata": {"user_id": LEGACY_USER_ID}}, CLAUDE_SESSION),
        ("Claude Code", {}, {"metadata": {"user_id": json.dumps({"session_id": "  "})}}, None),
        ("Claude Code", {}, {"metadata": {"user_id": json.dumps({"session_id": 5})}}, None),
        ("Claude Code", {}, {"metadata": {"user_id": json.dumps(["session_id"])}}, None),
        ("Claude Code", {}, {"metadata": {"user_id": "{not json"}}, None),
        ("Claude Code", {}, {"metadata": {"user_id": "user_abc_account_def"}}, None),
        ("Claude Code", {}, {"metadata": {"user_id": 42}}, None),
        ("Claude Code", {}, {"metadata": "user_id"}, None),
        ("Claude Code", {}, {}, None),
        ("Codex", {"session-id": "dash", "session_id": "underscore"}, {}, "dash"),
        ("Codex", {"session-id": " ", "session_id": " underscore "}, {}, "underscore"),
        ("Codex", {"session_id": "underscore"}, {}, "underscore"),
        ("Codex", {"thread-id": "t"}, {"metadata": {"user_id": JSON_USER_ID}}, None),
        ("Mux", {"x-mux-workspace-id": "mux-workspace-321"}, {}, "mux-workspace-321"),
        ("GitHub Copilot (VS Code)", {"x-interaction-id": "int-1", "vscode-sessionid": "win"}, {}, "int-1"),
        ("GitHub Copilot (CLI)", {"x-client-session-id": "cli-1"}, {}, "cli-1"),
        ("Kilo Code", {"x-kilocode-taskid": "task-1"}, {}, "task-1"),
        ("Coder Agents", {"x-coder-chat-id": "chat-1"}, {}, "chat-1"),
        ("OpenCode", {"x-opencode-session": "oc", "x-session-affinity": "ses_aff"}, {}, "oc"),
        ("OpenCode", {"x-session-affinity": "ses_aff", "x-session-id": "sid"}, {}, "ses_aff"),
        ("OpenCode", {"x-session-id": "sid"}, {}, "sid"),
        ("Gemini CLI", {}, {"model": "m", "request": {"contents": [], "session_id": "gcli-1"}}, "gcli-1"),
        ("Gemini CLI", {}, {"contents": [], "session_id": "not-on-the-wire"}, None),  # API-key calls carry none
        ("Zed", {"x-claude-code-session-id": "x", "session-id": "y"}, {}, None),
        ("Cursor", {"x-session-id": "x"}, {}, None),
        (UNKNOWN, {"x-claude-code-session-id": "x"}, {"metadata": {"user_id": JSON_USER_ID}}, None),
    ],
)
def test_client_session_id(client: str, headers: dict[str, str], body: dict, expected: str | None) -> None:
    assert client_session_id(client, headers, body) == expected


def test_session_id_is_capped() -> None:
    value = client_session_id("Codex", {"session-id": "x" * 1000}, {})
    assert value is not None and 0 < len(value) <= 256
