"""What the bridge knows of a provider family, and the APIs it records. Pure."""

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from addon.wire import AnthropicMessages, OpenAIChat, OpenAIResponses, WireFormat, WireReader

Headers = Sequence[tuple[str, str]]


class Api(enum.Enum):
    """The provider APIs the bridge records: bridged ones (parsed, tools injected), and tapped ones (passed
    through unchanged, read for the audit on the way)."""

    ANTHROPIC_MESSAGES = "anthropic-messages"
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"

    @property
    def tapped(self) -> bool:
        return self is Api.OPENAI_RESPONSES

    @property
    def reader(self) -> WireReader:
        """The wire format that reads this API's exchanges (every recorded API has one)."""
        return _READERS[self]

    @property
    def wire(self) -> WireFormat:
        """The wire format the engine bridges this API with (tools injected, the loop run)."""
        return _WIRES[self]


_WIRES: dict[Api, WireFormat] = {Api.ANTHROPIC_MESSAGES: AnthropicMessages(), Api.OPENAI_CHAT: OpenAIChat()}
_READERS: dict[Api, WireReader] = {**_WIRES, Api.OPENAI_RESPONSES: OpenAIResponses()}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True, kw_only=True)
class Family:
    """One provider type: a configured provider (`config.Provider`) names its family by `type`."""

    type: str
    host: str
    """The host its clients call by default."""
    endpoints: Mapping[str, Api]
    """The paths whose POSTs are recorded, and as which API; every other path on the host passes through."""
    errors: WireReader
    """The wire format whose error body every route of the family answers with."""
    overloaded: frozenset[int]
    """Upstream statuses that mean "overloaded, try later": the circuit breaker counts them."""
    key_header: str | None = None
    """The header its API key travels in, when not `authorization: Bearer`; it wins over a bearer token."""

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """The provider credential the client sent (`headers` by lower-case name)."""
        if self.key_header and (key := headers.get(self.key_header, "").strip()):
            return key
        return bearer_token(headers)

    def with_key(self, headers: Headers, key: str) -> list[tuple[str, str]]:
        """`headers` carrying `key` as the family's credential, in place of whatever the client sent."""
        kept = [(n, v) for n, v in headers if n.lower() not in AUTH_HEADERS]
        return [*kept, (self.key_header, key) if self.key_header else ("authorization", f"Bearer {key}")]

    def error_body(self, status: int, message: str) -> bytes:
        return self.errors.error_body(status, message)


AUTH_HEADERS = ("authorization", "x-api-key")
"""Headers a client's credential may be in, for any family."""
