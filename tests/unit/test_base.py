"""Helpers shared by the wire formats."""

import pytest

from addon.wire.base import dumps, human_text, int_or_zero


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (0, 0), (True, 0), (False, 0), ("3", 0), (None, 0), (2.5, 0), ([], 0)],
)
def test_int_or_zero(value: object, expected: int) -> None:
    assert int_or_zero(value) == expected


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([], None),
        (["", "   ", "\n"], None),
        (["<system-reminder>x</system-reminder>"], None),
        (["  <environment_context>cwd</environment_context>", "<user_instructions>be nice</user_instructions>"], None),
        (
            ["<system-reminder>x</system-reminder>", "fix the bug", "<system-reminder>y</system-reminder>"],
            "fix the bug",
        ),
        (["first", "second"], "first\n\nsecond"),
        (["a <system-reminder> in the middle"], "a <system-reminder> in the middle"),
    ],
)
def test_human_text_leaves_client_wrappers_out(parts: list[str], expected: str | None) -> None:
    assert human_text(parts) == expected
