"""A migrated PostgreSQL database for the fleet's tests, and proxies' shared state on it."""

from collections.abc import AsyncIterator, Callable

import pytest

from addon.audit.postgres import PostgresStore
from addon.fleet.state import SharedState


@pytest.fixture
def shared_url(pg_url: str) -> str:
    PostgresStore(pg_url).close()  # the audit's migrations, the fleet's tables and functions with them
    return pg_url


@pytest.fixture
async def proxies(shared_url: str) -> AsyncIterator[Callable[[], SharedState]]:
    """Make the shared state of one more proxy; each is closed (it leaves the fleet) after the test."""
    made: list[SharedState] = []

    def proxy() -> SharedState:
        made.append(state := SharedState(shared_url))
        return state

    yield proxy
    for state in made:
        await state.close()
