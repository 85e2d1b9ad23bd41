"""Amazon Bedrock's runtime (`bedrock-runtime.{region}.amazonaws.com`): InvokeModel with Anthropic's Messages
bodies, and Converse, Bedrock's own format for every model (opencode, Cline, Roo, Goose), both streamed in AWS
event-stream frames. Recorded and passed through unchanged: the client's SigV4 signature covers the body, so
nothing in it may change (no central key). Priced by Bedrock's own model ids (`anthropic.claude-...-v1:0`).
"""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="bedrock",
    host="bedrock-runtime.*.amazonaws.com",
    endpoints=(
        Endpoint("/model/{model}/invoke-with-response-stream", Api.BEDROCK_INVOKE, model="model", stream=True),
        Endpoint("/model/{model}/invoke", Api.BEDROCK_INVOKE, model="model", stream=False),
        Endpoint("/model/{model}/converse-stream", Api.BEDROCK_CONVERSE, model="model", stream=True),
        Endpoint("/model/{model}/converse", Api.BEDROCK_CONVERSE, model="model", stream=False),
    ),
    errors=Api.BEDROCK_INVOKE.reader,
    overloaded=frozenset({429, 503, 504}),
    central_keys=False,
    prices="aws",
    sigv4_service="bedrock",
)
