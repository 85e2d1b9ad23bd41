"""`aibridge web` in a real browser (headless Chromium through Selenium), on an audit filled by real traffic: the
official SDKs through a real mitmdump (users, a budget, an MCP server whose tool the bridge runs) to the mock
provider. The view reads the proxy's live endpoint while the proxy runs.

With AIBRIDGE_SCREENSHOTS=<dir> the tests leave their screenshots there (the README's come from
`AIBRIDGE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/e2e/test_web_e2e.py`)."""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from addon.config import hash_token
from tests.support.browser import Browser
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import ROOT, Proxy
from tests.support.scenarios import anthropic_message, chat_completion

pytestmark = pytest.mark.e2e

AIBRIDGE = Path(sys.executable).parent / "aibridge"
TOKENS = {"alice": "aib_web_alice_0123456789abcdef", "bob": "aib_web_bob_0123456789abcdef"}
CLAUDE = {"User-Agent": "claude-cli/2.1.329 (external, sdk-cli)", "X-Claude-Code-Session-Id": "sess-web-claude"}
CODEX = {"User-Agent": "codex_cli_rs/0.50.0 (Linux; x86_64)", "session-id": "sess-web-codex"}
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> what does this do?'
READ_TOOL = {"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}
SHOTS = os.environ.get("AIBRIDGE_SCREENSHOTS")


def mcp_server() -> str:
    return (
        "[mcp_servers.test]\n"
        f"command = {json.dumps(sys.executable)}\n"
        'args = ["-m", "tests.support.mcp_server", "--transport", "stdio"]\n'
        f'env = {{ "PYTHONPATH" = {json.dumps(str(ROOT))} }}\n'
    )


def config(mock_url: str) -> str:
    users = "".join(f'[users.{name}]\ntoken = "{hash_token(token)}"\n\n' for name, token in TOKENS.items())
    providers = (
        f'[providers.anthropic]\nupstream = "{mock_url}"\nkey = "sk-ant-api03-central-0123456789"\n\n'
        f'[providers.openai]\nupstream = "{mock_url}"\nkey = "sk-proj-central-0123456789"\n\n'
    )
    return providers + users + "[budgets]\nusers = { alice = 50 }\n\n" + mcp_server()


@dataclass
class World:
    proxy: Proxy
    mock: MockUpstream
    config: Path
    claude_session: str = CLAUDE["X-Claude-Code-Session-Id"]
    codex_session: str = CODEX["session-id"]

    def http(self, user: str) -> httpx2.Client:
        trust = ssl.create_default_context(cafile=self.proxy.env["SSL_CERT_FILE"])
        port = self.proxy.url.rsplit(":", 1)[1]
        return httpx2.Client(proxy=f"http://{user}:{TOKENS[user]}@127.0.0.1:{port}", verify=trust, timeout=60)

    def claude(self, user: str, messages: list[dict], model: str = "claude-sonnet-4-5", **kw: object) -> object:
        with self.http(user) as http:
            sdk = anthropic.Anthropic(api_key=TOKENS[user], max_retries=0, http_client=http, default_headers=CLAUDE)
            return sdk.messages.create(model=model, max_tokens=512, messages=messages, **kw)  # type: ignore[arg-type]

    def codex(self, user: str, text: str) -> object:
        with self.http(user) as http:
            sdk = openai.OpenAI(api_key=TOKENS[user], max_retries=0, http_client=http, default_headers=CODEX)
            return sdk.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": text}])


def fill(world: World) -> None:
    """Two sessions of real traffic: alice in Claude Code (thinking, a client tool call answered in a second
    turn, an injected tool the bridge runs) and bob in Codex (two prompts, one of them hostile HTML)."""
    mock = world.mock
    usage = {
        "input_tokens": 1200,
        "output_tokens": 80,
        "cache_read_input_tokens": 3000,
        "cache_creation_input_tokens": 400,
    }
    mock.enqueue(
        Answer.json(
            anthropic_message(
                "Let me read it.",
                msg_id="msg_w1",
                thinking="The user wants the config file; I should read it first.",
                tools=[("toolu_read", "Read", {"file_path": "/src/app/config.toml"})],
                usage=usage,
            )
        ),
        Answer.json(
            anthropic_message("", msg_id="msg_w2", tools=[("toolu_echo", "bmcp_test_echo", {"message": "ping"})])
        ),
        Answer.json(anthropic_message("The config sets port 8080; the echo said ping.", msg_id="msg_w3")),
    )
    first = [{"role": "user", "content": "Explain the config file of this project"}]
    world.claude("alice", first, tools=[READ_TOOL])
    follow = [
        *first,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_read", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_read", "content": "port = 8080"}]},
    ]
    world.claude("alice", follow, tools=[READ_TOOL])
    mock.enqueue(
        Answer.json(chat_completion("Use a virtualenv.", usage={"prompt_tokens": 900, "completion_tokens": 40})),
        Answer.json(chat_completion("It is HTML; nothing runs.")),
    )
    world.codex("bob", "How should I install the dependencies?")
    world.codex("bob", HOSTILE)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("web")
    mock = MockUpstream().start()
    proxy = Proxy(tmp, config(mock.url))
    try:
        proxy.start()
        w = World(proxy, mock, proxy.config_path)  # type: ignore[arg-type]
        fill(w)
        yield w
    finally:
        proxy.stop()
        mock.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Web:
    """`aibridge web` as a user starts it."""

    def __init__(self, world: World, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(AIBRIDGE), "web", "--db", str(world.proxy.db_path), "--port", str(self.port), *args]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "AIBRIDGE_WEB_TOKEN"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"aibridge web exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("aibridge web did not listen within 20 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture(scope="module")
