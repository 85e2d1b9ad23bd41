"""Fixtures the engine's tests share: the recorder (checked on teardown: every admitted job ended once) and the
scripted upstream behind an httpx.MockTransport."""

from collections.abc import Iterator

import pytest

from tests.unit.test_engine import FakeRecorder, FakeUpstream, assert_each_job_ended_once


@pytest.fixture
def recorder() -> Iterator[FakeRecorder]:
    recorder = FakeRecorder()
    yield recorder
    assert_each_job_ended_once(recorder.events)


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()
