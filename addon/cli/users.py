"""`scripts/add-user`: create a user's bridge token, store its hash in the configuration, print it once.

    scripts/add-user alice --groups eng,ops --config aibridge.toml

The token (prefix `aib_`) goes in the user's proxy URL, `HTTPS_PROXY=http://alice:<token>@host:port`, and may
also serve as their API key so the bridge substitutes the provider's central key. Only its SHA-256 is stored.
"""

import argparse
import json
import re
import secrets
import sys
import tomllib
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/add-user", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the user's name (letters, digits, '.', '_', '-')")
    parser.add_argument("--groups", default="", help="comma-separated groups, for group budgets")
    parser.add_argument("--config", default="aibridge.toml", help="the TOML configuration to add to")
    args = parser.parse_args(argv)
    if not USER_NAME.match(args.name):
        parser.error(f"invalid user name {args.name!r}")
    path = Path(args.config)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        existing = tomllib.loads(text).get("users", {})
    except tomllib.TOMLDecodeError as e:
        parser.error(f"{path}: {e}")
    if args.name in existing:
        parser.error(f"user {args.name!r} already exists in {path}")
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    token = new_token()
    with path.open("a", encoding="utf-8") as f:
        f.write(user_table(args.name, hash_token(token), groups))
    path.chmod(0o600)
    print(f"Added {args.name} to {path}. Their token (shown once, stored only as a hash):", file=sys.stderr)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
