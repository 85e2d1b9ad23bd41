"""Which store a target names, and how a URL is shown in messages (never with its password)."""

import pytest

from addon.audit.store import is_postgres, masked


@pytest.mark.parametrize(
    ("target", "postgres"),
    [
        ("postgresql://aibridge@db:5432/audit", True),
        ("postgres://db/audit", True),
        ("aibridge.duckdb", False),
        ("/var/lib/aibridge/postgresql.duckdb", False),
        (":memory:", False),
    ],
)
def test_the_target_names_the_store(target: str, postgres: bool) -> None:
    assert is_postgres(target) is postgres


def test_a_password_never_shows() -> None:
    assert masked("postgresql://bridge:s3cret@db.internal:6432/audit?sslmode=require") == (
        "postgresql://bridge:***@db.internal:6432/audit?sslmode=require"
    )
    assert masked("postgresql://bridge@db/audit") == "postgresql://bridge@db/audit"
    assert masked("aibridge.duckdb") == "aibridge.duckdb"
