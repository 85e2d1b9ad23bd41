"""Entry point: `mitmdump -s addon/aibridge.py`. The addons themselves live in the `addon` package."""

from addon.mitm.bridge import Bridge
from addon.mitm.operations import Operations

bridge = Bridge()
addons = [bridge, Operations(bridge)]  # in this order: Operations observes what the Bridge routed
