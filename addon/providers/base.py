"""What the bridge knows of a provider family, and the APIs it records. Pure."""

import enum
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from addon.providers import sigv4
from addon.wire import AnthropicMessages, OpenAIChat, OpenAIResponses, WireFormat, WireReader
from addon.wire.bedrock import BedrockConverse, BedrockInvoke
from addon.wire.gemini import Gemini

Headers = Sequence[tuple[str, str]]


class Api(enum.Enum):
    """The provider APIs the bridge records: bridged ones (parsed, tools injected), and tapped ones (passed
    through unchanged, read for the audit on the way)."""

    ANTHROPIC_MESSAGES = "anthropic-messages"
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    BEDROCK_INVOKE = "bedrock-invoke"
    """Bedrock's InvokeModel: Anthropic's Messages bodies, streamed in AWS event-stream frames (bridged with a
    Bedrock API key; a SigV4-signed request is sealed, so tapped)."""
    BEDROCK_CONVERSE = "bedrock-converse"
    """Bedrock's Converse: its own format for every model, streamed in AWS event-stream frames."""
    GEMINI = "gemini"
    """Google's `generateContent` / `streamGenerateContent` (the Gemini API, Vertex AI, Code Assist)."""

    @property
    def tapped(self) -> bool:
        return self in (Api.OPENAI_RESPONSES, Api.BEDROCK_CONVERSE)

    @property
    def reader(self) -> WireReader:
        """The wire format that reads this API's exchanges (every recorded API has one)."""
        return _READERS[self]

    @property
    def wire(self) -> WireFormat:
        """The wire format the engine bridges this API with (tools injected, the loop run)."""
        return _WIRES[self]

    @property
    def vendor(self) -> str:
        """Whose models the API serves, as the price book names them, whoever hosts it."""
        if self is Api.BEDROCK_CONVERSE:
            return "aws"  # any model Bedrock serves, priced by Bedrock's own ids
        if self is Api.GEMINI:
            return "google"
        return "anthropic" if self in (Api.ANTHROPIC_MESSAGES, Api.BEDROCK_INVOKE) else "openai"


_WIRES: dict[Api, WireFormat] = {
    Api.ANTHROPIC_MESSAGES: AnthropicMessages(),
    Api.OPENAI_CHAT: OpenAIChat(),
    Api.BEDROCK_INVOKE: BedrockInvoke(),
    Api.GEMINI: Gemini(),
}
_READERS: dict[Api, WireReader] = {
    **_WIRES,
    Api.OPENAI_RESPONSES: OpenAIResponses(),
    Api.BEDROCK_CONVERSE: BedrockConverse(),
}


_PARAM = re.compile(r"\{(\w+)(\*?)\}")


@dataclass(frozen=True)
class Endpoint:
    """A recorded API path: literal text with `{name}` for one path segment and `{name*}` for any number of
    leading segments (a prefix such as `/api` or `/openai`, or none)."""

    pattern: str
    api: Api | None
    """None: a path that would match a later endpoint but is passed through (Vertex's `count-tokens`)."""
    model: str | None = None
    """The path parameter that names the model, for bodies that carry none (Azure deployments, Vertex)."""
    stream: bool | None = None
    """Whether the endpoint streams whatever the body says (Bedrock's `invoke-with-response-stream`)."""
    query: str | None = None
    """A `name=value` the query must hold for the path to be this endpoint (Gemini's `alt=sse`)."""
    tapped: bool = False
    """Recorded but never changed, whatever its API (a stream framing the bridge does not write)."""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts, last = [], 0
        for m in _PARAM.finditer(self.pattern):
            parts.append(re.escape(self.pattern[last : m.start()]))
            parts.append(f"(?P<{m.group(1)}>(?:/[^/?#]+)*?)" if m.group(2) else f"(?P<{m.group(1)}>[^/?#]+?)")
            last = m.end()
        parts.append(re.escape(self.pattern[last:]))
        object.__setattr__(self, "regex", re.compile("".join(parts)))

    def match(self, path: str, query: str = "") -> dict[str, str] | None:
        """The path parameters when `path` and its `query` are this endpoint's, else None."""
        if self.query is not None and self.query not in query.split("&"):
            return None
        m = self.regex.fullmatch(path)
        return m.groupdict() if m else None


def host_matches(pattern: str, host: str) -> bool:
    """`*` stands for any run of characters, dots included: `*.openai.azure.com`, `*-aiplatform.googleapis.com`."""
    return pattern == host or ("*" in pattern and fnmatch.fnmatchcase(host, pattern))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True, kw_only=True)
class Family:
    """One provider type: a configured provider (`config.Provider`) names its family by `type`."""

    type: str
    host: str
    """The host its clients call by default, or a pattern of them (`*.openai.azure.com`)."""
    endpoints: tuple[Endpoint, ...]
    """The paths whose POSTs are recorded, and as which API; every other path on the host passes through."""
    errors: WireReader
    """The wire format of its errors where the route's API does not say (passthrough routes)."""
    overloaded: frozenset[int]
    """Upstream statuses that mean "overloaded, try later": the circuit breaker counts them."""
    key_header: str | None = None
    """The header its API key travels in, when not `authorization: Bearer`; it wins over a bearer token."""
    key_param: str | None = None
    """A query parameter the key may travel in instead, read as the key header (Gemini's `?key=`)."""
    central_keys: bool = True
    """Whether a central key may stand in for the client's (not for per-user tokens: Copilot, ChatGPT)."""
    loop_headers: tuple[tuple[str, str], ...] = ()
    """Headers on the calls the bridge itself makes in a tool loop (Copilot counts them as the agent's)."""
    account_header: str | None = None
    """A header naming the client's account, recorded as a masked hint (`ChatGPT-Account-ID`)."""
    prices: str | None = None
    """The price book's name for the family, where it names models its own way (Bedrock's
    `anthropic.claude-...-v1:0`); else the API's vendor's."""
    sigv4_service: str | None = None
    """The AWS service its SigV4 signatures are for, where clients sign (and the operator may give the bridge
    AWS credentials to sign with); the region is the host's `*`."""

    def endpoint(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """The recorded endpoint `path` is, and its path parameters; the first that matches decides (the query
        only where an endpoint asks for a value in it)."""
        bare, _, query = path.partition("?")
        for endpoint in self.endpoints:
            if (params := endpoint.match(bare, query)) is not None:
                return (endpoint, params) if endpoint.api is not None else None
        return None

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """The provider credential the client sent (`headers` by lower-case name): a key, or the access key id
        of a SigV4 signature."""
        if self.sigv4_service and (key_id := sigv4.access_key(headers.get("authorization", ""))):
            return key_id
        if self.key_header and (key := headers.get(self.key_header, "").strip()):
            return key
        return bearer_token(headers)

    def with_key(self, headers: Headers, key: str) -> list[tuple[str, str]]:
        """`headers` carrying `key` as the family's credential, in place of whatever the client sent."""
        kept = [(n, v) for n, v in headers if n.lower() not in AUTH_HEADERS]
        return [*kept, (self.key_header, key) if self.key_header else ("authorization", f"Bearer {key}")]


AUTH_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
"""Headers a client's credential may be in, for any family."""
