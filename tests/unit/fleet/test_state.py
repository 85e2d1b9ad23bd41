"""The shared database on the event loop (addon/fleet/state.py): a proxy is a member before its first decision
and leaves on close; no answer is `SharedUnavailable` within the deadline, and for a moment after a failure
decisions fall back at once."""

import asyncio
import time
from collections.abc import Callable

import psycopg
import pytest

from addon.fleet import state as state_module
from addon.fleet.state import SharedState, SharedUnavailable
from tests.support.postgres import PostgresServer


def members(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT instance FROM fleet_members ORDER BY instance")]


async def test_a_proxy_is_a_member_from_its_first_call_and_leaves_on_close(shared_url: str) -> None:
    state = SharedState(shared_url, instance="proxy-a")
    assert await state.call("SELECT 1 + %s", [1]) == [(2,)]
    assert members(shared_url) == ["proxy-a"]
    await state.close()
    assert members(shared_url) == []


async def test_no_answer_falls_back_within_the_deadline_then_at_once(
    proxies: Callable[[], SharedState], postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "RETRY_AFTER", 0.5)
    state = proxies()
    await state.call("SELECT 1")
    postgres_server.kill()
    began = time.monotonic()
    with pytest.raises(SharedUnavailable):
        await state.call("SELECT 1")
    assert time.monotonic() - began < state_module.CALL_TIMEOUT + 0.5
    assert not state.available and not state.up and state.failures == 1
    began = time.monotonic()
    with pytest.raises(SharedUnavailable, match="did not answer a moment ago"):
        await state.call("SELECT 1")
    assert time.monotonic() - began < 0.05  # no waiting on a database known to be down
    postgres_server.start()
    deadline = time.monotonic() + 20
    while True:
        await asyncio.sleep(0.1)
        try:
            assert await state.call("SELECT 2") == [(2,)]
            break
        except SharedUnavailable:
            assert time.monotonic() < deadline, "the pool did not reconnect"
    assert state.up
