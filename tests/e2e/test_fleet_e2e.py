"""A fleet (tests/support/fleet.py): two real mitmdumps on one CA and one PostgreSQL audit database, behind
HAProxy in TCP mode; clients know one address."""

import json
import math
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx2
import psycopg
import pytest

from addon.config import hash_token
from tests.support.fleet import Fleet
from tests.support.mock_upstream import Answer, MockUpstream, Seen
from tests.support.postgres import PostgresServer
from tests.support.proxy import provider_config
from tests.support.scenarios import anthropic_message

pytestmark = pytest.mark.e2e
AIBRIDGE = Path(sys.executable).parent / "aibridge"


@pytest.fixture
def fleet_db(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


def ask(fleet: Fleet, text: str) -> str:
    """One call on a connection of its own: the balancer spreads connections, not requests."""
    trust = ssl.create_default_context(cafile=str(fleet.bundle))
    with httpx2.Client(proxy=fleet.url, verify=trust, timeout=30) as http:
        sdk = anthropic.Anthropic(api_key="sk-ant-fleet", max_retries=0, http_client=http)
        message = sdk.messages.create(model="claude-x", max_tokens=8, messages=[{"role": "user", "content": text}])
    return message.content[0].text  # type: ignore[union-attr]


def audited(url: str, want: int, within: float = 10.0) -> int:
    """Interceptions in the shared database, asked again until `want` show: each writer commits once a second."""
    deadline = time.monotonic() + within
    while True:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM interceptions").fetchone()
        count = row[0] if row else 0
        if count >= want or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def test_a_fleet_of_two_behind_haproxy_answers_on_one_address(tmp_path: Path, fleet_db: str) -> None:
    mock = MockUpstream().start()
    mock.default = Answer.json(anthropic_message("served"))
    try:
        with Fleet(tmp_path / "fleet", fleet_db, 2, config=provider_config(mock.url)) as fleet:
            assert fleet.backend_status() == {"proxy1": "UP", "proxy2": "UP"}
            assert len({p.port for p in fleet.proxies}) == 2 and fleet.bundle.is_file()
            env = fleet.client_env("alice", "aib_t:k", base={"NO_PROXY": "*", "no_proxy": "*", "HOME": "/h"})
            assert env["HTTPS_PROXY"] == env["https_proxy"] == f"http://alice:aib_t%3Ak@127.0.0.1:{fleet.port}"
            assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == env["NODE_EXTRA_CA_CERTS"] == str(fleet.bundle)
            assert "NO_PROXY" not in env and "no_proxy" not in env and env["HOME"] == "/h"

            before = fleet.served()
            assert [ask(fleet, f"q{i}") for i in range(6)] == ["served"] * 6
            spread = {name: n - before[name] for name, n in fleet.served().items()}
            assert spread == {"proxy1": 3, "proxy2": 3}  # roundrobin, one connection per call
            assert audited(fleet_db, 6) == 6  # both wrote to the one database

            # One proxy crashes: the balancer moves on (at once: a refused connection is redispatched), and
            # its health checks take it out within about fall x inter.
            victim = fleet.proxies[0]
            victim.kill()
            assert [ask(fleet, f"after {i}") for i in range(4)] == ["served"] * 4
            fleet.wait_status({"proxy1": "DOWN", "proxy2": "UP"}, timeout=5)
            assert audited(fleet_db, 10) == 10
    finally:
        mock.stop()
    assert fleet.balancer is not None and fleet.balancer.poll() is not None
    assert all(not p.alive for p in fleet.proxies)


# --- the fleet's shared limits, through the balancer -----------------------------------------------------

TOKENS = {name: f"aib_fleet_{name}_{uuid.uuid4().hex}" for name in ("alice", "bob", "carol")}
POOL = ("sk-ant-api03-pool-one-aaaaaaaaaaaa", "sk-ant-api03-pool-two-bbbbbbbbbbbb")


def limits_config(mock_url: str) -> str:
    users = "".join(f'[users.{n}]\ntoken = "{hash_token(t)}"\n\n' for n, t in TOKENS.items())
    return (
        f'[providers.anthropic]\nupstream = "{mock_url}"\nkey = ["{POOL[0]}", "{POOL[1]}"]\n\n'
        f"{users}"
        "[budgets]\nusers = { alice = 1 }\n\n"
        "[rate_limits.users.bob]\nrequests_per_minute = 4\n"
    )


def call(fleet: Fleet, user: str, max_tokens: int = 8) -> httpx2.Response:
    """One Messages call through the official SDK as `user` (bridge token as the API key, proxy credentials
    too), on its own connection; the HTTP response, whatever its status."""
    trust = ssl.create_default_context(cafile=str(fleet.bundle))
    with httpx2.Client(proxy=fleet.proxy_url(user, TOKENS[user]), verify=trust, timeout=30) as http:
        sdk = anthropic.Anthropic(api_key=TOKENS[user], max_retries=0, http_client=http)
        try:
            raw = sdk.messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}]
            )
        except anthropic.APIStatusError as e:
            e.response.read()
            return e.response
        raw.http_response.read()
        return raw.http_response


