"""Attribution from each client's own context, on the requests the real clients sent through the proxy
(tests/fixtures/clients/, captured from Claude Code 2.1.329, Codex 0.169.0 and opencode 1.18.33), and on what a
client that changes its format might send instead."""

import json
from pathlib import Path
from typing import Any

import pytest

from addon.engine.attribution import Attribution, SubAgentNames, attribute, remote_name
from addon.engine.clients import detect_client

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "clients"
WIDGETS = "/tmp/work/widgets"


def captured(name: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return detect_client(data["headers"]), data["headers"], data["body"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("claude-code-main-1", Attribution(WIDGETS, "widgets", "feature/ledger", "main")),
        ("claude-code-main-2", Attribution(WIDGETS, "widgets", "feature/ledger", "main")),
        ("claude-code-subagent-1", Attribution(WIDGETS, "widgets", "feature/ledger", "general-purpose")),
        ("claude-code-subagent-custom-1", Attribution(WIDGETS, "widgets", "feature/ledger", "custom")),
        ("codex-1", Attribution(WIDGETS, "github.com/acme/widgets", None, "main")),
        ("codex-codemode-1", Attribution(WIDGETS, "github.com/acme/widgets", None, "main")),
        ("codex-subagent-1", Attribution(WIDGETS, "github.com/acme/widgets", None, "branch_finder")),
        ("codex-subagent-v1-1", Attribution(WIDGETS, "github.com/acme/widgets", None, "collab_spawn")),
        ("codex-main-after-subagent", Attribution(WIDGETS, "github.com/acme/widgets", None, "main")),
        ("opencode-main", Attribution(WIDGETS, "widgets", None, "main")),
        ("opencode-subagent-1", Attribution(WIDGETS, "widgets", None, "subagent")),
        ("opencode-title", Attribution(None, None, None, "title")),
    ],
)
def test_each_clients_real_requests(name: str, expected: Attribution) -> None:
    assert attribute(*captured(name)) == expected


def test_claude_code_in_base_url_mode_tells_a_subagent_by_its_billing_block() -> None:
    client, headers, body = captured("claude-code-subagent-1")
    quiet = {k: v for k, v in headers.items() if not k.startswith(("x-claude-code-agent", "x-claude-code-request"))}
    assert attribute(client, quiet, body).agent == "subagent"
    client, headers, body = captured("claude-code-main-1")
    quiet = {k: v for k, v in headers.items() if not k.startswith("x-claude-code-request")}
    assert attribute(client, quiet, body).agent == "main"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"system": 7, "messages": "nope"},
        {"system": [None, {"text": 3}], "messages": [None, {"content": [{"text": None}]}]},
        {"input": [{"content": {"weird": True}}], "instructions": ["x"]},
        {"messages": [{"role": "user", "content": "Working directory:    "}]},
    ],
)
def test_a_format_it_does_not_know_gives_empty_fields(body: dict[str, Any]) -> None:
    for client in ("Claude Code", "Codex", "OpenCode", "Unknown"):
        found = attribute(client, {"x-codex-turn-metadata": "{not json"}, body)
        assert found.working_directory is None and found.repository is None and found.branch is None


def test_a_codex_turn_metadata_of_another_shape_gives_no_remote() -> None:
    client, headers, body = captured("codex-1")
    for metadata in ("[]", '{"workspaces": []}', '{"workspaces": {"/a": 1, "/b": 2}}', '{"agent_name": 5}'):
        found = attribute(client, {**headers, "x-codex-turn-metadata": metadata}, body)
        assert (found.repository, found.agent) == ("widgets", "main")  # the directory's name, and the main thread


def test_an_unexpected_error_inside_a_parser_never_fails_the_request() -> None:
    class Hostile(dict):  # type: ignore[type-arg]
        def get(self, *args: Any) -> Any:
            raise RuntimeError("boom")

    assert attribute("Claude Code", {}, Hostile()) == Attribution()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/widgets.git", "github.com/acme/widgets"),
        ("https://user:token@gitlab.example.com/group/sub/app", "gitlab.example.com/group/sub/app"),
        ("git@github.com:acme/widgets.git", "github.com/acme/widgets"),
        ("ssh://git@github.com/acme/widgets", "github.com/acme/widgets"),
        ("/srv/git/widgets.git", "srv/git/widgets"),
        ("", None),
    ],
)
def test_a_remote_is_named_host_owner_name_without_credentials(url: str, expected: str | None) -> None:
    assert remote_name(url) == expected


def test_a_custom_subagent_is_named_by_the_agent_call_it_follows() -> None:
    names = SubAgentNames()
    names.called("s1", '{"description": "audit", "subagent_type": "ledger-auditor"}')
    assert names.name("s1", "a1", "custom") == "ledger-auditor"
    assert names.name("s1", "a1", "custom") == "ledger-auditor"  # its later requests, by its agent id
    assert names.name("s1", "a2", "custom") == "custom"  # no call left to name it
    assert names.name("s2", "a1", "custom") == "custom"  # another session's


def test_a_custom_subagent_stays_custom_when_its_name_is_not_certain() -> None:
    names = SubAgentNames()
    names.called("s", '{"subagent_type": "ledger-auditor"}')
    names.called("s", '{"subagent_type": "doc-writer"}')
    assert names.name("s", "a1", "custom") == "custom"  # two custom calls pending: which is which?
    names = SubAgentNames()
    names.called("s", '{"subagent_type": "Explore"}')
    names.called("s", '{"subagent_type": "ledger-auditor"}')
    assert names.name("s", "e1", "Explore") == "Explore"  # the built-in one takes its call
    assert names.name("s", "c1", "custom") == "ledger-auditor"
    for arguments in ("not json", "[]", '{"subagent_type": 3}', '{"subagent_type": " "}'):
        names.called("t", arguments)
    assert names.name("t", "x", "custom") == "custom"
    assert names.name(None, "x", "custom") == "custom" and names.name("t", None, None) is None


def test_the_sessions_remembered_are_bounded() -> None:
    names = SubAgentNames(max_sessions=2)
    for session in ("a", "b", "c"):
        names.called(session, '{"subagent_type": "auditor"}')
    assert names.name("a", "x", "custom") == "custom"  # the oldest session was let go
    assert names.name("c", "x", "custom") == "auditor"
