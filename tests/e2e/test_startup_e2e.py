"""Starting, configuring and stopping the proxy; trust, TLS and the audit file as other tools see it."""

import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import pytest
import trustme

from tests.support.holder import holding
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy, provider_config
from tests.support.scenarios import anthropic_events, anthropic_message

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[providers.anthropic]\nupstream = 'ftp://x'\n", "scheme must be http or https"),
        ("[providers.Bad_Name]\ntype = 'openai'\nhost = 'x.example'\n", "provider name"),
        (
            "[providers.a]\ntype = 'openai'\nhost = 'x.example'\n[providers.b]\ntype = 'openai'\nhost = 'x.example'\n",
            "providers.a and providers.b both claim host x.example",
        ),
        ("[providers.anthropic]\ncolour = 'blue'\n", "unknown key(s) colour"),
        ("this is = not toml [", "aibridge.toml"),
    ],
)
def test_invalid_configuration_stops_mitmdump_with_a_clear_error(tmp_path: Path, config: str, message: str) -> None:
    proxy = Proxy(tmp_path, config).spawn()
    assert proxy.wait_exit() != 0
    output = "\n".join(proxy.output)
    assert "aibridge_config" in output and message in output, output


def test_a_held_audit_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with holding(str(db)) as holder:
        proxy = Proxy(tmp_path).spawn()
        assert proxy.wait_exit() != 0
        output = "\n".join(proxy.output)
        assert f"PID {holder.pid}" in output and "is held by another process" in output, output


def test_upstream_tls_follows_mitmproxys_options_for_bridged_and_passthrough(tmp_path: Path, start_proxy) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    upstream = MockUpstream(server_context).start()
    try:
        # Not trusted: both paths refuse the upstream's certificate.
        untrusted = start_proxy(provider_config(upstream.url))
        client = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as bridged:
            client.messages.create(model="m", max_tokens=8, messages=MESSAGES)
        assert bridged.value.status_code == 502
        with httpx.Client() as http:
            assert http.get("https://api.anthropic.com/v1/models").status_code == 502
        untrusted.stop()
        assert upstream.requests == []

        # One mitmproxy option makes both work.
        trusted = start_proxy(provider_config(upstream.url), ("--set", f"ssl_verify_upstream_trusted_ca={ca_file}"))
        upstream.enqueue(Answer.json(anthropic_message("secure")), Answer.json({"data": []}))
        client = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0)
        assert client.messages.create(model="m", max_tokens=8, messages=MESSAGES).content[0].text == "secure"
        with httpx.Client() as http:
            assert http.get("https://api.anthropic.com/v1/models").json() == {"data": []}
        trusted.stop()
    finally:
        upstream.stop()


def test_the_bridge_ignores_proxy_variables_in_its_own_environment(mock: MockUpstream, start_proxy) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    start_proxy(provider_config(mock.url), env={"HTTPS_PROXY": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead})
    mock.enqueue(Answer.json(anthropic_message("direct")))
    client = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0)
    assert client.messages.create(model="m", max_tokens=8, messages=MESSAGES).content[0].text == "direct"


def test_a_configured_provider_on_a_default_host_takes_it_over(mock: MockUpstream, start_proxy) -> None:
    """`[providers.claude]` on api.anthropic.com starts (the default `anthropic` steps aside) and records."""
    config = f'[providers.claude]\ntype = "anthropic"\nhost = "api.anthropic.com"\nupstream = "{mock.url}"\n'
    proxy = start_proxy(config)
    mock.enqueue(Answer.json(anthropic_message("mine")))
    client = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0)
    assert client.messages.create(model="m", max_tokens=8, messages=MESSAGES).content[0].text == "mine"
    proxy.stop()
    rows = proxy.rows("SELECT provider, provider_name, status FROM interceptions")
    assert rows == [{"provider": "anthropic", "provider_name": "claude", "status": "completed"}]


def test_ca_key_is_private_and_the_bundle_carries_system_and_proxy_cas(proxy: Proxy) -> None:
    key = proxy.confdir / "mitmproxy-ca.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    bundle = Path(proxy.env["SSL_CERT_FILE"])
    assert bundle.is_absolute()
    for var in ("NODE_EXTRA_CA_CERTS", "CODEX_CA_CERTIFICATE", "REQUESTS_CA_BUNDLE"):
        assert proxy.env[var] == str(bundle)
    text = bundle.read_text()
    assert (proxy.confdir / "mitmproxy-ca-cert.pem").read_text().strip() in text
    assert text.count("BEGIN CERTIFICATE") > 50  # the system store came along
    assert proxy.env["HTTPS_PROXY"].startswith("http://127.0.0.1:")


def test_the_audit_file_opens_in_the_duckdb_cli_from_pypi(mock: MockUpstream, proxy: Proxy) -> None:
    cli = Path(sys.executable).parent / "duckdb"
    mock.enqueue(Answer.json(anthropic_message("x")))
    anthropic.Anthropic(api_key="sk-ant-x", max_retries=0).messages.create(model="m", max_tokens=8, messages=MESSAGES)
    proxy.stop()
    result = subprocess.run(
        [
            str(cli),
            "-readonly",
            "-csv",
            str(proxy.db_path),
            "-c",
            "SELECT provider, status, (SELECT sum(output_tokens) FROM token_usages) AS out FROM interceptions",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["provider,status,out", "anthropic,completed,7"]


def test_stopping_the_proxy_ends_in_flight_interceptions(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.sse(anthropic_events(["x"] * 200), delay=0.05))
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            "https://api.anthropic.com/v1/messages",
            json={"model": "m", "max_tokens": 8, "stream": True, "messages": MESSAGES},
        ) as response,
    ):
        next(response.iter_raw())
        assert proxy.process is not None
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.wait_exit() is not None
    [row] = proxy.rows("SELECT status, error FROM interceptions")
    assert row["status"] == "cancelled"
    # Usually the bridge ends it on shutdown; under heavy load the hop's close can be seen first.
    assert row["error"] in ("proxy shut down", "client disconnected"), row


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http2_clients_stream_through_the_bridge(mock: MockUpstream, proxy: Proxy) -> None:
    mock.enqueue(Answer.sse(anthropic_events(["h2 ", "works"]), delay=0.05))
    started = time.monotonic()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--proxy",
            proxy.url,
            "--cacert",
            proxy.env["CURL_CA_BUNDLE"],
            "-w",
            "\n%{http_version}",
            "-H",
            "content-type: application/json",
            "--data",
            '{"model":"m","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}',
            "https://api.anthropic.com/v1/messages",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_PROXY": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("\n2")
    assert '"text": "h2 "' in result.stdout and "message_stop" in result.stdout
    assert time.monotonic() - started < 30
