"""UUIDv7 ids."""

import types
import uuid

import pytest

from addon import ids


def test_version_and_variant() -> None:
    for _ in range(200):
        value = ids.uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_timestamp_is_the_unix_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = 1_760_000_000_123
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: ms * 1_000_000 + 999_999))
    assert ids.uuid7().int >> 80 == ms


def test_ids_sort_by_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_760_000_000_000, 1_760_000_000_000 + 50))
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: next(clock) * 1_000_000))
    generated = [ids.uuid7() for _ in range(50)]
    assert sorted(generated) == generated
    assert sorted(str(v) for v in generated) == [str(v) for v in generated]


def test_real_clock_is_non_decreasing() -> None:
    stamps = [ids.uuid7().int >> 80 for _ in range(500)]
    assert stamps == sorted(stamps)


def test_random_bits_differ_within_a_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: 1_760_000_000_000_000_000))
    assert len({ids.uuid7() for _ in range(1000)}) == 1000
