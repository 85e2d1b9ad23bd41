"""Azure OpenAI (`{resource}.openai.azure.com`): deployment paths (the model named by the deployment when the
body has none) and the `/openai/v1/` paths; keys in `api-key` (or Entra bearer tokens)."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="azure",
    host="*.openai.azure.com",
    endpoints=(
        Endpoint("/openai/deployments/{deployment}/chat/completions", Api.OPENAI_CHAT, model="deployment"),
        Endpoint("/openai/v1/chat/completions", Api.OPENAI_CHAT),
        Endpoint("/openai/deployments/{deployment}/responses", Api.OPENAI_RESPONSES, model="deployment"),
        Endpoint("/openai/v1/responses", Api.OPENAI_RESPONSES),
        Endpoint("/openai/responses", Api.OPENAI_RESPONSES),
    ),
    errors=Api.OPENAI_CHAT.reader,
    overloaded=frozenset({429, 503, 504}),
    key_header="api-key",
)
