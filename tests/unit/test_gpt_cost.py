"""Pure cost arithmetic, the daily budget and the answer-window keys (models/gpt/cost.py).

Money must be exact (a float sum of ten 0.1 calls is not 1.0, and the cap is compared against
such sums), the budget must follow UTC days of event time with exactly one alert per day, and a
window key must depend on nothing but the question and its time.
"""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from models.gpt.cost import (
    DEFAULT_PRICE,
    DEFAULT_PRICE_TABLE,
    DEFAULT_PRICES,
    AnswerCacheKey,
    DailyBudget,
    ModelPrice,
    PriceTable,
    WindowCache,
    call_cost,
    utc_day,
    window_key,
)

DAY1 = date(2024, 3, 1)
DAY2 = date(2024, 3, 2)
HASH = "ab" * 32
DAY_MS = 86_400_000

# --------------------------------------------------------------------------------------------
# Prices and call cost
# --------------------------------------------------------------------------------------------


def test_call_cost_is_exact_decimal() -> None:
    # gpt-4o-mini: 0.15 in, 0.60 out per 1M: 1234 * 0.15 + 321 * 0.60 = 377.7 -> / 1e6
    cost = call_cost("gpt-4o-mini", 1234, 321)
    assert isinstance(cost, Decimal)
    assert cost == Decimal("0.0003777")
    assert call_cost("gpt-4o", 1_000_000, 1_000_000) == Decimal("12.50")
    assert call_cost("gpt-5-nano", 1, 0) == Decimal("0.00000005")
    assert call_cost("gpt-4.1", 0, 0) == 0


def test_huge_token_counts_do_not_round() -> None:
    n = 10**15 + 1  # beyond 28 significant digits once multiplied by a price
    cost = call_cost("gpt-4o-mini", n, n)
    assert cost == (Decimal(n) * Decimal("0.75")).scaleb(-6)
    assert str(cost) == "750000000.00000075"


def test_sum_of_many_calls_is_exact() -> None:
    total = sum((call_cost("gpt-5-nano", 1, 0) for _ in range(1000)), Decimal(0))
    assert total == Decimal("0.00005")


def test_dated_snapshots_cost_their_alias_and_no_other_prefix_matches() -> None:
    assert DEFAULT_PRICE_TABLE.lookup("gpt-4o-mini-2024-07-18") == (
        DEFAULT_PRICES["gpt-4o-mini"],
        True,
    )
    # gpt-4o-mini is not billed as gpt-4o, nor is an unknown variant billed as its prefix.
    assert DEFAULT_PRICE_TABLE.lookup("gpt-4o-mini")[0] != DEFAULT_PRICES["gpt-4o"]
    assert DEFAULT_PRICE_TABLE.lookup("gpt-4o-mini-turbo") == (DEFAULT_PRICE, False)


def test_unknown_model_costs_the_default_price_and_is_flagged() -> None:
    priced = DEFAULT_PRICE_TABLE.cost("llama-3-70b-local", 1000, 200)
    assert not priced.price_known
    # The default is the dearest input and output price of the table.
    assert ModelPrice(Decimal("2.50"), Decimal("10.00")) == DEFAULT_PRICE
    assert priced.usd == Decimal("0.0045")
    assert call_cost("llama-3-70b-local", 1000, 200) == Decimal("0.0045")
    assert DEFAULT_PRICE_TABLE.cost("gpt-4o", 1000, 200).price_known


def test_custom_table_and_default_from_plain_data() -> None:
    table = PriceTable.from_mapping(
        {"local": {"input": "0", "output": 0}, "big": {"input": Decimal("30"), "output": "60"}},
        default={"input": "1", "output": "2"},
    )
    assert table.cost("local", 10**6, 10**6).usd == 0
    assert table.cost("big", 500, 500).usd == Decimal("0.045")
    unknown = table.cost("gpt-4o", 10**6, 10**6)  # not in this table
    assert unknown.usd == Decimal("3") and not unknown.price_known
    assert call_cost("big", 1, 1, table) == Decimal("0.00009")


