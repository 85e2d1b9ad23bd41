"""Key cooldowns shared by a fleet (addon/fleet/keys.py) on a real PostgreSQL: a key one proxy cools is skipped
by the others within a second or two, for the time left by the database's clock."""

import asyncio
import time
from collections.abc import Callable

from addon.config import parse_config
from addon.fleet.keys import SharedCooldowns
from addon.fleet.state import SharedState
from addon.policy.keypool import KeyPools

KEYS = ["sk-ant-api03-fleet-one-aaaaaaaa", "sk-ant-api03-fleet-two-bbbbbbbb"]
ANTHROPIC = parse_config({"providers": {"anthropic": {"key": KEYS}}}).providers[0]


async def test_a_key_one_proxy_cools_is_skipped_by_the_other(proxies: Callable[[], SharedState]) -> None:
    here, there = KeyPools(), KeyPools()
    shared = [SharedCooldowns(here, proxies()), SharedCooldowns(there, proxies())]
    for cooldowns in shared:
        cooldowns.start()
    try:
        here.cool(ANTHROPIC, KEYS[0], 429, 30)
        deadline = time.monotonic() + 5
        while [there.pick(ANTHROPIC) for _ in range(2)] != [KEYS[1], KEYS[1]]:
            assert time.monotonic() < deadline, "the other proxy never heard of the cooldown"
            await asyncio.sleep(0.1)
        left = there._until[("anthropic", next(iter(k for p, k in there._until)))] - time.time()
        assert 20 < left <= 30
        assert there.cooldowns == {}  # merged, not its own
    finally:
        for cooldowns in shared:
            await cooldowns.close()
