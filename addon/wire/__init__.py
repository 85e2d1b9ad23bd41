"""What each provider API looks like on the wire. Pure: bytes and JSON in, typed values and bytes out."""

from addon.wire.anthropic_messages import AnthropicMessages
from addon.wire.base import (
    RequestInfo,
    ResponseParser,
    Thought,
    ToolCall,
    ToolResult,
    Turn,
    Usage,
    WireFormat,
    WireReader,
)
from addon.wire.gemini import Gemini
from addon.wire.openai_chat import OpenAIChat
from addon.wire.openai_responses import OpenAIResponses

__all__ = [
    "AnthropicMessages",
    "Gemini",
    "OpenAIChat",
    "OpenAIResponses",
    "RequestInfo",
    "ResponseParser",
    "Thought",
    "ToolCall",
    "ToolResult",
    "Turn",
    "Usage",
    "WireFormat",
    "WireReader",
]
