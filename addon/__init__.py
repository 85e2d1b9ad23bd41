"""aibridge: a mitmproxy addon that intercepts, streams and audits the LLM calls of AI coding clients.

The data path, in the order a request takes it:

    mitm/        the mitmproxy adapters: proxy users, the Bridge addon (TLS scope, routing hooks), the local
                 hop server bridged flows stream from, the Operations addon; the only importer of mitmproxy
    gateway.py   the front door: decide (pass through, refuse, tap, bridge) and assemble the bridge
    inprocess.py the same front door as an httpx2 transport, for Python callers without the proxy
    providers/   each provider family's facts (hosts, API paths, credentials, errors) and routing
    policy/      who may call what at what cost: access, identity, budgets, pricing, the circuit breaker
    engine/      one interception: the job, relay, the tool loop, what is recorded; the tap
    wire/        each API's wire format, pure and standard library only
    upstream/    the bridge's HTTP client to providers, its transport, content-encodings
    tools.py     MCP servers: connections, tool names, calls, results (the only importer of mcp)
    audit/       the DuckDB audit file: schema, events, the writer thread, queries (the only importer of duckdb)
    observe/     metrics, traces, API dumps, JSON logs: observers of the engine
    cli/         the `aibridge` command, and `add-user`
    config.py    the TOML configuration
"""
