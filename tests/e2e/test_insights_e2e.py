"""The insights end to end, with the real clients through a real mitmdump, read back with the real `aibridge`
command: the action ledger (Claude Code's own Bash and Read run for real in a git repository on a named branch,
one call made by a sub-agent started through its Agent tool; Codex's exec_command), attribution (repository,
branch, agent), and prompt-cache busts the mock provider is scripted to report: after Codex's system prompt
changes (located there), and with nothing changed in Claude Code's prefix but what must not count.
"""

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_clients_e2e import CLAUDE_QUIET, CODEX_CONFIG, OPENAI_KEY
from tests.support.clients import binary, client_env, run
from tests.support.mock_upstream import Answer, MockUpstream, Seen
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import anthropic_events, responses_call_events, responses_events

pytestmark = pytest.mark.e2e

AIBRIDGE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aibridge"
SUBTASK = "SUBTASK-7f3"
AGENT_INPUT = {
    "description": "Find the branch",
    "prompt": f"{SUBTASK}: run `git branch --show-current` and report the branch name.",
    "subagent_type": "general-purpose",
    "run_in_background": False,
}


def git_repository(root: Path) -> Path:
    """A throwaway repository `widgets` on branch feature/ledger, one commit, a remote, an untracked file."""
    repo = root / "widgets"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# widgets\n\nA ledger of widgets.\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(root),
    }
    for args in (
        ["init", "-q", "-b", "feature/ledger"],
        ["add", "."],
        ["commit", "-q", "-m", "Start the widget ledger"],
        ["remote", "add", "origin", "https://github.com/acme/widgets.git"],
    ):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, timeout=30)
    (repo / "NOTES.md").write_text("uncommitted notes\n")
    return repo


