"""Pools of central keys (addon/policy/keypool.py): round robin, a cooled key skipped for its retry-after,
the 429 when every key cools, merged fleet cooldowns, and a single key that is no pool."""

import pytest

from addon.config import parse_config
from addon.policy import Refusal
from addon.policy.keypool import KeyPools, cooldown, fingerprint

KEYS = ["sk-ant-api03-one-aaaaaaaaaaaa", "sk-ant-api03-two-bbbbbbbbbbbb", "sk-ant-api03-three-cccccccccc"]


def provider(keys: object):  # type: ignore[no-untyped-def]
    return parse_config({"providers": {"anthropic": {"key": keys}}}).providers[0]


def test_keys_are_used_in_turn_and_a_cooling_one_is_skipped() -> None:
    pool, anthropic = KeyPools(), provider(KEYS)
    assert [pool.pick(anthropic, now=0) for _ in range(4)] == [KEYS[0], KEYS[1], KEYS[2], KEYS[0]]
    pool.cool(anthropic, KEYS[1], 429, 30, now=0)
    assert [pool.pick(anthropic, now=10) for _ in range(3)] == [KEYS[2], KEYS[0], KEYS[2]]
    assert pool.pick(anthropic, now=31) == KEYS[0] and pool.pick(anthropic, now=31) == KEYS[1]  # back after 30 s
    assert pool.cooldowns == {("anthropic", "sk-a...bbbb"): 1}
    assert pool.requests[("anthropic", "sk-a...aaaa")] == 4


def test_when_every_key_cools_the_client_gets_a_429_until_the_first_is_back() -> None:
    pool, anthropic = KeyPools(), provider(KEYS[:2])
    told: list[tuple[str, str, float, int]] = []
    pool.on_cool = lambda *cool: told.append(cool)
    pool.cool(anthropic, KEYS[0], 429, 20, now=0)
    pool.cool(anthropic, KEYS[1], 401, 300, now=0)
    refusal = pool.pick(anthropic, now=5)
    assert isinstance(refusal, Refusal) and refusal.status == 429
    assert refusal.headers == (("retry-after", "15"),)
    assert "every central key of provider anthropic is cooling down" in refusal.message
    assert KEYS[0] not in refusal.message and "sk-a" not in refusal.message  # no key, not even its hint
    assert told == [("anthropic", fingerprint(KEYS[0]), 20, 429), ("anthropic", fingerprint(KEYS[1]), 300, 401)]


def test_cooldowns_of_the_fleet_are_merged_and_never_shortened() -> None:
    pool, anthropic = KeyPools(), provider(KEYS[:2])
    pool.cool(anthropic, KEYS[0], 429, 60, now=0)
    pool.merge([("anthropic", fingerprint(KEYS[0]), 5), ("anthropic", fingerprint(KEYS[1]), 10)], now=0)
    assert isinstance(pool.pick(anthropic, now=9), Refusal)
    assert pool.pick(anthropic, now=11) == KEYS[1]
    assert pool.cooldowns == {("anthropic", "sk-a...aaaa"): 1}  # merged ones are the others' to count


def test_a_single_key_is_no_pool() -> None:
    pool, anthropic = KeyPools(), provider(KEYS[0])
    pool.cool(anthropic, KEYS[0], 429, 60, now=0)
    assert pool.pick(anthropic, now=1) == KEYS[0]  # its 429s reach the client as they came
    assert not KeyPools.pooled(anthropic) and KeyPools.pooled(provider(KEYS))


@pytest.mark.parametrize(
    ("status", "headers", "seconds"),
    [
        (429, {"retry-after": "7"}, 7),
        (429, {"retry-after-ms": "1500", "retry-after": "7"}, 1.5),
        (429, {"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40),  # a date, 100 s after epoch; now is 60
        (429, {"retry-after": "soon"}, 60),
        (429, {}, 60),
        (401, {}, 300),
        (429, {"retry-after": "999999"}, 3600),
    ],
)
def test_cooldown_honours_retry_after(status: int, headers: dict[str, str], seconds: float) -> None:
    assert cooldown(status, headers, now=60) == seconds


def test_a_pool_is_configured_as_a_list_of_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_KEY", KEYS[2])
    assert provider([KEYS[0], "env:POOL_KEY"]).keys == (KEYS[0], KEYS[2])
    assert provider(KEYS[0]).keys == (KEYS[0],)
    for keys, message in (
        ([], "providers.anthropic.key: an empty list: give one key or several"),
        ([KEYS[0], KEYS[0]], "providers.anthropic.key: a key is listed twice"),
        ([KEYS[0], 7], r"providers.anthropic.key\[1\]"),
    ):
        with pytest.raises(ValueError, match=message):
            provider(keys)
