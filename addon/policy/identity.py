"""How credentials are shown: masked, never whole."""


def mask_secret(secret: str) -> str:
    """Reveal a few characters at each end: 4 for 20+ characters, 2 for 10+, 1 for 5+, none below.

    `sk-ant-api03-abcdefgh` → `sk-a...efgh`; `short` → `s...t`; `abcd` → `...` (the reference's rule).
    """
    if not secret:
        return ""
    n = len(secret)
    reveal = 4 if n >= 20 else 2 if n >= 10 else 1 if n >= 5 else 0
    if n <= 2 * reveal or reveal == 0:
        return "..."
    return f"{secret[:reveal]}...{secret[-reveal:]}"
