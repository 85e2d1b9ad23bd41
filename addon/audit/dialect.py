"""The few SQL fragments where DuckDB and PostgreSQL differ, so `queries` is written once for both stores.

Everything else the queries use (CTEs, `FILTER`, row comparisons, `array_agg(... ORDER BY ...)`, `unnest`,
positional `GROUP BY`, `?` placeholders: the PostgreSQL reader turns them into psycopg's) reads the same in both.
"""

from dataclasses import dataclass

_UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def arg_min(self, value: str, key: str) -> str:
        if self.postgres:
            return f"(array_agg({value} ORDER BY {key}))[1]"
        return f"arg_min({value}, {key})"

    def arg_max(self, value: str, key: str) -> str:
        if self.postgres:
            return f"(array_agg({value} ORDER BY {key} DESC))[1]"
        return f"arg_max({value}, {key})"

    def try_uuid(self, text: str) -> str:
        """`text` as a UUID, or NULL where it cannot be one."""
        if self.postgres:
            # the cast outside the CASE: PostgreSQL may fold a constant's cast before it tests the condition
            return f"(CASE WHEN {text} ~ '{_UUID_TEXT}' THEN {text} END)::UUID"
        return f"TRY_CAST({text} AS UUID)"

    def iso(self, column: str) -> str:
        """A TIMESTAMPTZ column as `queries._iso` writes it (UTC, `Z`, microseconds only when not zero), in SQL:
        faster than Python for results of thousands of rows."""
        if self.postgres:
            utc = f"({column} AT TIME ZONE 'UTC')"
            return (
                f"CASE WHEN date_trunc('second', {column}) = {column} "
                f'THEN to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\') '
                f'ELSE to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') END'
            )
        micros = f"epoch_us({column})"
        return (
            f"CASE WHEN {micros} % 1000000 = 0 THEN strftime(make_timestamp({micros}), '%Y-%m-%dT%H:%M:%SZ') "
            f"ELSE strftime(make_timestamp({micros}), '%Y-%m-%dT%H:%M:%S.%fZ') END"
        )

    def millis(self, start: str, end: str) -> str:
        """Whole milliseconds from one TIMESTAMPTZ to another (NULL where either is)."""
        if self.postgres:
            return f"floor(extract(epoch FROM {end} - {start}) * 1000)::BIGINT"
        return f"(epoch_us({end}) - epoch_us({start})) // 1000"

    def utc_day(self, column: str) -> str:
        """The UTC date of a TIMESTAMPTZ column (DuckDB: without a time zone conversion per row)."""
        if self.postgres:
            return f"({column} AT TIME ZONE 'UTC')::DATE"
        return f"make_timestamp(epoch_us({column}))::DATE"

    def day_text(self, day: str) -> str:
        """A DATE as `YYYY-MM-DD`."""
        if self.postgres:
            return f"to_char({day}, 'YYYY-MM-DD')"
        return f"strftime({day}, '%Y-%m-%d')"


DUCKDB = Dialect("duckdb")
POSTGRES = Dialect("postgresql")
