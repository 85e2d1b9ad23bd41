"""The audit in a browser (`aibridge web`): read-only pages over the same queries as the CLI."""
