"""`aibridge add-user` (what scripts/add-user runs): new tokens, the appended table, and its refusals."""

import re
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from addon.cli.main import cli
from addon.cli.users import new_token, user_table
from addon.config import TOKEN_PREFIX, User, hash_token, load_config
from addon.policy.access import Users

EXISTING = '[providers.anthropic]\nkey = "sk-ant-central"\n\n[budgets]\ngroups = { eng = 20 }\n'


def invoke(*argv: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["add-user", *argv])


def add(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run add-user; the token it printed."""
    result = invoke(*argv)
    assert result.exit_code == 0, result.output
    assert "shown once" in result.stderr
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1  # stdout carries the token only
    return result.stdout.strip()


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    result = invoke(*argv)
    assert result.exit_code == 2
    assert result.stdout == ""  # no token printed
    return result.stderr


def test_new_token_has_the_prefix_and_enough_entropy() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        secret = token.removeprefix(TOKEN_PREFIX)
        assert len(secret) >= 43  # 32 random bytes, URL-safe base64: 256 bits
        assert re.fullmatch(r"[A-Za-z0-9_-]+", secret)


def test_add_user_appends_a_valid_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "aibridge.toml"
    path.write_text(EXISTING, encoding="utf-8")
    token = add(capsys, "alice", "--groups", "eng, ops,", "--config", str(path))
    assert token.startswith(TOKEN_PREFIX)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(EXISTING)  # appended, nothing rewritten
    assert token not in text  # only the hash is stored
    config = load_config(str(path))
    assert config.users == (User(name="alice", token_hash=hash_token(token), groups=("eng", "ops")),)
    assert config.providers[0].key == "sk-ant-central"
    assert Users(config.users).by_token(token) == config.users[0]


def test_add_several_users_to_a_new_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "new.toml"
    alice = add(capsys, "alice", "--config", str(path))
    bob = add(capsys, "bob.smith", "--groups", "eng", "--config", str(path))
    assert alice != bob
    config = load_config(str(path))
    users = {u.name: u for u in config.users}
    assert users["alice"] == User(name="alice", token_hash=hash_token(alice), groups=())
    assert users["bob.smith"] == User(name="bob.smith", token_hash=hash_token(bob), groups=("eng",))
    assert '[users."bob.smith"]' in path.read_text(encoding="utf-8")


def test_the_file_is_made_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "aibridge.toml"
    path.write_text(EXISTING, encoding="utf-8")
    path.chmod(0o644)
    add(capsys, "alice", "--config", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    created = tmp_path / "created.toml"
    add(capsys, "bob", "--config", str(created))
    assert stat.S_IMODE(created.stat().st_mode) == 0o600


def test_an_existing_user_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "aibridge.toml"
    add(capsys, "alice", "--config", str(path))
    before = path.read_text(encoding="utf-8")
    assert "user 'alice' already exists" in refused(capsys, "alice", "--groups", "ops", "--config", str(path))
    assert path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize("name", ["", "-alice", ".alice", "al ice", "al:ice", "ålice", "a" * 65, "a/b"])
def test_an_invalid_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = tmp_path / "aibridge.toml"
    assert "invalid user name" in refused(capsys, "--config", str(path), "--", name)
    assert not path.exists()


def test_invalid_toml_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "aibridge.toml"
    path.write_text("[users.alice\n", encoding="utf-8")
    assert str(path) in refused(capsys, "bob", "--config", str(path))
    assert path.read_text(encoding="utf-8") == "[users.alice\n"


def test_user_table() -> None:
    digest = hash_token("aib_x")
    assert user_table("alice", digest, []) == f'\n[users.alice]\ntoken = "{digest}"\n'
    table = user_table("a.b", digest, ["eng", "ops"])
    assert table == f'\n[users."a.b"]\ntoken = "{digest}"\ngroups = ["eng", "ops"]\n'
    assert tomllib.loads(table) == {"users": {"a.b": {"token": digest, "groups": ["eng", "ops"]}}}
