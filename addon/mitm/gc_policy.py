"""Garbage collection for a long-running proxy: what a full collection would stall, kept out of its way.

A full collection passes over every object the process holds: mitmproxy, the SDKs' and MCP's modules, the price
book, and every live flow and stream. Under load that took 0.1–0.2 s on this project's machine kind, a stall for
every stream in flight at once.
"""

import gc

FULL_COLLECTION_EVERY = 100
"""Middle-generation garbage collections between full ones (CPython's default is 10)."""


def settle() -> None:
    """Call once start-up has loaded what lives as long as the process.

    It is frozen out of the collector (`gc.freeze`). A full collection then still passes over every live flow
    and stream: CPython runs one after ten middle-generation passes once survivors reach a quarter of what the
    last full pass kept, and with the rest frozen that is little, so under sustained streaming they came seconds
    apart. A hundred passes makes it minutes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*gc.get_threshold()[:2], FULL_COLLECTION_EVERY)
