"""Fixtures every test may use: a real PostgreSQL server (`postgres_server`) and a fresh database (`pg_url`)."""

pytest_plugins = ["tests.support.postgres"]
