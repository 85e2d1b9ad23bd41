"""What a fleet of proxies shares through the PostgreSQL audit database: budgets, rate limits, key cooldowns.

Each proxy asks the database at the moment of decision (one function call, atomic there), so limits hold
exactly across the fleet; when the database does not answer, each limit falls back to the proxy's own books
or refuses, as configured (`on_store_down`), and says so in the log and the metrics.
"""