def web(world: World) -> Iterator[Web]:
    server = Web(world, "--config", str(world.config))
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path)
    yield b
    b.close()


def shot(browser: Browser, name: str) -> None:
    if SHOTS:
        browser.screenshot(Path(SHOTS) / f"{name}.png")


def csp_violations(browser: Browser) -> list[str]:
    return [m["message"] for m in browser.console() if "Content Security Policy" in m["message"]]


def rows(browser: Browser) -> list[list[str]]:
    return [
        [c.text for c in r.find_elements("css selector", "td")]
        for r in browser.driver.find_elements("css selector", "table.list tbody tr")
    ]


# --- the pages ------------------------------------------------------------------------------------------


def test_sessions_page_lists_both_sessions_and_filters_sorts_searches_and_pages(
    world: World, web: Web, browser: Browser
) -> None:
    browser.get(web.url + "/sessions")
    table = rows(browser)
    users = [r[2] for r in table]
    assert sorted(users) == ["alice", "bob"]
    assert [r[3] for r in table] == ["Codex", "Claude Code"]  # newest first: bob's came last
    alice = table[1]
    assert alice[4] == "claude-sonnet-4-5" and alice[6] == "2"  # two calls: the second ran an injected tool
    assert alice[11].startswith("$") and "Explain the config file" in alice[12]
    shot(browser, "sessions")

    # the form: a user filter, through the page as a person uses it
    box = browser.driver.find_element("css selector", "form.filters input[name=user]")
    box.send_keys("bob")
    browser.driver.find_element("css selector", "form.filters button[type=submit]").click()
    browser.wait(lambda: "user=bob" in browser.driver.current_url)
    assert [r[2] for r in rows(browser)] == ["bob"]
    pasted = browser.driver.current_url
    browser.get(pasted)  # a stable URL: pasted into a ticket, it shows the same
    assert [r[2] for r in rows(browser)] == ["bob"]

    browser.get(web.url + "/sessions?sort=cost")
    costs = [float(r[11].lstrip("$").split()[0]) for r in rows(browser)]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[1]
    browser.get(web.url + "/sessions?sort=tokens")
    assert [r[2] for r in rows(browser)] == ["alice", "bob"]  # alice's cache reads alone outweigh bob

    browser.get(web.url + "/sessions?q=dependencies")
    assert [r[2] for r in rows(browser)] == ["bob"]
    browser.get(web.url + "/sessions?q=no+such+words+anywhere")
    assert rows(browser) == [] and "No sessions" in browser.text("main")

    browser.get(web.url + "/sessions?limit=1")
    first = rows(browser)
    browser.driver.find_element("css selector", "a[rel=next]").click()
    browser.wait(lambda: "after=" in browser.driver.current_url)
    second = rows(browser)
    assert len(first) == len(second) == 1 and first[0][1] != second[0][1]
    assert {first[0][2], second[0][2]} == {"alice", "bob"}
    assert not browser.driver.find_elements("css selector", "a[rel=next]")
    assert csp_violations(browser) == []


def test_the_session_page_shows_the_timeline_in_order(world: World, web: Web, browser: Browser) -> None:
    browser.get(web.url + "/sessions")
    browser.driver.find_element("css selector", f"a[title='{world.claude_session}']").click()
    browser.wait(lambda: "/sessions/" + world.claude_session in browser.driver.current_url)
    steps = browser.driver.find_elements("css selector", "article.step")
    assert len(steps) == 2  # two interceptions: the second ran the injected tool in its own round
    first, second = steps
    assert "Explain the config file of this project" in first.find_element("css selector", "pre.prompt").text
    assert "read it first" in first.find_element("css selector", "details.thought").get_attribute("textContent")
    client_tool = first.find_element("css selector", "table.tools:not(.injected) tbody tr").text
    assert "Read" in client_tool and "/src/app/config.toml" in client_tool
    injected = second.find_element("css selector", "table.tools.injected tbody tr")
    cells = [c.text for c in injected.find_elements("css selector", "td")]
    assert cells[0] == "echo" and "ping" in cells[2] and cells[3] != "" and cells[5] == ""
    assert len(second.find_elements("css selector", "table.usage tbody tr")) == 2  # the tool round and the last
    usage = [c.text for c in first.find_elements("css selector", "table.usage tbody tr td")]
    assert usage[1:5] == ["1,200", "80", "3,000", "400"]  # cache reads and writes apart
    totals = browser.text("section.summary")
    assert "Cache hit" in totals and "%" in totals and "$" in totals
    assert all(s.find_element("css selector", ".status").text == "completed" for s in steps)
    shot(browser, "session")
    assert csp_violations(browser) == []


