"""aibridge: a mitmproxy addon that intercepts, streams and audits LLM calls of AI coding clients.

The data path, in the order a request takes it:

    proxy.py      mitmproxy hooks: pick provider hosts, route bridged requests, pass the rest through
    routing.py    which provider and API a request is for (pure)
    server.py     the in-process HTTP server bridged flows are re-targeted to, so responses can stream
    engine.py     one interception: upstream call, relay, parse, record
    wire/         what each provider API looks like on the wire (pure): SSE, Anthropic messages, OpenAI chat
    upstream.py   the bridge's own HTTP client to providers
    audit/        the DuckDB audit file: schema, typed events, the writer thread
"""
