"""Audit event rows."""

import dataclasses
from datetime import UTC, datetime
from uuid import UUID

import pytest

from addon.audit.events import (
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
)

IID = UUID("01900000-0000-7000-8000-000000000001")


def test_row_is_in_field_order_with_metadata_as_compact_json() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = TokensUsed(
        id=IID,
        interception_id=IID,
        provider_response_id="msg_1",
        input_tokens=1,
        output_tokens=2,
        cache_read_input_tokens=3,
        cache_write_input_tokens=4,
        metadata={"cache_write_5m": 4, "note": "é"},
        created_at=at,
    )
    unpriced = (None, None, None, None, None, None)
    assert event.row() == (IID, IID, "msg_1", 1, 2, 3, 4, '{"cache_write_5m":4,"note":"é"}', at, *unpriced)


def test_empty_metadata_is_null() -> None:
    event = InterceptionEnded(interception_id=IID, status="completed")
    assert event.row()[-1] is None


def test_defaults() -> None:
    ended = InterceptionEnded(interception_id=IID, status="failed")
    assert ended.ended_at.tzinfo is not None
    assert (ended.error, ended.http_status, ended.response_model) == (None, None, None)
    thought = ThoughtRecorded(interception_id=IID, content="x")
    other = ThoughtRecorded(interception_id=IID, content="x")
    assert thought.id.version == 7 and thought.id != other.id


@pytest.mark.parametrize(
    ("cls", "table"),
    [
        (InterceptionStarted, "interception_starts"),
        (InterceptionEnded, "interception_ends"),
        (TokensUsed, "token_usages"),
        (PromptSubmitted, "user_prompts"),
        (ToolCalled, "tool_usages"),
        (ThoughtRecorded, "model_thoughts"),
    ],
)
def test_table_names(cls: type, table: str) -> None:
    assert table == cls.TABLE


def test_events_are_frozen() -> None:
    event = PromptSubmitted(interception_id=IID, provider_response_id=None, prompt="p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.prompt = "q"  # type: ignore[misc]
