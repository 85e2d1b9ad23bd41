"""Users, central keys and BYOK, cost, and budgets that hold, through a real mitmdump."""

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import anthropic
import httpx
import openai
import pytest

from addon.cli.users import new_token
from addon.config import hash_token
from tests.support.mock_upstream import Answer, MockUpstream
from tests.support.proxy import Proxy
from tests.support.scenarios import anthropic_events, anthropic_message, chat_completion

CENTRAL_ANTHROPIC = "sk-ant-api03-CENTRAL-a1b2c3d4e5f6g7h8"
CENTRAL_OPENAI = "sk-proj-CENTRAL-z9y8x7w6v5u4"
BYOK = "sk-ant-api03-OWNKEY-0000111122223333"
MESSAGES = [{"role": "user", "content": "hi"}]


def with_user(proxy_url: str, user: str, token: str) -> str:
    parts = urlsplit(proxy_url)
    return f"{parts.scheme}://{user}:{token}@{parts.netloc}"


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for var in ("HTTPS_PROXY", "https_proxy"):  # lower case wins where both are set
        monkeypatch.setenv(var, url)


@pytest.fixture
def tokens() -> dict[str, str]:
    return {"alice": new_token(), "bob": new_token()}


@pytest.fixture
def closed_bridge(
    mock: MockUpstream, start_proxy: Callable[..., Proxy], tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Proxy]:
    def start(extra: str = "", anthropic_extra: str = "", env: dict[str, str] | None = None, top: str = "") -> Proxy:
        config = (
            f'{top}[providers.anthropic]\nupstream = "{mock.url}"\n'
            f'key = "env:TEST_CENTRAL_ANTHROPIC"\n{anthropic_extra}\n'
            f'[providers.openai]\nupstream = "{mock.url}"\nkey = "{CENTRAL_OPENAI}"\n\n'
            f'[users.alice]\ntoken = "{hash_token(tokens["alice"])}"\ngroups = ["eng"]\n\n'
            f'[users.bob]\ntoken = "env:TEST_BOB_TOKEN"\n\n{extra}'
        )
        proxy = start_proxy(
            config, env={"TEST_CENTRAL_ANTHROPIC": CENTRAL_ANTHROPIC, "TEST_BOB_TOKEN": tokens["bob"], **(env or {})}
        )
        return proxy

    return start


