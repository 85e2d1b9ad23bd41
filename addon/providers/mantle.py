"""Amazon Bedrock Mantle (`bedrock-mantle.{region}.api.aws`): Anthropic's Messages API as Anthropic serves it, under
`/anthropic` (Claude Code's `CLAUDE_CODE_USE_MANTLE`), and OpenAI's Chat Completions and Responses under `/v1`.
A Bedrock API key (Bearer) can be reused for a tool loop's further calls, so such requests are bridged; a
SigV4-signed one covers its body and is only tapped (`routing.sealed`). Priced by Bedrock's model ids."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="bedrock-mantle",
    host="bedrock-mantle.*.api.aws",
    endpoints=(
        Endpoint("/anthropic/v1/messages", Api.ANTHROPIC_MESSAGES),
        Endpoint("/v1/chat/completions", Api.OPENAI_CHAT),
        Endpoint("/v1/responses", Api.OPENAI_RESPONSES),
    ),
    errors=Api.ANTHROPIC_MESSAGES.reader,
    overloaded=frozenset({429, 503, 504, 529}),
    central_keys=False,
    prices="aws",
    sigv4_service="bedrock-mantle",
)
