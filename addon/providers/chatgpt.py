"""Codex logged in with ChatGPT (`chatgpt.com/backend-api/codex/responses`): the Responses API, tapped, the
account recorded as a masked hint. Its tokens are each user's own: no central key."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="chatgpt",
    host="chatgpt.com",
    endpoints=(Endpoint("/backend-api/codex/responses", Api.OPENAI_RESPONSES),),
    errors=Api.OPENAI_CHAT.reader,
    overloaded=frozenset({429, 503, 504}),
    central_keys=False,
    account_header="chatgpt-account-id",
)
