"""OpenAI: Chat Completions (bridged) and Responses (tapped), bearer keys."""

from addon.providers.base import Api, Family

FAMILY = Family(
    type="openai",
    host="api.openai.com",
    endpoints={"/v1/chat/completions": Api.OPENAI_CHAT, "/v1/responses": Api.OPENAI_RESPONSES},
    errors=Api.OPENAI_CHAT.reader,
    overloaded=frozenset({429, 503, 504}),
)