def aibridge(db: Path, *args: str) -> Any:
    done = subprocess.run(
        [str(AIBRIDGE), *args, "--json", "--db", str(db)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def messages_calls(mock: MockUpstream) -> list[Seen]:
    return [r for r in mock.requests if r.method == "POST" and r.path.split("?")[0] == "/v1/messages"]


def tool_results(body: dict[str, Any]) -> set[str]:
    last = body["messages"][-1] if body.get("messages") else {}
    parts = [m for m in body.get("messages", []) if m.get("role") == "user"][-1:] or [last]
    content = parts[0].get("content") if parts else []
    return {b["tool_use_id"] for b in content if isinstance(b, dict) and b.get("type") == "tool_result"}


def first_user_text(body: dict[str, Any]) -> str:
    content = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content if isinstance(b, dict))


def sse(*tools: tuple[str, str, dict[str, Any]], text: str = "", msg_id: str = "msg_1", **usage: int) -> Answer:
    start = {"input_tokens": 20, "output_tokens": 1, **usage}
    return Answer.sse(anthropic_events([text] if text else [], msg_id=msg_id, tools=list(tools), start_usage=start))


def test_claude_codes_actions_with_a_subagent_and_its_repository_branch_and_agents(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    repo = git_repository(tmp_path)

    def respond(seen: Seen) -> Answer:
        if seen.method != "POST" or seen.path.split("?")[0] != "/v1/messages":
            return Answer.json({})  # Claude Code's side calls
        body = seen.json()
        answered = tool_results(body)
        if "toolu_read" in answered:
            return sse(text="Done: the branch is feature/ledger.", msg_id="msg_main_3")
        if "toolu_agent" in answered:
            readme = ("toolu_read", "Read", {"file_path": str(repo / "README.md")})
            missing = ("toolu_cat", "Bash", {"command": "cat missing-file.txt", "description": "Read a missing file"})
            return sse(readme, missing, msg_id="msg_main_2")
        if "toolu_branch" in answered:
            return sse(text="The current branch is feature/ledger.", msg_id="msg_sub_2")
        if SUBTASK in first_user_text(body):
            branch = ("toolu_branch", "Bash", {"command": "git branch --show-current", "description": "The branch"})
            return sse(branch, msg_id="msg_sub_1")
        if "which branch" in first_user_text(body):
            return sse(("toolu_agent", "Agent", AGENT_INPUT), msg_id="msg_main_1")
        return sse(text="ok", msg_id="msg_side")

    mock.responder = respond
    proxy = start_proxy(provider_config(mock.url))
    env = client_env(proxy, tmp_path / "home", **CLAUDE_QUIET)
    prompt = "Use a sub-agent to find which branch this repository is on, then read README.md."
    claude = [str(binary("claude")), "-p", prompt, "--output-format", "json", "--allowedTools", "Bash,Read,Agent"]
    done = run(claude, env, repo)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["result"] == "Done: the branch is feature/ledger."
    assert proxy.stop() == 0

    actions = aibridge(proxy.db_path, "actions", result["session_id"])
    got = [(a["tool"], a["agent"], a["outcome"]) for a in actions["actions"]]
    assert got == [
        ("Agent", "main", "ok"),
        ("Bash", "general-purpose", "ok"),  # the sub-agent's call, run by Claude Code for real
        ("Read", "main", "ok"),
        ("Bash", "main", "error"),  # cat of a file that is not there: Claude Code says is_error
    ]
    agent, branch, read, cat = actions["actions"]
    assert branch["result_excerpt"] == "feature/ledger"  # what `git branch --show-current` printed
    assert "A ledger of widgets." in read["result_excerpt"] and "No such file" in cat["result_excerpt"]
    assert json.loads(agent["arguments"])["subagent_type"] == "general-purpose"
    for action in actions["actions"]:
        assert action["result_bytes"] > 0 and action["duration_ms"] > 0, action
        assert action["result_interception_id"] != action["interception_id"]  # a later request brought it
    # the Agent call waited for the whole sub-agent: longer than the sub-agent's own Bash call
    assert agent["duration_ms"] > branch["duration_ms"]
    assert {k: v for k, v in actions["outcomes"].items() if v} == {"ok": 3, "error": 1}

    rows = aibridge(proxy.db_path, "interceptions", "--session", result["session_id"])["interceptions"]
    assert {(i["working_directory"], i["repository"], i["branch"]) for i in rows} == {
        (str(repo), "widgets", "feature/ledger")  # Claude Code sends no remote: the directory's name
    }
    assert sorted(i["agent"] for i in rows) == ["general-purpose"] * 2 + ["main"] * 3
    by_agent = {r["key"]: r["interceptions"] for r in aibridge(proxy.db_path, "usage", "--by", "agent")["rows"]}
    assert by_agent == {"main": 3, "general-purpose": 2}
    assert aibridge(proxy.db_path, "sessions", "--branch", "feature/ledger")["sessions"][0]["agents"] == [
        "general-purpose",
        "main",
    ]


def test_claude_codes_cache_written_again_where_a_read_was_due_is_a_bust_priced_and_not_blamed_on_the_prefix(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Claude Code asks twice in one session (`--resume`); the provider (scripted) writes the whole prefix again
    where it had cached it a moment before. Nothing in the prefix changed but what must not count: the billing
    block new with every prompt, and the cache breakpoint moving to the latest message. (Claude Code keeps a
    session's system prompt: `--append-system-prompt` or `--system-prompt` on `--resume` are not sent.)"""
    repo = git_repository(tmp_path)

    def respond(seen: Seen) -> Answer:
        if seen.method != "POST" or seen.path.split("?")[0] != "/v1/messages":
            return Answer.json({})
        return sse(text="feature/ledger.", cache_creation_input_tokens=6000, cache_read_input_tokens=0)

    mock.responder = respond
    proxy = start_proxy(provider_config(mock.url))
    env = client_env(proxy, tmp_path / "home", **CLAUDE_QUIET)
    session = str(uuid.uuid4())
    base = [str(binary("claude")), "-p", "--model", "claude-sonnet-4-5", "--output-format", "json"]
    first = run([*base, "--session-id", session, "which branch is this?"], env, repo)
    assert first.returncode == 0, first.stderr
    second = run([*base, "--resume", session, "and now?"], env, repo)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["session_id"] == session
    assert proxy.stop() == 0

    before, after = (c.json() for c in messages_calls(mock))
    assert before["system"][0] != after["system"][0]  # the billing block changed, as it does every prompt
    report = aibridge(proxy.db_path, "cache")
    assert (report["totals"]["busts"], report["totals"]["lost_tokens"]) == (1, 6000)
    [bust] = report["busts"]
    assert (bust["session_id"], bust["model"], bust["agent"], bust["location"]) == (
        session,
        "claude-sonnet-4-5",
        "main",
        "unchanged",  # evicted, not invalidated: the old prefix is all still there
    )
    assert (bust["expected_tokens"], bust["read_tokens"], bust["lost_tokens"]) == (6000, 0, 6000)
    # written again at claude-sonnet-4-5's $3.75/M instead of read at $0.30/M
    assert bust["cost_micros"] == 6000 * 375 // 100 - 6000 * 30 // 100
    [row] = report["rows"]
    assert (row["key"], row["busts"], row["lost_micros"], row["cache_hit_ratio"]) == (
        session,
        1,
        bust["cost_micros"],
        0.0,
    )
    by_client = aibridge(proxy.db_path, "cache", "--by", "client")["rows"]
    assert [(r["key"], r["busts"]) for r in by_client] == [("Claude Code", 1)]


def codex_home(proxy: Proxy, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex/config.toml").write_text(CODEX_CONFIG)
    return client_env(proxy, home, CODEX_HOME=str(home / ".codex"), OPENAI_API_KEY=OPENAI_KEY)


def test_codexs_cache_missed_after_its_system_prompt_changed_is_a_bust_located_there_and_priced(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Codex resumes a thread twice, the second time with other base instructions (`-c instructions=...`: its
    system prompt, the first input item). The provider (scripted) read 5,000 cached tokens on the first resume
    and none after the change."""
    repo = git_repository(tmp_path)
    changed = "Answer in one short sentence."
    turns: list[dict[str, Any]] = []

    def respond(seen: Seen) -> Answer:
        if seen.method != "POST" or seen.path.split("?")[0] != "/v1/responses":
            return Answer.json({})
        turns.append(body := seen.json())
        cached = 0 if len(turns) == 1 or changed in json.dumps(body["input"][0]) else 5000
        usage = {
            "input_tokens": 5200,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 5204,
        }
        return Answer.sse(responses_events("ok", response_id=f"resp_{len(turns)}", model="gpt-5", usage=usage))

    mock.responder = respond
    mock.websocket_status = 426
    proxy = start_proxy(provider_config(mock.url))
    env = codex_home(proxy, tmp_path)
    codex = [str(binary("codex")), "exec", "--skip-git-repo-check", "--json"]
    done = run([*codex, "which branch is this?"], env, repo)
    assert done.returncode == 0, done.stderr
    thread = next(json.loads(line)["thread_id"] for line in done.stdout.splitlines() if "thread.started" in line)
    for extra in ([], ["-c", f'instructions="{changed}"']):
        done = run([*codex, "resume", thread, *extra, "and now?"], env, repo)
        assert done.returncode == 0, done.stderr
    assert proxy.stop() == 0

    assert len(turns) == 3 and changed in json.dumps(turns[2]["input"][0])
    [bust] = aibridge(proxy.db_path, "cache", "--client", "Codex")["busts"]
    assert (bust["location"], bust["expected_tokens"], bust["read_tokens"]) == ("input[0]", 5000, 0)
    assert (bust["lost_tokens"], bust["rewritten_tokens"], bust["agent"]) == (5000, 0, "main")
    # sent as plain input at gpt-5's $1.25/M instead of read at $0.125/M
    assert bust["cost_micros"] == 5000 * 125 // 100 - 5000 * 125 // 1000


def test_codex_pairs_its_exec_calls_with_their_outputs_and_names_its_remote(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    repo = git_repository(tmp_path)
    calls = [
        ("call_status", "exec_command", {"cmd": "git status"}),
        ("call_missing", "exec_command", {"cmd": "cat missing-file.txt"}),
    ]

    def respond(seen: Seen) -> Answer:
        if seen.method != "POST" or seen.path.split("?")[0] != "/v1/responses":
            return Answer.json({})
        kinds = {i.get("type") for i in seen.json().get("input", []) if isinstance(i, dict)}
        if "function_call_output" in kinds:
            return Answer.sse(responses_events("One untracked file.", response_id="resp_2"))
        return Answer.sse(responses_call_events(calls, response_id="resp_1"))

    mock.responder = respond
    mock.websocket_status = 426  # Codex falls back to SSE at once
    proxy = start_proxy(provider_config(mock.url))
    env = codex_home(proxy, tmp_path)
    done = run([str(binary("codex")), "exec", "--skip-git-repo-check", "--json", "What is in git status?"], env, repo)
    assert done.returncode == 0, done.stderr
    assert proxy.stop() == 0

    [session] = [s["session_id"] for s in aibridge(proxy.db_path, "sessions", "--client", "Codex")["sessions"]]
    actions = aibridge(proxy.db_path, "actions", session)["actions"]
    assert [(a["tool"], a["call_id"], a["outcome"]) for a in actions] == [
        ("exec_command", "call_status", "ok"),  # Codex ran both for real and said how they exited
        ("exec_command", "call_missing", "error"),
    ]
    assert "Process exited with code 0" in actions[0]["result_excerpt"]
    assert all(a["duration_ms"] > 0 and a["result_bytes"] > 0 and a["agent"] == "main" for a in actions)
    rows = aibridge(proxy.db_path, "interceptions", "--repo", "github.com/acme/widgets")["interceptions"]
    assert len(rows) == 2 and {(i["working_directory"], i["branch"]) for i in rows} == {(str(repo), None)}


def test_codexs_subagent_is_attributed_and_its_spawn_and_wait_are_paired(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """Codex spawns a sub-agent (its multi_agent_v1 tools), the sub-agent answers, the main thread waits for it."""
    repo = git_repository(tmp_path)
    task = {"message": f"{SUBTASK}: run git branch --show-current and report the branch."}
    turns: list[str] = []

    def respond(seen: Seen) -> Answer:
        if seen.method != "POST" or seen.path.split("?")[0] != "/v1/responses":
            return Answer.json({})
        items = seen.json().get("input", [])
        outputs = {
            i.get("call_id"): i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        }
        n = len(turns) + 1
        if SUBTASK in json.dumps(items) and "call_spawn" not in outputs and "call_spawn" not in json.dumps(items):
            turns.append("sub")
            return Answer.sse(responses_events("The branch is feature/ledger.", response_id=f"resp_s{n}"))
        if "call_wait" in outputs or len(turns) > 6:
            turns.append("done")
            return Answer.sse(responses_events("All done.", response_id=f"resp_m{n}"))
        if "call_spawn" in outputs:
            output = outputs["call_spawn"].get("output")
            spawned = json.loads(output if isinstance(output, str) else json.dumps(output))
            wait = ("call_wait", "wait_agent", {"targets": [spawned.get("agent_id")], "timeout_ms": 10000})
            turns.append("wait")
            return Answer.sse(responses_call_events([wait], response_id=f"resp_m{n}", namespace="multi_agent_v1"))
        turns.append("spawn")
        spawn = ("call_spawn", "spawn_agent", task)
        return Answer.sse(responses_call_events([spawn], response_id=f"resp_m{n}", namespace="multi_agent_v1"))

    mock.responder = respond
    mock.websocket_status = 426
    proxy = start_proxy(provider_config(mock.url))
    env = codex_home(proxy, tmp_path)
    codex = [str(binary("codex")), "exec", "--skip-git-repo-check", "--json", "Spawn a sub-agent to find the branch."]
    done = run(codex, env, repo)
    assert done.returncode == 0, done.stderr
    assert proxy.stop() == 0
    assert (turns[0], sorted(turns[1:3]), turns[3:]) == ("spawn", ["sub", "wait"], ["done"]), turns  # sub and wait race

    [session] = [s["session_id"] for s in aibridge(proxy.db_path, "sessions", "--client", "Codex")["sessions"]]
    rows = aibridge(proxy.db_path, "interceptions", "--session", session)["interceptions"]
    assert sorted(i["agent"] for i in rows) == ["collab_spawn", "main", "main", "main"]  # one session, two agents
    assert {i["repository"] for i in rows} == {"github.com/acme/widgets"}
    actions = aibridge(proxy.db_path, "actions", session)["actions"]
    assert [(a["tool"], a["agent"], a["outcome"]) for a in actions] == [
        ("spawn_agent", "main", "answered"),  # Codex's own tools state no exit code
        ("wait_agent", "main", "answered"),
    ]
    assert all(a["duration_ms"] > 0 and a["result_bytes"] > 0 for a in actions)
    by_agent = {r["key"]: r["interceptions"] for r in aibridge(proxy.db_path, "usage", "--by", "agent")["rows"]}
    assert by_agent == {"main": 3, "collab_spawn": 1}
