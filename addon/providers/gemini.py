"""Google's Gemini API (`generativelanguage.googleapis.com`): `generateContent`, and `streamGenerateContent` in
server-sent events (`?alt=sse`, what Google's SDKs and Gemini CLI ask for) or as one JSON array (without it:
recorded, never changed). The key travels in `x-goog-api-key` (or `?key=`); the model is the path's."""

from addon.providers.base import Api, Endpoint, Family

_MODELS = "/{version}/models/{model}"

FAMILY = Family(
    type="gemini",
    host="generativelanguage.googleapis.com",
    endpoints=(
        Endpoint(f"{_MODELS}:streamGenerateContent", Api.GEMINI, model="model", stream=True, query="alt=sse"),
        Endpoint(f"{_MODELS}:streamGenerateContent", Api.GEMINI, model="model", stream=True, tapped=True),
        Endpoint(f"{_MODELS}:generateContent", Api.GEMINI, model="model", stream=False),
    ),
    errors=Api.GEMINI.reader,
    overloaded=frozenset({429, 503, 504}),
    key_header="x-goog-api-key",
    key_param="key",
)