@pytest.mark.parametrize(
    "doc",
    [
        {"input": "-1", "output": "1"},
        {"input": "nan", "output": "1"},
        {"input": "Infinity", "output": "1"},
        {"input": "cheap", "output": "1"},
        {"input": "1"},
        {"input": "1", "output": "1", "cached": "0.5"},
    ],
)
def test_bad_prices_are_refused(doc: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        PriceTable.from_mapping({"m": doc})


def test_float_prices_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        ModelPrice(0.1, Decimal(1))  # type: ignore[arg-type]


@pytest.mark.parametrize("tokens", [(-1, 0), (0, -5), (True, 0), (1.5, 0)])
def test_bad_token_counts_are_refused(tokens: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="tokens"):
        call_cost("gpt-4o", *tokens)


def test_price_table_is_not_changed_by_its_source() -> None:
    source = {"m": ModelPrice(Decimal(1), Decimal(1))}
    table = PriceTable(prices=source)
    source["m"] = ModelPrice(Decimal(9), Decimal(9))
    assert table.cost("m", 10**6, 0).usd == 1


# --------------------------------------------------------------------------------------------
# Daily budget
# --------------------------------------------------------------------------------------------


def test_budget_cap_and_single_alert_per_day() -> None:
    budget = DailyBudget(cap=Decimal("1.00"))
    assert budget.can_spend(DAY1, Decimal("0.60")) and not budget.crossed_now
    assert not budget.record(DAY1, Decimal("0.60"))
    # The next call would not fit: refused, and this is the day's one alert.
    assert not budget.can_spend(DAY1, Decimal("0.50"))
    assert budget.crossed_now
    assert not budget.can_spend(DAY1, Decimal("0.50"))
    assert not budget.crossed_now  # refused again, no second alert
    # A smaller call still fits; recording it reaches the cap, still no second alert.
    assert budget.can_spend(DAY1, Decimal("0.40")) and not budget.crossed_now
    assert not budget.record(DAY1, Decimal("0.40"))
    assert budget.spent(DAY1) == Decimal("1.00") and budget.exhausted(DAY1)
    assert budget.remaining(DAY1) == 0
    assert not budget.can_spend(DAY1) and not budget.crossed_now


def test_reaching_the_cap_by_record_alerts_once() -> None:
    budget = DailyBudget(cap=Decimal("1"))
    assert not budget.record(DAY1, Decimal("0.4"))
    assert budget.record(DAY1, Decimal("0.7"))  # above the cap: the call was already made
    assert budget.crossed_now and budget.spent(DAY1) == Decimal("1.1")
    assert not budget.record(DAY1, Decimal("0.1"))
    assert not budget.can_spend(DAY1) and not budget.crossed_now


def test_budget_rolls_over_at_the_utc_day_boundary() -> None:
    budget = DailyBudget(cap=Decimal("1"))
    budget.record(utc_day(DAY_MS * 19783 + DAY_MS - 1), Decimal("1"))  # last ms of a day
    assert budget.crossed_now
    first = utc_day(DAY_MS * 19783)
    second = utc_day(DAY_MS * 19784)  # the first ms of the next day
    assert second == first + timedelta(days=1)
    assert not budget.can_spend(first)
    assert budget.can_spend(second) and budget.spent(second) == 0
    budget.record(second, Decimal("1"))
    assert budget.crossed_now  # a new day, a new (single) alert
    # A late event of the previous day is charged to that day, without a new alert.
    assert not budget.record(first, Decimal("0.25"))
    assert budget.spent(first) == Decimal("1.25") and budget.spent(second) == 1


def test_alerts_are_one_per_exhausted_day() -> None:
    budget = DailyBudget(cap=Decimal("0.05"))
    alerts = 0
    for day_index in range(5):
        day = DAY1 + timedelta(days=day_index)
        for _ in range(20):
            if budget.can_spend(day, Decimal("0.01")):
                budget.record(day, Decimal("0.01"))
            alerts += budget.crossed_now
        assert budget.spent(day) == Decimal("0.05")
    assert alerts == 5


def test_decimal_sums_hit_the_cap_exactly() -> None:
    budget = DailyBudget(cap=Decimal("1.0"))
    for _ in range(10):
        budget.record(DAY1, Decimal("0.1"))
    assert budget.spent(DAY1) == budget.cap  # a float sum would stop at 0.9999999999999999
    assert budget.exhausted(DAY1)


def test_datetimes_count_on_their_utc_day() -> None:
    budget = DailyBudget(cap=Decimal("1"))
    plus2 = timezone(timedelta(hours=2))
    # 00:30 on March 2 in UTC+2 is still March 1 in UTC.
    budget.record(datetime(2024, 3, 2, 0, 30, tzinfo=plus2), Decimal("0.3"))
    assert budget.spent(DAY1) == Decimal("0.3")
    assert budget.spent(datetime(2024, 3, 1, 23, 59, tzinfo=UTC)) == Decimal("0.3")
    assert budget.spent(DAY2) == 0


def test_zero_cap_never_allows_a_call_and_alerts_once() -> None:
    budget = DailyBudget(cap=Decimal(0))
    assert not budget.can_spend(DAY1) and budget.crossed_now
    assert not budget.can_spend(DAY1) and not budget.crossed_now


def test_budget_pickles_with_its_state() -> None:
    budget = DailyBudget(cap=Decimal("2"))
    budget.record(DAY1, Decimal("2"))
    budget.record(DAY2, Decimal("0.5"))
    copy = pickle.loads(pickle.dumps(budget))
    assert copy == budget
    assert copy.spent(DAY1) == 2 and copy.spent(DAY2) == Decimal("0.5")
    assert not copy.can_spend(DAY1) and not copy.crossed_now  # DAY1 already alerted
    assert copy.record(DAY2, Decimal("1.5"))


def test_old_days_are_forgotten() -> None:
    budget = DailyBudget(cap=Decimal("1"), keep_days=3)
    for i in range(10):
        budget.record(DAY1 + timedelta(days=i), Decimal("1"))
    assert len(budget.spent_by_day) == 3 and len(budget.alerted_days) == 3
    assert budget.spent(DAY1) == 0


@pytest.mark.parametrize("cap", [Decimal("-1"), Decimal("NaN"), Decimal("Infinity")])
def test_bad_caps_are_refused(cap: Decimal) -> None:
    with pytest.raises(ValueError, match="cap"):
        DailyBudget(cap=cap)


def test_negative_costs_and_estimates_are_refused() -> None:
    budget = DailyBudget(cap=Decimal("1"))
    with pytest.raises(ValueError, match="cost"):
        budget.record(DAY1, Decimal("-0.01"))
    with pytest.raises(ValueError, match="estimate"):
        budget.can_spend(DAY1, Decimal("-1"))
    assert budget.spent(DAY1) == 0


# --------------------------------------------------------------------------------------------
# Answer windows
# --------------------------------------------------------------------------------------------


def test_window_key_is_stable_and_aligned() -> None:
    ts = 1_709_303_400_123  # 2024-03-01 14:30:00.123 UTC
    key = window_key(HASH, ts, 60_000)
    assert key == AnswerCacheKey(HASH, 1_709_303_400_000)
    assert str(key) == f"{HASH}@1709303400000"
    # Anywhere inside the same window: the same key; the next window: another.
    assert window_key(HASH, 1_709_303_400_000, 60_000) == key
    assert window_key(HASH, 1_709_303_459_999, 60_000) == key
    assert window_key(HASH, 1_709_303_460_000, 60_000) != key
    assert window_key("cd" * 32, ts, 60_000) != key
    # Value-equal after a pickle round trip (keys live in snapshotted state).
    assert pickle.loads(pickle.dumps(key)) == key
    assert window_key(HASH, -1, 1000) == AnswerCacheKey(HASH, -1000)


@pytest.mark.parametrize("window_ms", [0, -5])
def test_window_must_be_positive(window_ms: int) -> None:
    with pytest.raises(ValueError, match="window_ms"):
        window_key(HASH, 0, window_ms)
    with pytest.raises(ValueError, match="window_ms"):
        WindowCache[str](window_ms)


def test_window_cache_answers_inside_a_window_and_forgets_old_ones() -> None:
    cache: WindowCache[str] = WindowCache(window_ms=60_000)
    assert cache.get(HASH, 1_000) is None
    cache.put(HASH, 1_000, "a")
    assert cache.get(HASH, 59_999) == "a"
    assert cache.get(HASH, 60_000) is None  # the next window asks again
    cache.put(HASH, 61_000, "b")
    assert cache.get(HASH, 5_000) == "a"  # a late event still sees the previous window
    cache.put("cd" * 32, 130_000, "c")  # two windows on: the first is dropped
    assert cache.get(HASH, 5_000) is None and cache.get(HASH, 70_000) == "b"
    assert len(cache) == 2
    assert pickle.loads(pickle.dumps(cache)) == cache
