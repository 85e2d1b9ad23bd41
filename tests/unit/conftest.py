"""Fixtures the engine's tests share: the recorder (checked on teardown: every admitted job ended once), the
scripted upstream, and an engine over both."""

from collections.abc import AsyncIterator, Iterator

import pytest

from addon.engine.core import Engine
from tests.support.fakes import FakeRecorder, FakeUpstream, assert_each_job_ended_once


@pytest.fixture
def recorder() -> Iterator[FakeRecorder]:
    recorder = FakeRecorder()
    yield recorder
    assert_each_job_ended_once(recorder.events)


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def engine(recorder: FakeRecorder, upstream: FakeUpstream) -> AsyncIterator[Engine]:
    yield Engine(recorder, upstream)
