"""Helpers shared by the wire formats."""

from dataclasses import dataclass

import pytest

from addon.wire.base import (
    LIMIT_NOTICE,
    LoopState,
    Next,
    ToolCall,
    Usage,
    decide,
    dumps,
    human_text,
    int_or_zero,
    parse_arguments,
    result_text,
    sum_usage,
)


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


# --- the loop's decision ---------------------------------------------------------------------------------

INJECTED = frozenset({"bmcp_fs_read", "bmcp_fs_grep"})
OWN = ToolCall("toolu_1", "bmcp_fs_read", "{}")
OWN_2 = ToolCall("toolu_2", "bmcp_fs_grep", "{}")
CLIENT = ToolCall("toolu_3", "Bash", "{}")


@pytest.mark.parametrize("last_round", [False, True])
@pytest.mark.parametrize(
    ("calls", "stopped_for_tools"),
    [
        ([], True),
        ([], False),
        ([CLIENT], True),
        ([OWN, CLIENT], True),
        ([CLIENT, OWN, OWN_2], True),
        ([OWN], False),
        ([OWN, OWN_2], False),
    ],
    ids=["no-calls", "no-calls-not-stopped", "client-only", "mixed", "mixed-client-first", "cut-off", "cut-off-two"],
)
def test_decide_final(calls: list[ToolCall], stopped_for_tools: bool, last_round: bool) -> None:
    assert decide(calls, INJECTED, stopped_for_tools, last_round) is Next.FINAL


@pytest.mark.parametrize("calls", [[OWN], [OWN, OWN_2], [OWN, OWN]])
def test_decide_continue_when_only_injected_calls_stopped_for_tools(calls: list[ToolCall]) -> None:
    assert decide(calls, INJECTED, True, False) is Next.CONTINUE


@pytest.mark.parametrize("calls", [[OWN], [OWN, OWN_2]])
def test_decide_limit_on_the_last_round(calls: list[ToolCall]) -> None:
    assert decide(calls, INJECTED, True, True) is Next.LIMIT


def test_decide_with_nothing_injected_is_final() -> None:
    assert decide([OWN], frozenset(), True, False) is Next.FINAL


@pytest.mark.parametrize(("round_", "max_rounds", "last"), [(1, 3, False), (2, 3, False), (3, 3, True), (1, 1, True)])
def test_loop_state_last_round(round_: int, max_rounds: int, last: bool) -> None:
    assert LoopState(INJECTED, max_rounds, round=round_).last_round is last


def test_loop_state_adds_usage_and_ignores_none() -> None:
    state = LoopState(INJECTED, 3)
    state.add_usage(Usage(1, 2, 3, 4))
    state.add_usage(None)
    state.add_usage(Usage(10, 20, 30, 40))
    assert state.usage == Usage(11, 22, 33, 44)


# --- usage, results, arguments ---------------------------------------------------------------------------


def test_sum_usage_adds_columns_and_counted_extras() -> None:
    a = Usage(1, 2, 3, 4, {"cache_write_5m": 4, "service_tier": "standard", "only_a": 1})
    b = Usage(10, 20, 30, 40, {"cache_write_5m": 6, "service_tier": "priority", "reasoning": 7})
    assert sum_usage(a, b) == Usage(
        11, 22, 33, 44, {"cache_write_5m": 10, "service_tier": "priority", "only_a": 1, "reasoning": 7}
    )


def test_sum_usage_leaves_its_arguments_alone() -> None:
    a = Usage(1, 1, 1, 1, {"k": 1})
    sum_usage(a, Usage(extra={"k": 2, "new": 3}))
    assert a == Usage(1, 1, 1, 1, {"k": 1})


@dataclass
class Text:
    text: str


@dataclass
class Image:
    media_type: str
    data: str


@dataclass
class Output:
    parts: tuple
    is_error: bool = False


def test_result_text_joins_text_parts_and_describes_images() -> None:
    output = Output((Text("first"), Image("image/png", "A" * 400), Text("last")))
    assert result_text(output) == "first\n[image image/png, 300 bytes, not shown]\nlast"


def test_result_text_of_no_parts_is_empty() -> None:
    assert result_text(Output(())) == ""


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"path": "a.py"}', {"path": "a.py"}),
        ("{}", {}),
        ("", {}),
        ("  \n", {}),
        ('{"path": "a.', None),
        ("[1, 2]", None),
        ("null", None),
        ('"text"', None),
        ("{} trailing", None),
    ],
)
def test_parse_arguments(arguments: str, expected: dict | None) -> None:
    assert parse_arguments(arguments) == expected


def test_limit_notice_names_the_rounds() -> None:
    notice = LIMIT_NOTICE.format(rounds=4)
    assert "4 rounds" in notice and "max_tool_rounds" in notice
