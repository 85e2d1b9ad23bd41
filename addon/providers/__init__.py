"""Each provider family's facts in one module (hosts, recorded API paths, credentials, errors, overload
statuses), and the registry by type. Adding a provider is one module here, plus its wire format."""

from addon.providers import (
    anthropic,
    azure,
    bedrock,
    chatgpt,
    code_assist,
    copilot,
    foundry,
    gemini,
    mantle,
    openai,
    vertex,
)
from addon.providers.base import Api, Endpoint, Family

FAMILIES: dict[str, Family] = {
    f.type: f
    for f in (
        anthropic.FAMILY,
        openai.FAMILY,
        azure.FAMILY,
        chatgpt.FAMILY,
        copilot.FAMILY,
        vertex.FAMILY,
        foundry.FAMILY,
        bedrock.FAMILY,
        mantle.FAMILY,
        gemini.FAMILY,
        code_assist.FAMILY,
    )
}
"""Every family by type, in the order the configuration lists them; each is a default provider of its name."""

__all__ = ["FAMILIES", "Api", "Endpoint", "Family"]
