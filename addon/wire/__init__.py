"""What each provider API looks like on the wire. Pure: bytes and JSON in, typed values and bytes out."""

from .anthropic_messages import AnthropicMessages
from .base import RequestInfo, ResponseParser, Thought, ToolCall, Turn, Usage, WireFormat, WireReader
from .openai_chat import OpenAIChat
from .openai_responses import OpenAIResponses

__all__ = [
    "AnthropicMessages",
    "OpenAIChat",
    "OpenAIResponses",
    "RequestInfo",
    "ResponseParser",
    "Thought",
    "ToolCall",
    "Turn",
    "Usage",
    "WireFormat",
    "WireReader",
]
