"""Gemini CLI logged in with a Google account (`cloudcode-pa.googleapis.com`, Gemini Code Assist): Gemini's
request inside an envelope (`{model, project, user_prompt_id, request}`), answered in chunks inside one
(`{response, traceId}`). Recorded, never changed; the user's Google OAuth token passes as it came."""

from addon.providers.base import Api, Endpoint, Family

FAMILY = Family(
    type="code-assist",
    host="cloudcode-pa.googleapis.com",
    endpoints=(
        Endpoint("/{version}:streamGenerateContent", Api.GEMINI, stream=True, tapped=True),
        Endpoint("/{version}:generateContent", Api.GEMINI, stream=False, tapped=True),
    ),
    errors=Api.GEMINI.reader,
    overloaded=frozenset({429, 503, 504}),
    central_keys=False,
)
