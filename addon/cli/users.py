"""`aibridge add-user` (and `scripts/add-user`): create a user's bridge token, store its hash in the
configuration, print it once.

    aibridge add-user alice --groups eng,ops --config aibridge.toml

The token (prefix `aib_`) goes in the user's proxy URL, `HTTPS_PROXY=http://alice:<token>@host:port`, and may
also serve as their API key so the bridge substitutes the provider's central key. Only its SHA-256 is stored.
"""

import json
import re
import secrets
import tomllib
from pathlib import Path

import click

from addon.config import TOKEN_PREFIX, USER_NAME, hash_token


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def user_table(name: str, token_hash: str, groups: list[str]) -> str:
    lines = [
        f"\n[users.{json.dumps(name) if not re.fullmatch(r'[A-Za-z0-9_-]+', name) else name}]",
        f'token = "{token_hash}"',
    ]
    if groups:
        lines.append(f"groups = {json.dumps(groups)}")
    return "\n".join(lines) + "\n"


@click.command("add-user")
@click.argument("name")
@click.option("--groups", default="", help="Comma-separated groups, for group budgets.")
@click.option(
    "--config", "config_path", default="aibridge.toml", show_default=True, help="The TOML configuration to add to."
)
def add_user(name: str, groups: str, config_path: str) -> None:
    """Create a user's bridge token, store its hash in the configuration, print it once.

    The token goes in the user's proxy URL (HTTPS_PROXY=http://NAME:TOKEN@host:port) and may also serve as
    their API key. Only its SHA-256 is stored; stdout carries the token alone, for scripts.
    """
    if not USER_NAME.match(name):
        raise click.UsageError(f"invalid user name {name!r} (letters, digits, '.', '_', '-'; at most 64)")
    path = Path(config_path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        existing = tomllib.loads(text).get("users", {})
    except tomllib.TOMLDecodeError as e:
        raise click.UsageError(f"{path}: {e}") from None
    if name in existing:
        raise click.UsageError(f"user {name!r} already exists in {path}")
    token = new_token()
    with path.open("a", encoding="utf-8") as f:
        f.write(user_table(name, hash_token(token), [g.strip() for g in groups.split(",") if g.strip()]))
    path.chmod(0o600)
    click.echo(f"Added {name} to {path}. Their token (shown once, stored only as a hash):", err=True)
    click.echo(token)
