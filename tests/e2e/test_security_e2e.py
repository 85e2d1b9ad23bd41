"""The security promises of SECURITY.md, through a real mitmdump: private files, no secret anywhere after
traffic, a hop server no client can use, and intercepted routes that go only where the configuration says."""

import base64
import json
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import httpx
import pytest

from addon.cli.users import new_token
from addon.config import hash_token
from tests.e2e.test_more_faults_e2e import tunnel
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, live_interceptions, provider_config
from tests.support.scenarios import anthropic_events, anthropic_message, chat_completion

A_URL = "https://api.anthropic.com/v1/messages"
O_URL = "https://api.openai.com/v1/chat/completions"
CENTRAL_ANTHROPIC = "sk-ant-api03-SECRETCENTRAL-9f8e7d6c5b4a"
CENTRAL_OPENAI = "sk-proj-SECRETCENTRAL-1a2b3c4d5e6f"
BYOK = "sk-ant-api03-SECRETBYOK-77778888999900001111"
WRONG_TOKEN = "aib_SECRETwrongtoken0123456789abcdef"
MESSAGES = [{"role": "user", "content": "hi"}]
A_BODY = {"model": "m", "max_tokens": 8, "messages": MESSAGES}
O_BODY = {"model": "g", "messages": MESSAGES}
AIBRIDGE = Path(sys.executable).parent / "aibridge"


def with_user(proxy_url: str, user: str, token: str) -> str:
    parts = urlsplit(proxy_url)
    return f"{parts.scheme}://{user}:{token}@{parts.netloc}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_what_the_proxy_writes_is_private_but_the_ca_bundle(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.json(anthropic_message("x")))
    anthropic.Anthropic(api_key="sk-ant-x", max_retries=0).messages.create(model="m", max_tokens=8, messages=MESSAGES)
    wal = proxy.db_path.with_name(proxy.db_path.name + ".wal")
    assert wal.exists()  # while running, committed rows sit in the WAL: it holds prompts too
    assert mode(proxy.db_path) == 0o600 and mode(wal) == 0o600
    assert mode(proxy.db_path.with_name(proxy.db_path.name + ".sock")) == 0o600
    assert mode(proxy.confdir / "mitmproxy-ca.pem") == 0o600
    assert mode(proxy.confdir / "mitmproxy-ca-cert.pem") == 0o644
    assert mode(Path(proxy.env["SSL_CERT_FILE"])) == 0o644


