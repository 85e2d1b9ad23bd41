"""What token usage costs, in integer micro-dollars (US$ 1 = 1,000,000).

Prices come from the `genai-prices` package's offline price book, or from `[prices."<provider>/<model>"]`
overrides. A price of US$ P per million tokens is P micro-dollars per token, so each kind of token is priced
as `tokens × P`, separately: uncached input, output, cache reads, and cache writes (5-minute and 1-hour apart
where the provider distinguishes them). Tiered prices (Anthropic's long-context rates) apply by the request's
total input. Usage the book cannot price gets no cost (NULL in the audit), never a silent zero.
"""

import functools
import logging
import warnings
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from addon.config import PriceOverride
from addon.wire.base import Usage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prices:
    """US$ per million tokens, as applied."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    source: str

    def as_json(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "cache_read": str(self.cache_read),
            "cache_write": str(self.cache_write),
            "cache_write_1h": str(self.cache_write_1h),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Cost:
    input: int
    output: int
    cache_read: int
    cache_write: int
    prices: Prices

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write


def _micros(tokens: int, per_million: Decimal) -> int:
    return int((Decimal(tokens) * per_million).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _tier(price: Any, total_input: int) -> Decimal | None:
    """A genai-prices price (a Decimal, or base + tiers by input size) at this request's size."""
    if price is None:
        return None
    if isinstance(price, Decimal):
        return price
    value = price.base
    for tier in sorted(price.tiers, key=lambda t: t.start):
        if total_input > tier.start:
            value = tier.price
    return Decimal(value)


class PriceBook:
    def __init__(self, overrides: tuple[tuple[str, PriceOverride], ...] = ()) -> None:
        self._overrides = dict(overrides)
        self._unpriced: set[str] = set()

    def prices(self, provider: str, model: str, total_input: int = 0) -> Prices | None:
        if (override := self._overrides.get(f"{provider}/{model}")) is not None:
            return _from_override(override, f"config prices.{provider}/{model}")
        if (mp := _book_price(provider, model)) is None:
            return None
        base_input = _tier(mp.get("input_mtok"), total_input)
        output = _tier(mp.get("output_mtok"), total_input)
        if base_input is None or output is None:
            return None
        cache_read = _tier(mp.get("cache_read_mtok"), total_input)
        cache_write = _tier(mp.get("cache_write_mtok"), total_input)
        cache_write = cache_write if cache_write is not None else base_input
        cache_write_1h = _tier(mp.get("cache_write_1h_mtok"), total_input)
        return Prices(
            input=base_input,
            output=output,
            cache_read=cache_read if cache_read is not None else base_input,
            cache_write=cache_write,
            cache_write_1h=cache_write_1h if cache_write_1h is not None else cache_write,
            source=f"genai-prices {provider}/{model}",
        )

    def cost(self, provider: str, model: str | None, usage: Usage) -> Cost | None:
        """The cost of one upstream response's usage; None (and a warning, once) when it cannot be priced."""
        total_input = usage.input + usage.cache_read + usage.cache_write
        prices = self.prices(provider, model, total_input) if model else None
        if prices is None:
            key = f"{provider}/{model}"
            if key not in self._unpriced:
                self._unpriced.add(key)
                logger.warning("aibridge: no price for %s; its usage is recorded unpriced (add [prices])", key)
            return None
        one_hour = usage.extra.get("cache_write_1h", 0) if isinstance(usage.extra.get("cache_write_1h"), int) else 0
        one_hour = min(one_hour, usage.cache_write)
        return Cost(
            input=_micros(usage.input, prices.input),
            output=_micros(usage.output, prices.output),
            cache_read=_micros(usage.cache_read, prices.cache_read),
            cache_write=_micros(usage.cache_write - one_hour, prices.cache_write)
            + _micros(one_hour, prices.cache_write_1h),
            prices=prices,
        )

    def estimate(self, provider: str, model: str | None, input_tokens: int, max_output: int) -> int:
        """A reservation for a request not yet answered: all input uncached, every allowed output token."""
        prices = self.prices(provider, model, input_tokens) if model else None
        if prices is None:
            return 0
        return _micros(input_tokens, prices.input) + _micros(max_output, prices.output)


def load_book() -> None:
    """Load the bundled price book now (it is otherwise loaded by the first lookup)."""
    from genai_prices.data_snapshot import get_snapshot

    get_snapshot()


@functools.lru_cache(maxsize=1024)
def _book_price(provider: str, model: str) -> dict[str, Any] | None:
    """The book's price fields for a model; cached, as a lookup costs more than the rest of a request's audit."""
    try:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(calc_price(PriceUsage(input_tokens=1), model, provider_id=provider).model_price.__dict__)
    except (LookupError, ValueError):
        return None


def _from_override(o: PriceOverride, source: str) -> Prices:
    d = Decimal
    cache_write = d(str(o.cache_write)) if o.cache_write is not None else d(str(o.input))
    return Prices(
        input=d(str(o.input)),
        output=d(str(o.output)),
        cache_read=d(str(o.cache_read)) if o.cache_read is not None else d(str(o.input)),
        cache_write=cache_write,
        cache_write_1h=d(str(o.cache_write_1h)) if o.cache_write_1h is not None else cache_write,
        source=source,
    )
