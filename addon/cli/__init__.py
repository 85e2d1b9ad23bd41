"""`aibridge`: inspect the audit file, live through the proxy's query endpoint or from the file itself."""

from addon.cli.main import cli

__all__ = ["cli"]