def test_no_secret_reaches_the_audit_logs_dumps_errors_cli_or_snapshots(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice, bob = new_token(), new_token()
    config = (
        f'[providers.anthropic]\nupstream = "{mock.url}"\nkey = "env:TEST_CENTRAL_ANTHROPIC"\n'
        f'[providers.openai]\nupstream = "{mock.url}"\nkey = "{CENTRAL_OPENAI}"\nallow_byok = false\n'
        f'[users.alice]\ntoken = "{hash_token(alice)}"\n[users.bob]\ntoken = "env:TEST_BOB"\n'
    )
    dumps = tmp_path / "dumps"
    proxy = start_proxy(
        config,
        args=("--set", f"aibridge_dump_dir={dumps}", "--set", "aibridge_json_logs=true"),
        env={"TEST_CENTRAL_ANTHROPIC": CENTRAL_ANTHROPIC, "TEST_BOB": bob},
    )
    secrets = (alice, bob, CENTRAL_ANTHROPIC, CENTRAL_OPENAI, BYOK, WRONG_TOKEN)
    seen: list[bytes] = []  # everything clients received: statuses, headers, bodies, error messages

    def keep(response: httpx.Response) -> None:
        seen.append(f"{response.status_code} {response.headers}".encode() + response.read())

    mock.enqueue(
        Answer.json(anthropic_message("one")),
        Answer.sse(anthropic_events(["two"])),
        Answer.json(chat_completion("three")),
        Answer.json({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, 401),
    )
    mock.queued_paths = {"/v1/messages", "/v1/chat/completions"}
    as_alice = with_user(proxy.url, "alice", alice)
    with httpx.Client(proxy=as_alice, verify=ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])) as client:
        # A bridge token in oddly cased headers is still taken for a token: the central key goes upstream.
        keep(client.post(A_URL, json=A_BODY, headers={"X-API-KEY": alice}))
        keep(
            client.post(
                A_URL,
                json={"model": "m", "max_tokens": 8, "messages": MESSAGES, "stream": True},
                headers={"X-Api-Key": alice},
            )
        )
        keep(client.post(O_URL, json=O_BODY, headers={"AUTHORIZATION": f"Bearer {alice}"}))
        keep(client.post(A_URL, json=A_BODY, headers={"x-api-key": BYOK}))
        keep(client.post(O_URL, json=O_BODY, headers={"authorization": f"Bearer {BYOK}"}))
        keep(client.post(A_URL, content=b"{broken", headers={"x-api-key": WRONG_TOKEN}))
        keep(client.post(A_URL, json={"model": "m", "messages": MESSAGES}, headers={"x-api-key": bob}))  # not alice's
        keep(client.get("https://api.anthropic.com/v1/models", headers={"x-api-key": alice}))
    for wrong in (with_user(proxy.url, "alice", WRONG_TOKEN), with_user(proxy.url, "bob", alice)):
        with httpx.Client(proxy=wrong, verify=ssl.create_default_context(cafile=proxy.env["SSL_CERT_FILE"])) as client:
            with pytest.raises(httpx.ProxyError) as refused:
                client.post(A_URL, json={}, headers={"x-api-key": alice})
            seen.append(str(refused.value).encode())
    with httpx.Client(proxy=proxy.url) as plain:  # a plain-HTTP proxy request carries the credentials itself
        basic = base64.b64encode(f"alice:{WRONG_TOKEN}".encode()).decode()
        keep(plain.get("http://api.anthropic.com/v1/models", headers={"proxy-authorization": f"Basic {basic}"}))

    # Upstream saw the central keys and the client's own key, never a bridge token.
    upstream_headers = "\n".join(f"{k}: {v}" for r in mock.requests for k, v in r.headers)
    assert CENTRAL_ANTHROPIC in upstream_headers and CENTRAL_OPENAI in upstream_headers
    assert alice not in upstream_headers and bob not in upstream_headers
    assert "proxy-authorization" not in upstream_headers.lower()

    live = live_interceptions(proxy.db_path, at_least=6)
    assert len(json.loads(live)["interceptions"]) >= 6
    snapshot = tmp_path / "snapshot.duckdb"
    subprocess.run([AIBRIDGE, "snapshot", "--db", str(proxy.db_path), str(snapshot)], timeout=60, check=True)
    proxy.stop()

    haystacks = {
        "audit file": proxy.db_path.read_bytes(),
        "snapshot": snapshot.read_bytes(),
        "proxy log": "\n".join(proxy.output).encode(),
        "live CLI answer": live,
        "client responses": b"\n".join(seen),
    }
    for extra in proxy.db_path.parent.glob(proxy.db_path.name + ".*"):
        haystacks[extra.name] = extra.read_bytes()
    dumped = [path for path in dumps.rglob("*") if path.is_file()]
    assert len(dumped) >= 6  # a request and a response for each upstream call at least
    assert all(mode(path) == 0o600 for path in dumped)  # they hold prompts: private like the audit file
    haystacks |= {f"dump {path.name}": path.read_bytes() for path in dumped}
    for where, haystack in haystacks.items():
        for secret in secrets:
            assert secret.encode() not in haystack, f"a secret ({secret[:10]}...) leaked into the {where}"
    statuses = [int(s.split(b" ", 1)[0]) for s in seen if s[:3].isdigit()]
    assert statuses.count(200) == 4 and statuses[-1] == 407 and max(statuses) < 500, statuses