def test_the_spend_page_charts_spend_and_the_budget_used(world: World, web: Web, browser: Browser) -> None:
    browser.get(web.url + "/spend")
    budgets = {r[0]: r for r in rows_in(browser, "#budgets")}
    assert budgets["alice"][2] == "$50.0000" and budgets["alice"][1].startswith("$")
    assert browser.driver.find_elements("css selector", "#budgets meter")
    models = [r[0] for r in rows_in(browser, "#by-model")]
    assert set(models) == {"claude-sonnet-4-5", "gpt-4.1"}
    clients = [r[0] for r in rows_in(browser, "#by-client")]
    assert set(clients) == {"Claude Code", "Codex"}
    assert len(browser.driver.find_elements("css selector", "#by-user svg rect.bar")) == 2
    assert browser.driver.find_elements("css selector", "svg.chart.columns rect.bar")
    shot(browser, "spend")
    assert csp_violations(browser) == []


def rows_in(browser: Browser, section: str) -> list[list[str]]:
    return [
        [c.text for c in r.find_elements("css selector", "td")]
        for r in browser.driver.find_elements("css selector", f"{section} table tbody tr")
    ]


def test_the_live_page_shows_a_new_interception_within_seconds(world: World, web: Web, browser: Browser) -> None:
    browser.get(web.url + "/live")
    before = len(rows(browser))
    assert before >= 4
    world.mock.enqueue(Answer.json(anthropic_message("live!", msg_id="msg_live")))
    world.claude("alice", [{"role": "user", "content": "a live one"}], model="claude-haiku-4-5")
    began = time.monotonic()
    row = browser.wait(lambda: next((r for r in rows(browser) if "claude-haiku-4-5" in r), None), within=15)
    assert row[1] == "alice" and row[5] == "completed"
    assert time.monotonic() - began < 15
    assert browser.driver.current_url.endswith("/live")  # no reload
    shot(browser, "live")
    assert csp_violations(browser) == []


def test_a_hostile_prompt_is_text_and_never_runs(world: World, web: Web, browser: Browser) -> None:
    browser.get(f"{web.url}/sessions/{world.codex_session}")
    assert HOSTILE in browser.all_text("pre.prompt")
    assert browser.driver.execute_script("return window.__pwned === undefined")
    assert not browser.driver.find_elements("css selector", "main img")
    browser.get(web.url + "/sessions")
    assert browser.driver.execute_script("return window.__pwned === undefined")
    with urllib.request.urlopen(web.url + "/sessions", timeout=10) as answer:
        policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy and "'unsafe-inline'" not in policy


# --- who may look ---------------------------------------------------------------------------------------


def test_a_non_loopback_bind_without_a_token_does_not_start(world: World) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: were the check missing, the bind would fail anyway
    env = {k: v for k, v in os.environ.items() if k != "AIBRIDGE_WEB_TOKEN"}
    done = subprocess.run(
        [str(AIBRIDGE), "web", "--db", str(world.proxy.db_path), "--host", "192.0.2.1", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode != 0
    assert "--token" in done.stderr and "AIBRIDGE_WEB_TOKEN" in done.stderr


def test_with_a_token_requests_without_it_are_refused(world: World, browser: Browser) -> None:
    secret = "web-secret-7f3a9c"
    server = Web(world, "--token", secret)
    try:
        browser.get(server.url + "/sessions")
        assert "Codex" not in browser.text() and re.search(r"token", browser.text(), re.I)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "/sessions?format=json", timeout=10)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(server.url + "/sessions?token=guess", timeout=10)
        assert wrong.value.code == 403

        browser.get(server.url + f"/sessions?token={secret}")  # the link an operator hands out
        assert secret not in browser.driver.current_url  # dropped from the address bar, a cookie instead
        assert "Codex" in browser.text("table.list")
        browser.get(server.url + "/spend")  # the cookie carries on
        assert "alice" in browser.text("#budgets")
        cookie = browser.driver.get_cookies()[0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and secret not in cookie["value"]

        request = urllib.request.Request(
            server.url + "/sessions?format=json", headers={"Authorization": f"Bearer {secret}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert {s["user"] for s in json.load(answer)["sessions"]} == {"alice", "bob"}
    finally:
        server.stop()
    assert secret not in (server.process.stdout.read() if server.process.stdout else "")
