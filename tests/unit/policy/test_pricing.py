"""Token costs in micro-dollars, from the genai-prices book or [prices] overrides (addon/policy/pricing.py).

The expected amounts are worked out by hand: US$ P per million tokens is P micro-dollars per token.
"""

import logging
from decimal import Decimal

import pytest

from addon.config import PriceOverride, parse_config
from addon.policy.pricing import Cost, PriceBook, Prices
from addon.wire.base import Usage

D = Decimal
SONNET = Prices(input=D(3), output=D(15), cache_read=D("0.3"), cache_write=D("3.75"), cache_write_1h=D(6), source="")


def without_source(prices: Prices | None) -> tuple[Decimal, ...]:
    assert prices is not None
    return (prices.input, prices.output, prices.cache_read, prices.cache_write, prices.cache_write_1h)


def cost_of(book: PriceBook, provider: str, model: str, usage: Usage) -> Cost:
    cost = book.cost(provider, model, usage)
    assert cost is not None
    return cost


# --- the genai-prices book ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929"])
def test_sonnet_4_5_prices(model: str) -> None:
    prices = PriceBook().prices("anthropic", model)
    assert without_source(prices) == (D(3), D(15), D("0.3"), D("3.75"), D(6))
    assert prices is not None and prices.source == f"genai-prices anthropic/{model}"


def test_gpt_4_1_prices_fill_cache_writes_from_input() -> None:
    prices = PriceBook().prices("openai", "gpt-4.1")
    assert without_source(prices) == (D(2), D(8), D("0.5"), D(2), D(2))


def test_sonnet_4_5_cost_per_kind() -> None:
    usage = Usage(input=1_000, output=2_000, cache_read=10_000, cache_write=4_000, extra={"cache_write_1h": 1_000})
    cost = PriceBook().cost("anthropic", "claude-sonnet-4-5", usage)
    assert cost is not None
    assert cost.input == 1_000 * 3  # US$0.003
    assert cost.output == 2_000 * 15
    assert cost.cache_read == 3_000  # 10,000 × 0.30
    assert cost.cache_write == 3_000 * 3.75 + 1_000 * 6  # 11,250 (5 minutes) + 6,000 (1 hour)
    assert cost.total == 3_000 + 30_000 + 3_000 + 17_250
    assert cost.prices.as_json() == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "cache_write_1h": "6",
        "source": "genai-prices anthropic/claude-sonnet-4-5",
    }


def test_gpt_4_1_cost_per_kind() -> None:
    usage = Usage(input=1_000_000, output=500_000, cache_read=2_000_000)
    cost = PriceBook().cost("openai", "gpt-4.1", usage)
    assert cost is not None
    assert (cost.input, cost.output, cost.cache_read, cost.cache_write) == (2_000_000, 4_000_000, 1_000_000, 0)
    assert cost.total == 7_000_000  # US$7


@pytest.mark.parametrize(
    ("cache_write", "extra", "expected"),
    [
        (1_000, {}, 3_750),  # no breakdown: all 5-minute writes
        (1_000, {"cache_write_5m": 1_000, "cache_write_1h": 0}, 3_750),
        (1_000, {"cache_write_5m": 0, "cache_write_1h": 1_000}, 6_000),
        (1_000, {"cache_write_5m": 400, "cache_write_1h": 600}, 400 * 3.75 + 600 * 6),
        (1_000, {"cache_write_1h": 5_000}, 6_000),  # capped at the writes there are
        (1_000, {"cache_write_1h": "600"}, 3_750),  # not a count: ignored
    ],
)
def test_one_hour_cache_writes_are_priced_apart(cache_write: int, extra: dict, expected: float) -> None:
    cost = PriceBook().cost("anthropic", "claude-sonnet-4-5", Usage(cache_write=cache_write, extra=extra))
    assert cost is not None
    assert cost.cache_write == expected
    assert cost.total == expected


def test_long_context_tier_by_total_input() -> None:
    book = PriceBook()
    assert without_source(book.prices("anthropic", "claude-sonnet-4-5", 200_000))[0] == D(3)
    assert without_source(book.prices("anthropic", "claude-sonnet-4-5", 200_001)) == (
        D(6),
        D("22.5"),
        D("0.6"),
        D("7.5"),
        D(12),
    )
    at_limit = book.cost("anthropic", "claude-sonnet-4-5", Usage(input=100_000, cache_read=100_000, output=10))
    assert at_limit is not None
    assert (at_limit.input, at_limit.cache_read, at_limit.output) == (300_000, 30_000, 150)
    # Cached tokens count towards the request's size: one more token switches every kind to the long rate.
    over = book.cost(
        "anthropic", "claude-sonnet-4-5", Usage(input=100_000, cache_read=100_000, cache_write=1, output=10)
    )
    assert over is not None
    assert (over.input, over.cache_read, over.cache_write, over.output) == (600_000, 60_000, 8, 225)  # 7.5 → 8


def test_gpt_4_1_has_no_tier() -> None:
    assert without_source(PriceBook().prices("openai", "gpt-4.1", 900_000)) == (D(2), D(8), D("0.5"), D(2), D(2))


def test_micros_round_half_up() -> None:
    book = PriceBook()
    assert cost_of(book, "openai", "gpt-4.1", Usage(cache_read=1)).cache_read == 1  # 0.5
    assert cost_of(book, "openai", "gpt-4.1", Usage(cache_read=3)).cache_read == 2  # 1.5
    assert cost_of(book, "openai", "gpt-4.1", Usage(cache_read=5)).cache_read == 3  # 2.5
    assert cost_of(book, "anthropic", "claude-sonnet-4-5", Usage(cache_read=1)).cache_read == 0  # 0.3
    assert cost_of(book, "anthropic", "claude-sonnet-4-5", Usage()).total == 0