def test_the_proxy_is_closed_without_valid_credentials(
    mock: MockUpstream, closed_bridge, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = closed_bridge()
    for url in (proxy.url, with_user(proxy.url, "alice", "aib_wrong"), with_user(proxy.url, "mallory", tokens["bob"])):
        use_proxy(monkeypatch, url)
        with pytest.raises(anthropic.APIConnectionError):
            anthropic.Anthropic(api_key=BYOK, max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
            )
        with httpx.Client() as client, pytest.raises(httpx.ProxyError, match="407"):
            client.get("https://example.org/")  # a non-provider host: no tunnel either
    with httpx.Client(proxy=None, trust_env=False) as plain:  # a plain-HTTP proxy request
        response = (
            plain.get(
                "http://api.anthropic.com/v1/models",
                headers={},
                extensions={},
            )
            if False
            else None
        )
    assert response is None
    with httpx.Client(proxy=proxy.url) as client:
        assert client.get("http://api.anthropic.com/v1/models").status_code == 407
    assert mock.requests == []

    use_proxy(monkeypatch, with_user(proxy.url, "bob", tokens["bob"]))
    mock.enqueue(Answer.json(anthropic_message("hello bob")))
    message = anthropic.Anthropic(api_key=BYOK, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
    )
    assert message.content[0].text == "hello bob"
    assert mock.requests[0].header("proxy-authorization") is None
    proxy.stop()
    [row] = proxy.rows("SELECT initiator, credential_kind, credential_hint FROM interceptions")
    assert row == {"initiator": "bob", "credential_kind": "byok", "credential_hint": "sk-a...3333"}


def test_a_bridge_token_as_api_key_gets_the_central_key_upstream(
    mock: MockUpstream, closed_bridge, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = closed_bridge()
    use_proxy(monkeypatch, with_user(proxy.url, "alice", tokens["alice"]))
    mock.enqueue(
        Answer.json(anthropic_message("central")),
        Answer.json(chat_completion("central too")),
        Answer.json({"data": []}),
    )
    assert (
        anthropic.Anthropic(api_key=tokens["alice"], max_retries=0)
        .messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES)
        .content[0]
        .text
        == "central"
    )
    assert (
        openai.OpenAI(api_key=tokens["alice"], max_retries=0)
        .chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        .choices[0]
        .message.content
        == "central too"
    )
    with httpx.Client() as client:  # passthrough follows the same rules
        client.get("https://api.anthropic.com/v1/models", headers={"x-api-key": tokens["alice"]})
    a_seen, o_seen, models_seen = mock.requests
    assert a_seen.header("x-api-key") == CENTRAL_ANTHROPIC and a_seen.header("authorization") is None
    assert o_seen.header("authorization") == f"Bearer {CENTRAL_OPENAI}"
    assert models_seen.header("x-api-key") == CENTRAL_ANTHROPIC
    for seen in mock.requests:
        assert tokens["alice"] not in json.dumps(seen.headers) + seen.body.decode()
    proxy.stop()
    rows = proxy.rows(
        "SELECT provider, initiator, credential_kind, credential_hint FROM interceptions ORDER BY started_at"
    )
    assert rows == [
        {
            "provider": "anthropic",
            "initiator": "alice",
            "credential_kind": "centralized",
            "credential_hint": "sk-a...g7h8",
        },
        {
            "provider": "openai",
            "initiator": "alice",
            "credential_kind": "centralized",
            "credential_hint": "sk-p...v5u4",
        },
    ]


def test_byok_can_be_refused_and_actor_headers_cannot_be_forged(
    mock: MockUpstream, closed_bridge, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = closed_bridge(top="send_actor_headers = true\n", anthropic_extra="allow_byok = false\n")
    use_proxy(monkeypatch, with_user(proxy.url, "alice", tokens["alice"]))
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        anthropic.Anthropic(api_key=BYOK, max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
        )
    assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "bring-your-own-key" in refused.value.message
    mock.enqueue(Answer.json(chat_completion("byok ok")))
    openai.OpenAI(
        api_key="sk-proj-own-key-123456789", max_retries=0, default_headers={"X-AI-Bridge-Actor-ID": "forged"}
    ).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    [seen] = mock.requests
    assert seen.header("authorization") == "Bearer sk-proj-own-key-123456789"
    assert seen.header("x-ai-bridge-actor-id") == "alice"
    assert seen.header("x-ai-bridge-actor-metadata-username") == "alice"
    assert [v for k, v in seen.headers if k.lower() == "x-ai-bridge-actor-id"] == ["alice"]
    proxy.stop()
    rows = proxy.rows("SELECT provider, status, http_status, error FROM interceptions ORDER BY started_at")
    assert rows[0]["status"] == "refused" and rows[0]["http_status"] == 403
    assert rows[1]["status"] == "completed"


def test_costs_are_priced_per_token_kind(
    mock: MockUpstream, closed_bridge, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = closed_bridge(extra='[prices."openai/my-finetune"]\ninput = 1.5\noutput = 6\ncache_read = 0.25\n')
    use_proxy(monkeypatch, with_user(proxy.url, "alice", tokens["alice"]))
    mock.enqueue(
        Answer.sse(
            anthropic_events(
                ["x"],
                model="claude-sonnet-4-5-20250929",
                start_usage={
                    "input_tokens": 1000,
                    "cache_read_input_tokens": 20000,
                    "cache_creation_input_tokens": 3000,
                    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
                    "output_tokens": 1,
                },
                delta_usage={"output_tokens": 500},
            )
        ),
        Answer.json(
            chat_completion(
                "y",
                model="gpt-4.1-2025-04-14",
                usage={
                    "prompt_tokens": 12000,
                    "completion_tokens": 300,
                    "total_tokens": 12300,
                    "prompt_tokens_details": {"cached_tokens": 10000},
                },
            )
        ),
        Answer.json(
            chat_completion(
                "z",
                model="my-finetune",
                usage={
                    "prompt_tokens": 4000,
                    "completion_tokens": 100,
                    "total_tokens": 4100,
                    "prompt_tokens_details": {"cached_tokens": 1000},
                },
            )
        ),
        Answer.json(
            chat_completion(
                "w", model="unknown-model-x", usage={"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
            )
        ),
    )
    with anthropic.Anthropic(api_key=tokens["alice"], max_retries=0).messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
    ) as stream:
        stream.get_final_message()
    client = openai.OpenAI(api_key=tokens["alice"], max_retries=0)
    for model in ("gpt-4.1", "my-finetune", "unknown-model-x"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    proxy.stop()
    rows = proxy.rows("""SELECT i.model, t.input_cost_micros AS i, t.output_cost_micros AS o,
                                t.cache_read_cost_micros AS r, t.cache_write_cost_micros AS w,
                                t.cost_micros AS total, t.prices
                         FROM token_usages t JOIN interceptions i ON i.id = t.interception_id ORDER BY i.started_at""")
    # Claude Sonnet 4.5: $3 in, $15 out, $0.30 cache read, $3.75 5-minute and $6 1-hour cache writes per MTok.
    assert [rows[0][k] for k in "iorw"] == [3000, 7500, 6000, 1000 * 3.75 + 2000 * 6]
    assert rows[0]["total"] == 3000 + 7500 + 6000 + 15750
    # GPT-4.1: $2 in, $8 out, $0.50 cache read; input excludes the cached tokens.
    assert [rows[1][k] for k in "iorw"] == [4000, 2400, 5000, 0] and rows[1]["total"] == 11400
    # The configured override.
    assert [rows[2][k] for k in "iorw"] == [4500, 600, 250, 0]
    assert json.loads(rows[2]["prices"])["source"] == "config prices.openai/my-finetune"
    # Unpriced usage is visible as such, never a silent zero.
    assert rows[3]["total"] is None and rows[3]["i"] is None
    assert any("no price for openai/unknown-model-x" in line for line in proxy.output)


def test_budgets_refuse_hold_under_a_burst_and_survive_a_restart(
    mock: MockUpstream, closed_bridge, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every request may cost up to $0.10 (100k output tokens at $1/MTok) and does; alice has $0.45.
    extra = (
        '[prices."anthropic/budget-model"]\ninput = 0\noutput = 1\n\n'
        "[budgets]\nusers = { alice = 0.45 }\ngroups = { eng = 100 }\n"
    )
    proxy = closed_bridge(extra=extra)
    use_proxy(monkeypatch, with_user(proxy.url, "alice", tokens["alice"]))
    usage = {"input_tokens": 10, "output_tokens": 100_000}
    for _ in range(20):
        mock.enqueue(Answer.json(anthropic_message("spent", model="budget-model", usage=usage), first_byte_delay=0.5))
    barrier = threading.Barrier(12)

    def one(_: int) -> int:
        barrier.wait(10)
        with httpx.Client(timeout=30) as client:
            response = client.post(
                "https://api.anthropic.com/v1/messages",
                headers={"x-api-key": tokens["alice"]},
                json={"model": "budget-model", "max_tokens": 100_000, "messages": MESSAGES},
            )
        if response.status_code == 403:
            error = response.json()["error"]
            assert error["type"] == "permission_error"
            assert "budget exceeded: spent US$" in error["message"] and "of US$0.45 this month" in error["message"]
        return response.status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(one, range(12)))
    assert statuses.count(200) == 5 and statuses.count(403) == 7  # reservations filled the budget at 5
    assert len(mock.requests) == 5
    proxy.stop()
    spent = proxy.rows("SELECT sum(cost_micros) AS s FROM token_usages")[0]["s"]
    assert spent == 500_000  # over the limit by less than one request's reservation
    refused = proxy.rows("SELECT count(*) AS n FROM interceptions WHERE status = 'refused' AND http_status = 403")
    assert refused == [{"n": 7}]

    restarted = closed_bridge(extra=extra)  # the same audit file: spend rebuilt from it
    use_proxy(monkeypatch, with_user(restarted.url, "alice", tokens["alice"]))
    with pytest.raises(anthropic.PermissionDeniedError, match=r"spent US\$0.50 of US\$0.45"):
        anthropic.Anthropic(api_key=tokens["alice"], max_retries=0).messages.create(
            model="budget-model", max_tokens=10, messages=MESSAGES
        )
    restarted.stop()


def test_no_secret_reaches_the_audit_file_or_the_logs(
    mock: MockUpstream, closed_bridge, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = closed_bridge()
    use_proxy(monkeypatch, with_user(proxy.url, "alice", tokens["alice"]))
    mock.enqueue(
        Answer.json(anthropic_message("a")), Answer.json(anthropic_message("b")), Answer.json(anthropic_message("c"))
    )
    for key in (tokens["alice"], BYOK):
        anthropic.Anthropic(api_key=key, max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MESSAGES
        )
    with httpx.Client() as client:
        client.post("https://api.anthropic.com/v1/messages", content=b"{broken", headers={"x-api-key": BYOK})
        client.post("https://api.anthropic.com/v1/messages", content=b"{}", headers={"x-api-key": "aib_not-a-token"})
    proxy.stop()
    haystack = proxy.db_path.read_bytes() + "\n".join(proxy.output).encode()
    wal = proxy.db_path.with_name(proxy.db_path.name + ".wal")
    if wal.exists():
        haystack += wal.read_bytes()
    for secret in (*tokens.values(), BYOK, CENTRAL_ANTHROPIC, CENTRAL_OPENAI, "aib_not-a-token"):
        assert secret.encode() not in haystack, f"a secret leaked: {secret[:8]}..."
    assert proxy.rows("SELECT count(*) AS n FROM interceptions") == [{"n": 4}]
