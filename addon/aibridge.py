"""Entry point: `mitmdump -s addon/aibridge.py`. The addons themselves live in the `addon` package."""

from addon.observe.addon import Operations
from addon.proxy import Bridge

bridge = Bridge()
addons = [bridge, Operations(bridge)]  # in this order: Operations observes what the Bridge routed
