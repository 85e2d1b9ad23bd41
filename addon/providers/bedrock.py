"""Amazon Bedrock's runtime (`bedrock-runtime.{region}.amazonaws.com`): InvokeModel with Anthropic's Messages
bodies, its answers streamed in AWS event-stream frames. Recorded and passed through unchanged: the client's
SigV4 signature covers the body, so nothing in it may change (no central key). Converse passes through unread.
"""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="bedrock",
    host="bedrock-runtime.*.amazonaws.com",
    endpoints=(
        Endpoint("/model/{model}/invoke-with-response-stream", Api.BEDROCK_INVOKE, model="model", stream=True),
        Endpoint("/model/{model}/invoke", Api.BEDROCK_INVOKE, model="model", stream=False),
    ),
    errors=Api.ANTHROPIC_MESSAGES.reader,
    overloaded=frozenset({429, 503, 504}),
    central_keys=False,
)