def statuses(url: str) -> dict[str, int]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM interceptions GROUP BY 1").fetchall())


def test_the_fleet_shares_budgets_rate_limits_and_key_cooldowns(tmp_path: Path, fleet_db: str) -> None:
    mock = MockUpstream().start()
    slow = Answer.json(anthropic_message("ok"), first_byte_delay=2.0)  # every admission before any settles

    def answer(seen: Seen) -> Answer:
        if seen.header("x-api-key") == POOL[0]:
            return Answer.json(
                {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}, 429, {"retry-after": "30"}
            )
        return slow if seen.json().get("max_tokens") == 10_000 else Answer.json(anthropic_message("ok"))

    mock.responder = answer
    try:
        with Fleet(tmp_path / "fleet", fleet_db, 2, config=limits_config(mock.url)) as fleet:
            # Key pool: the first key answers 429; every call still succeeds, on the second key, and once both
            # proxies know of the cooldown (a second or so) the first key is not tried again.
            assert [call(fleet, "carol").status_code for _ in range(4)] == [200] * 4
            time.sleep(2.5)
            tried = len(mock.requests)
            assert [call(fleet, "carol").status_code for _ in range(4)] == [200] * 4
            assert [r.header("x-api-key") for r in mock.requests[tried:]] == [POOL[1]] * 4
            assert 1 <= sum(r.header("x-api-key") == POOL[0] for r in mock.requests) <= 2  # once per proxy at most

            # Budget: US$1 for alice, each call reserving its worst case (10,000 output tokens at US$15 per
            # million, plus its input): a burst of 16 over both proxies admits exactly what one proxy would.
            body = json.dumps(
                {"model": "claude-sonnet-4-5", "max_tokens": 10_000, "messages": [{"role": "user", "content": "hi"}]}
            )
            estimate = len(body.encode()) // 4 * 3 + 10_000 * 15
            with ThreadPoolExecutor(16) as pool:
                burst = list(pool.map(lambda _: call(fleet, "alice", 10_000).status_code, range(16)))
            assert burst.count(200) == math.ceil(1_000_000 / estimate)
            assert burst.count(403) == 16 - burst.count(200)

            # Rate limit: 4 requests a minute for bob, whichever proxy serves them.
            before = fleet.served()
            answers = [call(fleet, "bob") for _ in range(7)]
            assert [a.status_code for a in answers] == [200] * 4 + [429] * 3
            assert all(int(a.headers["retry-after"]) > 0 for a in answers[4:])
            assert answers[4].json()["error"]["type"] == "rate_limit_error"
            served = fleet.served()
            assert all(served[name] - before[name] > 0 for name in served)  # both proxies took bob's calls

        # The CLI shows one merged view: every interception exactly once.
        listing = subprocess.run(
            [str(AIBRIDGE), "interceptions", "--db", fleet_db, "--json", "--limit", "1000"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        rows = json.loads(listing.stdout)["interceptions"]
        assert len(rows) == len({r["id"] for r in rows}) == 8 + 16 + 7
        assert statuses(fleet_db) == {"completed": 8 + burst.count(200) + 4, "refused": burst.count(403) + 3}
    finally:
        mock.stop()


def test_the_database_going_away_and_coming_back_loses_no_row(
    tmp_path: Path, fleet_db: str, postgres_server: PostgresServer
) -> None:
    mock = MockUpstream().start()
    mock.default = Answer.json(anthropic_message("ok"))
    try:
        with Fleet(tmp_path / "fleet", fleet_db, 2, config=limits_config(mock.url)) as fleet:
            assert [call(fleet, "alice").status_code for _ in range(4)] == [200] * 4
            assert audited(fleet_db, 4) == 4
            postgres_server.kill()
            try:
                # on_store_down = "admit": traffic goes on, each proxy keeping its own books and the rows
                assert [call(fleet, "alice").status_code for _ in range(6)] == [200] * 6
            finally:
                postgres_server.start()
            assert audited(fleet_db, 10, within=30) == 10
    finally:
        mock.stop()


def test_kill_9_of_a_proxy_mid_burst_loses_at_most_its_last_second(tmp_path: Path, fleet_db: str) -> None:
    mock = MockUpstream().start()
    mock.default = Answer.json(anthropic_message("ok"))
    try:
        with Fleet(tmp_path / "fleet", fleet_db, 2, config=limits_config(mock.url)) as fleet:
            results: list[int] = []
            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(lambda: call(fleet, "carol").status_code) for _ in range(40)]
                time.sleep(1.5)
                fleet.proxies[0].kill()
                for future in futures:
                    try:
                        results.append(future.result(timeout=60))
                    except (anthropic.APIConnectionError, httpx2.HTTPError):
                        results.append(0)  # in flight on the killed proxy
            ok = results.count(200)
            assert ok >= 30  # the balancer carried on with the other
            after = [call(fleet, "carol").status_code for _ in range(4)]
            assert after == [200] * 4
            time.sleep(2)
            recorded = audited(fleet_db, ok + 4, within=10)
            # what the killed proxy had not yet written (at most its last second) is all that is missing
            assert ok + 4 - 10 <= recorded <= len(results) + 4
    finally:
        mock.stop()
