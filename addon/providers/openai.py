"""OpenAI and OpenAI-compatible endpoints (under a prefix: OpenRouter `/api/v1`, Groq `/openai/v1`, DeepSeek,
vLLM): Chat Completions bridged, Responses tapped, bearer keys."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="openai",
    host="api.openai.com",
    endpoints=(
        Endpoint("{prefix*}/chat/completions", Api.OPENAI_CHAT),
        Endpoint("{prefix*}/responses", Api.OPENAI_RESPONSES),
    ),
    errors=Api.OPENAI_CHAT.reader,
    overloaded=frozenset({429, 503, 504}),
)
