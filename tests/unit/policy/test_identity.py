"""Credential kind and masked hint (reference §4)."""

import pytest

from addon.policy.identity import mask_secret
from addon.providers import FAMILIES


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("sk-ant-api03-abcdefgh", "sk-a...efgh"),
        ("thisisquitelong", "th...ng"),
        ("short", "s...t"),
        ("abcd", "..."),
        ("", ""),
        ("a", "..."),
        ("123456789", "1...9"),
        ("0123456789", "01...89"),
        ("0123456789012345678", "01...78"),
        ("01234567890123456789", "0123...6789"),
        ("éééééßßßßß", "éé...ßß"),  # runes, not bytes
    ],
)
def test_mask_secret(secret: str, masked: str) -> None:
    assert mask_secret(secret) == masked


def test_hint_never_longer_than_eleven_characters() -> None:
    assert len(mask_secret("sk-" + "x" * 200)) == 11


def test_client_credential_returns_the_secret_itself() -> None:
    assert FAMILIES["anthropic"].credential({"x-api-key": " k "}) == "k"
    assert FAMILIES["openai"].credential({"authorization": "Bearer t"}) == "t"
