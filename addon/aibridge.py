"""Entry point: `mitmdump -s addon/aibridge.py`. The addon itself lives in the `addon` package."""

from addon.proxy import Bridge

addons = [Bridge()]
