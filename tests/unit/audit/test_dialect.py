"""Each SQL fragment where the stores differ gives the same value on a real DuckDB and a real PostgreSQL."""

from collections.abc import Iterator
from typing import Any

import duckdb
import psycopg
import pytest

from addon.audit.dialect import DUCKDB, POSTGRES, Dialect

UUID_TEXT = "0190c3a1-2b3c-7d4e-8f90-a1b2c3d4e5f6"


@pytest.fixture
def both(pg_url: str) -> Iterator[dict[Dialect, Any]]:
    with duckdb.connect() as duck, psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("SET TIME ZONE 'Europe/Paris'")  # the fragments must not depend on the session's zone
        duck.execute("SET TimeZone = 'Europe/Paris'")

        def on_duckdb(sql: str) -> Any:
            return duck.execute(sql).fetchall()[0][0]

        def on_postgres(sql: str) -> Any:
            return pg.execute(sql.replace("%", "%%")).fetchall()[0][0]

        yield {DUCKDB: on_duckdb, POSTGRES: on_postgres}


def same(both: dict[Dialect, Any], fragment: Any, source: str = "") -> Any:
    values = {d.name: run(f"SELECT {fragment(d)} {source}") for d, run in both.items()}
    assert values["duckdb"] == values["postgresql"], values
    return values["duckdb"]


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        ("2026-03-01 23:30:00+00", "2026-03-01T23:30:00Z"),
        ("2026-03-01 23:30:00.000120+00", "2026-03-01T23:30:00.000120Z"),
        ("2026-03-02 00:30:00+01", "2026-03-01T23:30:00Z"),
    ],
)
def test_iso_text_is_utc_with_microseconds_only_when_there_are_some(
    both: dict[Dialect, Any], moment: str, text: str
) -> None:
    assert same(both, lambda d: d.iso(f"'{moment}'::TIMESTAMPTZ")) == text


def test_the_utc_day_and_its_text(both: dict[Dialect, Any]) -> None:
    moment = "'2026-03-01 23:30:00+00'::TIMESTAMPTZ"  # already the 2nd in Paris
    assert same(both, lambda d: d.day_text(d.utc_day(moment))) == "2026-03-01"


@pytest.mark.parametrize(("text", "is_uuid"), [(UUID_TEXT, True), ("cc-1", False), ("", False)])
def test_try_uuid_is_null_for_what_cannot_be_one(both: dict[Dialect, Any], text: str, is_uuid: bool) -> None:
    value = same(both, lambda d: f"{d.try_uuid(f"'{text}'")}::VARCHAR")
    assert value == (text if is_uuid else None)


def test_arg_min_and_arg_max(both: dict[Dialect, Any]) -> None:
    rows = "FROM (VALUES ('b', 2), ('a', 3), ('c', 1)) AS t(v, k)"
    assert same(both, lambda d: d.arg_min("v", "k"), rows) == "c"
    assert same(both, lambda d: d.arg_max("v", "k"), rows) == "a"
