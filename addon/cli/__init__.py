"""`aibridge`: inspect the audit file, live through the proxy's query endpoint or from the file itself."""

from .main import cli

__all__ = ["cli"]
