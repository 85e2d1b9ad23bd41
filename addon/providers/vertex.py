"""Google Vertex AI (`{region}-aiplatform.googleapis.com`; `aiplatform.googleapis.com` and
`aiplatform.us.rep.googleapis.com` for the multi-regions): Anthropic's models (the Messages body without its
model, which the path names, `:rawPredict` blocking and `:streamRawPredict` streamed) and Google's own (Gemini's
`generateContent` and `streamGenerateContent`, under a project and location or, in express mode, without). The
client's Google bearer token passes through unchanged (no central key)."""

from addon.providers.base import Api, Endpoint, Family

_MODELS = "/{version}/projects/{project}/locations/{region}/publishers/anthropic/models"
_GOOGLE = "{scope*}/publishers/google/models/{model}"

FAMILY = Family(
    type="vertex",
    host="*aiplatform*.googleapis.com",
    endpoints=(
        Endpoint(f"{_MODELS}/count-tokens:rawPredict", None),
        Endpoint(f"{_MODELS}/{{model}}:streamRawPredict", Api.ANTHROPIC_MESSAGES, model="model"),
        Endpoint(f"{_MODELS}/{{model}}:rawPredict", Api.ANTHROPIC_MESSAGES, model="model"),
        Endpoint(f"{_GOOGLE}:streamGenerateContent", Api.GEMINI, model="model", stream=True, query="alt=sse"),
        Endpoint(f"{_GOOGLE}:streamGenerateContent", Api.GEMINI, model="model", stream=True, tapped=True),
        Endpoint(f"{_GOOGLE}:generateContent", Api.GEMINI, model="model", stream=False),
    ),
    errors=Api.ANTHROPIC_MESSAGES.reader,
    overloaded=frozenset({429, 503, 504, 529}),
    key_header="x-goog-api-key",  # express mode's API keys (`?key=` too); else the Google bearer token
    key_param="key",
    central_keys=False,
)
