"""GitHub Copilot (`api.githubcopilot.com`, and the individual, business and enterprise hosts): Chat
Completions and Anthropic Messages bridged, Responses tapped; the client's Copilot token passed as it came.
The bridge's own calls in a tool loop say `X-Initiator: agent`, as Copilot's clients do for theirs."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="copilot",
    host="api*.githubcopilot.com",
    endpoints=(
        Endpoint("{prefix*}/chat/completions", Api.OPENAI_CHAT),
        Endpoint("{prefix*}/responses", Api.OPENAI_RESPONSES),
        Endpoint("{prefix*}/v1/messages", Api.ANTHROPIC_MESSAGES),
    ),
    errors=Api.OPENAI_CHAT.reader,
    overloaded=frozenset({429, 503, 504}),
    central_keys=False,
    loop_headers=(("x-initiator", "agent"),),
)
