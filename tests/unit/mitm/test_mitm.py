"""`addon.mitm.addons()`: the addons mitmdump loads, in the order they must run, wired to one Bridge, and
loadable next to mitmproxy's built-in addons (an addon named like one of them stops mitmdump at start-up)."""

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from mitmproxy import exceptions, options
from mitmproxy.addons import default_addons
from mitmproxy.addons.proxyauth import ProxyAuth as MitmProxyAuth
from mitmproxy.tools.dump import DumpMaster

from addon.config import User, hash_token
from addon.mitm import Bridge, Operations, ProxyUsers, addons
from addon.policy.access import Users


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)  # Bridge.load() makes it 0077: not for the rest of this worker


def test_the_addons_run_in_order_around_one_bridge() -> None:
    users, bridge, operations = ours = addons()
    assert [type(a) for a in ours] == [ProxyUsers, Bridge, Operations]
    assert isinstance(users, ProxyUsers) and isinstance(bridge, Bridge) and isinstance(operations, Operations)
    assert operations.bridge is bridge
    assert not users.users().required  # before configure: nobody configured, the proxy is open
    configured = Users((User(name="alice", token_hash=hash_token("aib_alice")),))
    bridge.gateway = SimpleNamespace(users=configured)  # type: ignore[assignment]
    assert users.users() is configured  # authentication reads the Bridge's users as they are now


def test_each_call_makes_new_addons() -> None:
    first, second = addons(), addons()
    assert all(a is not b for a, b in zip(first, second, strict=True))


@pytest.fixture
async def master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DumpMaster]:
    """mitmdump's master with its default addons, in tmp_path (where a default audit file would be opened)."""
    monkeypatch.chdir(tmp_path)
    master = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    yield master
    master._legacy_log_events.uninstall()


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


async def close(ours: list[object]) -> None:
    bridge = ours[1]
    assert isinstance(bridge, Bridge)
    await bridge.done()


async def test_the_addons_load_next_to_mitmproxys_own(master: DumpMaster) -> None:
    """What mitmdump does: its default addons first, then ours (from `-s addon/aibridge.py`)."""
    ours = addons()
    try:
        master.addons.add(*ours)  # raises AddonManagerError on a name clash
        assert master.addons.chain[-3:] == ours
        assert master.addons.get("proxyusers") is ours[0]
        assert master.addons.get("bridge") is ours[1]
        assert master.addons.get("operations") is ours[2]
        assert isinstance(master.addons.get("proxyauth"), MitmProxyAuth)  # mitmproxy's, untouched
        assert {"aibridge_config", "aibridge_db", "aibridge_metrics"} <= set(master.options.keys())
    finally:
        await close(ours)


async def test_loading_opens_no_audit_file_before_configure(master: DumpMaster, tmp_path: Path) -> None:
    """Adding the addons only loads them: the audit file is opened by the configure that names it."""
    ours = addons()
    try:
        master.addons.add(*ours)
        assert files(tmp_path) == []
        assert isinstance(ours[1], Bridge) and ours[1].writer is None
    finally:
        await close(ours)


async def test_a_clash_with_a_built_in_name_would_be_caught(master: DumpMaster) -> None:
    """The check above can fail: an addon class named like a built-in one is refused, as mitmdump refused the
    `ProxyAuth` an earlier version had."""

    class ProxyAuth(ProxyUsers):
        pass

    bridge = Bridge()
    with pytest.raises(exceptions.AddonManagerError, match="An addon called 'proxyauth' already exists"):
        master.addons.add(ProxyAuth(lambda: bridge.users), bridge)
    assert bridge.writer is None  # refused before the Bridge was even loaded


def test_names_are_unique_among_all_addons() -> None:
    """The same check without a master: no name of ours is any default addon's, nor another of ours."""
    names = [getattr(a, "name", type(a).__name__.lower()) for a in (*default_addons(), *addons())]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
