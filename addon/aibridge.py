"""Entry point: `mitmdump -s addon/aibridge.py`. The addons themselves live in `addon.mitm`."""

from addon.mitm import addons as _addons

addons = _addons()
