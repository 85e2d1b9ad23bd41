"""What each provider API looks like on the wire. Pure: bytes and JSON in, typed values and bytes out."""

from .anthropic_messages import AnthropicMessages
from .base import RequestInfo, ResponseParser, Thought, ToolCall, Turn, Usage, WireFormat
from .openai_chat import OpenAIChat

__all__ = [
    "AnthropicMessages",
    "OpenAIChat",
    "RequestInfo",
    "ResponseParser",
    "Thought",
    "ToolCall",
    "Turn",
    "Usage",
    "WireFormat",
]
