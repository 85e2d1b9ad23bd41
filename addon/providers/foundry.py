"""Anthropic's models on Microsoft Foundry (`{resource}.services.ai.azure.com/anthropic/v1/messages`): the
Messages API as Anthropic serves it, keys in `x-api-key` (or an Entra bearer token)."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="foundry",
    host="*.services.ai.azure.com",
    endpoints=(Endpoint("{prefix*}/anthropic/v1/messages", Api.ANTHROPIC_MESSAGES),),
    errors=Api.ANTHROPIC_MESSAGES.reader,
    overloaded=frozenset({429, 503, 504, 529}),
    key_header="x-api-key",
)