# --- overrides ------------------------------------------------------------------------------------------


def test_override_wins_over_the_book() -> None:
    book = PriceBook((("anthropic/claude-sonnet-4-5", PriceOverride(input=1, output=2, cache_read=0.1)),))
    prices = book.prices("anthropic", "claude-sonnet-4-5", 500_000)  # no tiers in an override
    assert without_source(prices) == (D(1), D(2), D("0.1"), D(1), D(1))
    assert prices is not None and prices.source == "config prices.anthropic/claude-sonnet-4-5"
    # Only that exact name: the dated model still comes from the book.
    dated = book.prices("anthropic", "claude-sonnet-4-5-20250929")
    assert dated is not None and dated.input == D(3)
    assert dated.source.startswith("genai-prices")


def test_override_fills_missing_cache_prices_from_input() -> None:
    book = PriceBook((("openai/my-finetune", PriceOverride(input=1.5, output=6)),))
    assert without_source(book.prices("openai", "my-finetune")) == (D("1.5"), D(6), D("1.5"), D("1.5"), D("1.5"))
    cost = book.cost("openai", "my-finetune", Usage(input=1_000, output=100, cache_read=2_000, cache_write=10))
    assert cost is not None
    assert (cost.input, cost.output, cost.cache_read, cost.cache_write) == (1_500, 600, 3_000, 15)


def test_override_one_hour_writes_default_to_five_minute_writes() -> None:
    book = PriceBook((("anthropic/custom", PriceOverride(input=1, output=5, cache_write=1.25)),))
    assert without_source(book.prices("anthropic", "custom")) == (D(1), D(5), D(1), D("1.25"), D("1.25"))
    book = PriceBook((("anthropic/custom", PriceOverride(input=1, output=5, cache_write=1.25, cache_write_1h=2)),))
    cost = book.cost("anthropic", "custom", Usage(cache_write=100, extra={"cache_write_1h": 40}))
    assert cost is not None and cost.cache_write == 60 * 1.25 + 40 * 2


def test_override_free_cache_reads_stay_free() -> None:
    book = PriceBook((("openai/local", PriceOverride(input=1, output=1, cache_read=0)),))
    cost = book.cost("openai", "local", Usage(cache_read=1_000_000))
    assert cost is not None and cost.cache_read == 0


def test_override_from_the_config_json_shows_its_source() -> None:
    config = parse_config({"prices": {"openai/my-finetune": {"input": 1.5, "output": 6, "cache_read": 0.25}}})
    book = PriceBook(config.prices)
    cost = book.cost("openai", "my-finetune", Usage(input=1))
    assert cost is not None
    assert cost.prices.as_json() == {
        "input": "1.5",
        "output": "6.0",
        "cache_read": "0.25",
        "cache_write": "1.5",
        "cache_write_1h": "1.5",
        "source": "config prices.openai/my-finetune",
    }


# --- unknown models -------------------------------------------------------------------------------------


def test_unknown_model_is_unpriced_with_one_warning_per_model(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook()
    assert book.prices("anthropic", "no-such-model") is None
    with caplog.at_level(logging.WARNING, logger="addon.policy.pricing"):
        assert book.cost("anthropic", "no-such-model", Usage(input=5)) is None
        assert book.cost("anthropic", "no-such-model", Usage(input=7)) is None
        assert book.cost("openai", "no-such-model", Usage(input=7)) is None
        assert book.cost("openai", "no-such-model", Usage(output=1)) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "addon.policy.pricing"]
    assert warnings == [
        "aibridge: no price for anthropic/no-such-model; its usage is recorded unpriced (add [prices])",
        "aibridge: no price for openai/no-such-model; its usage is recorded unpriced (add [prices])",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_no_model_is_unpriced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="addon.policy.pricing"):
        assert PriceBook().cost("openai", None, Usage(input=5)) is None
    assert len(caplog.records) == 1


def test_another_book_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    """The warning is once per PriceBook (per configuration load), not once per process."""
    with caplog.at_level(logging.WARNING, logger="addon.policy.pricing"):
        PriceBook().cost("openai", "no-such-model", Usage())
        PriceBook().cost("openai", "no-such-model", Usage())
    assert len(caplog.records) == 2


# --- estimates ------------------------------------------------------------------------------------------


def test_estimate_is_all_input_uncached_plus_every_output_token() -> None:
    book = PriceBook()
    assert book.estimate("anthropic", "claude-sonnet-4-5", 1_000, 4_096) == 1_000 * 3 + 4_096 * 15
    assert book.estimate("openai", "gpt-4.1", 10_000, 1_000) == 20_000 + 8_000
    assert book.estimate("anthropic", "claude-sonnet-4-5", 0, 0) == 0


def test_estimate_uses_the_long_context_tier() -> None:
    assert PriceBook().estimate("anthropic", "claude-sonnet-4-5", 300_000, 1_000) == 300_000 * 6 + 22_500


def test_estimate_with_an_override() -> None:
    book = PriceBook((("openai/my-finetune", PriceOverride(input=1.5, output=6)),))
    assert book.estimate("openai", "my-finetune", 3, 1) == 5 + 6  # 4.5 → 5


def test_estimate_unknown_is_zero(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="addon.policy.pricing"):
        assert PriceBook().estimate("anthropic", "no-such-model", 1_000, 1_000) == 0
        assert PriceBook().estimate("anthropic", None, 1_000, 1_000) == 0
    assert caplog.records == []  # only recorded usage warns


def test_cost_total() -> None:
    assert Cost(input=1, output=2, cache_read=3, cache_write=4, prices=SONNET).total == 10
