"""Anthropic: the Messages API (also under a prefix, as Anthropic-compatible gateways serve it), keys in
`x-api-key`, 529 when overloaded."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="anthropic",
    host="api.anthropic.com",
    endpoints=(Endpoint("{prefix*}/v1/messages", Api.ANTHROPIC_MESSAGES),),
    errors=Api.ANTHROPIC_MESSAGES.reader,
    overloaded=frozenset({429, 503, 504, 529}),
    key_header="x-api-key",
)
