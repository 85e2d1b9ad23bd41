"""CSV downloads: columns as named, lists joined, None empty (never 0), formulas defused."""

import csv
import io

import pytest

from addon.web.downloads import cell, dollars, to_csv


def test_rows_in_the_named_columns() -> None:
    text = to_csv(
        [{"a": 1, "b": ["x", "y"], "c": None, "d": True, "extra": "left out"}, {"a": 2}], ["a", "b", "c", "d"]
    )
    assert text == "a,b,c,d\r\n1,x; y,,true\r\n2,,,\r\n"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2", "'-2"),  # text, not a number
        ("@cmd", "'@cmd"),
        ('plain, with "quotes"', 'plain, with "quotes"'),
        (-2, -2),  # a number stays a number
        (0, 0),
    ],
)
def test_cells(value: object, shown: object) -> None:
    assert cell(value) == shown


def test_quoting_round_trips() -> None:
    text = to_csv([{"p": 'line one\nline "two", three'}], ["p"])
    assert list(csv.DictReader(io.StringIO(text))) == [{"p": 'line one\nline "two", three'}]


def test_dollars() -> None:
    assert dollars(1_500_000) == "1.500000"
    assert dollars(33) == "0.000033"
    assert dollars(0) == "0.000000"
    assert dollars(None) == ""
