"""Credential kind and masked hint (reference §4)."""

import pytest

from addon.identity import client_credential, credential_info, mask_secret


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


@pytest.mark.parametrize(
    ("provider", "headers", "expected"),
    [
        ("anthropic", {"x-api-key": "sk-ant-api03-abcdefgh"}, ("byok", "sk-a...efgh")),
        ("anthropic", {"authorization": "Bearer sk-ant-oat01-zzzzzzzzzzzzzzzz"}, ("byok", "sk-a...zzzz")),
        (
            "anthropic",
            {"x-api-key": "sk-ant-api03-abcdefgh", "authorization": "Bearer other-token-xyz"},
            ("byok", "sk-a...efgh"),
        ),
        ("anthropic", {"x-api-key": "  ", "authorization": "Bearer thisisquitelong"}, ("byok", "th...ng")),
        ("openai", {"authorization": "Bearer sk-proj-0123456789abcdef"}, ("byok", "sk-p...cdef")),
        ("openai", {"authorization": "bearer  thisisquitelong "}, ("byok", "th...ng")),
        ("openai", {"x-api-key": "sk-ant-api03-abcdefgh"}, (None, None)),
        ("openai", {"authorization": "Basic dXNlcjpwYXNz"}, (None, None)),
        ("openai", {"authorization": "Bearer "}, (None, None)),
        ("anthropic", {}, (None, None)),
        ("openai", {}, (None, None)),
    ],
)
def test_credential_info(provider: str, headers: dict[str, str], expected: tuple) -> None:
    assert credential_info(provider, headers) == expected


def test_client_credential_returns_the_secret_itself() -> None:
    assert client_credential("anthropic", {"x-api-key": " k "}) == "k"
    assert client_credential("openai", {"authorization": "Bearer t"}) == "t"