def hop_port(proxy: Proxy) -> int:
    """The local hop server's port: the one mitmdump listens on besides its proxy port."""
    assert proxy.process is not None
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    proxy_port = urlsplit(proxy.url).port
    ports = {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={proxy.process.pid}," in line}
    [port] = ports - {proxy_port}
    return port


def test_no_client_can_use_the_hop_server(mock: MockUpstream, proxy: Proxy) -> None:
    port = hop_port(proxy)
    mock.enqueue(Answer.json(anthropic_message("bridged")))
    anthropic.Anthropic(api_key="sk-ant-x", max_retries=0).messages.create(model="m", max_tokens=8, messages=MESSAGES)
    body = {"model": "m", "max_tokens": 8, "messages": MESSAGES}
    with httpx.Client(proxy=None) as direct, httpx.Client(proxy=proxy.url) as via_proxy:
        for client in (direct, via_proxy):  # straight to it, and as a plain-HTTP request through the proxy
            for path in ("/_aibridge/guessed-token", "/v1/messages", "/_aibridge/"):
                response = client.post(f"http://127.0.0.1:{port}{path}", json=body)
                assert response.status_code == 403 and response.text == "unknown or used token"
    assert len(mock.requests) == 1  # nothing but the real request reached the provider
    proxy.stop()
    assert [r["status"] for r in proxy.rows("SELECT status FROM interceptions")] == ["completed"]


def test_an_intercepted_route_goes_only_to_the_configured_upstream(
    mock: MockUpstream, start_proxy: Callable[..., Proxy]
) -> None:
    """Host headers, absolute-form targets and odd paths on a provider host never pick another destination."""
    elsewhere = MockUpstream().start()
    try:
        proxy = start_proxy(provider_config(mock.url))
        mock.default = Answer.json(anthropic_message("configured"))
        evil = f"127.0.0.1:{elsewhere.port}"
        body = json.dumps({"model": "m", "max_tokens": 8, "messages": MESSAGES}).encode()
        requests = [
            b"POST /v1/messages HTTP/1.1\r\nHost: %b\r\n" % evil.encode(),
            b"POST http://%b/v1/messages HTTP/1.1\r\nHost: %b\r\n" % (evil.encode(), evil.encode()),
            b"POST //%b/v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n" % evil.encode(),
            b"GET /v1/models HTTP/1.1\r\nHost: %b\r\n" % evil.encode(),
            b"GET @%b/v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\n" % evil.encode(),
        ]
        answers = []
        for head in requests:
            with tunnel(proxy) as sock:
                sock.sendall(head + b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body))
                sock.settimeout(5)
                answer = b""
                try:
                    while chunk := sock.recv(65536):
                        answer += chunk
                except TimeoutError:
                    pass
                answers.append(answer)
        assert elsewhere.requests == []
        statuses = [answer.split(b" ", 2)[1] for answer in answers]
        assert statuses == [b"200", b"200", b"200", b"200", b"400"], answers  # the last: a malformed target
        paths = [r.path for r in mock.requests]
        assert paths[:2] == ["/v1/messages"] * 2 and paths[2].endswith(f"/{evil}/v1/messages"), paths
        assert paths[3:] == ["/v1/models"]
        proxy.stop()
        rows = proxy.rows("SELECT status FROM interceptions")
        assert [r["status"] for r in rows] == ["completed"] * 2
    finally:
        elsewhere.stop()


ENV_DUMP = """
import json, os, sys
json.dump({"env": dict(os.environ), "ppid": os.getppid(), "argv": sys.argv}, open(sys.argv[1], "w"))
os.execv(sys.executable, [sys.executable, "-m", "tests.support.mcp_server", "--transport", "stdio"])
"""


def test_mcp_stdio_servers_start_without_a_shell_and_without_the_proxys_secrets(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    dump = tmp_path / "mcp-env.json"
    server = (
        "[mcp_servers.probe]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = {json.dumps(['-c', ENV_DUMP, str(dump), '; echo $ANTHROPIC_API_KEY'])}\n"
        f'env = {{ "PYTHONPATH" = {json.dumps(str(Path(__file__).resolve().parents[2]))}, "MCP_ONLY" = "1" }}\n'
    )
    leaked = {"ANTHROPIC_API_KEY": CENTRAL_ANTHROPIC, "OPENAI_API_KEY": CENTRAL_OPENAI, "TEST_BOB": BYOK}
    proxy = start_proxy(provider_config(mock.url) + "\n" + server, env=leaked)
    mock.enqueue(Answer.json(anthropic_message("tools were there")))
    anthropic.Anthropic(api_key="sk-ant-x", max_retries=0).messages.create(model="m", max_tokens=8, messages=MESSAGES)
    assert any(t["name"] == "bmcp_probe_echo" for t in mock.requests[0].json()["tools"])  # it ran and connected
    seen = json.loads(dump.read_text())
    assert proxy.process is not None and seen["ppid"] == proxy.process.pid  # started by mitmdump, no shell between
    assert seen["argv"][-1] == "; echo $ANTHROPIC_API_KEY"  # an argument, never interpreted
    minimal = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "PYTHONPATH", "MCP_ONLY"}
    assert set(seen["env"]) - {"LC_CTYPE"} <= minimal  # LC_CTYPE: Python's own C-locale coercion in the child
    assert seen["env"]["MCP_ONLY"] == "1"
    assert not set(leaked.values()) & set(seen["env"].values())
