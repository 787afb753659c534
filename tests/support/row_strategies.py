"""Hypothesis strategies for the decision-log messages the store and the Kafka lane write
(decisions with every nested part, orders, fills, alerts): hostile strings (quotes,
backslashes, control characters, line separators, astral characters, JSON-looking text),
decimals beyond the columns and needing rounding, None fields, non-finite floats."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from models.core.messages import (
    AdjustRound,
    Alert,
    Branch,
    DecisionRecord,
    DecisionStatus,
    Direction,
    FeatureVector,
    Fill,
    Order,
    OrderStatus,
    Proposal,
    RiskCheck,
    RiskVerdict,
    Severity,
    Side,
    Signal,
    TradeIntent,
)

HOSTILE = [
    "",
    '"',
    "\\",
    '\\"',
    "\\u0041",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x1f",
    "\x7f",
    "\u0085",
    "\u2028",
    "\u2029",
    "\ufeff",
    "é",
    "😀",
    '}],"run_id":"x"}',
    '{"a":[1,2]}',
    "'; DROP TABLE decisions; --",
    "a" * 300,
]
texts = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))
ids = st.one_of(st.sampled_from(["sf-1", "SIMA@1577846640000", "a b"]), texts)
symbols = st.sampled_from(["SIMA", "BRK.B", "BTC/USDT", "A:B-C_1"])
ms = st.integers(-(2**40), 2**42)

LIMIT = Decimal("99999999999999999999999999.999999999999")
decimals = st.one_of(
    st.sampled_from(
        [
            Decimal(0),
            Decimal("-0"),
            Decimal("0E-8"),
            LIMIT,
            LIMIT.copy_negate(),
            Decimal("1.0000000000015"),
            Decimal("0.1666666666666666666666666667"),
            Decimal("1E+25"),
            Decimal("252"),
            Decimal("24863.58000"),
        ]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0, max_value=10**6),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20),
)
"""Amounts a column holds (some only after rounding half-even)."""
too_big = st.sampled_from([Decimal("1E+26"), Decimal("-1E+26"), Decimal("1E+40")])
"""Amounts no `Decimal(38, 12)` column holds: refused on every path."""
nested_decimals = st.one_of(decimals, too_big)
"""Inside nested JSON a decimal is its text: any value goes."""
floats = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 1e300, 5e-324, 1.0, 0.1]))
positive = st.decimals(min_value=Decimal("1E-12"), max_value=10**9, allow_nan=False)


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), floats, texts, nested_decimals
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)
        ),
        max_leaves=8,
    )


signals = st.builds(
    Signal,
    symbol=symbols,
    ts_ms=ms,
    trigger=texts,
    kind=texts,
    direction=st.sampled_from(Direction),
    strength=st.one_of(st.floats(min_value=0), st.just(float("inf"))),
    strategic=st.booleans(),
    detail=st.dictionaries(texts, st.one_of(st.none(), floats, texts), max_size=3),
)
features = st.builds(
    FeatureVector,
    symbol=symbols,
    ts_ms=ms,
    close=floats,
    values=st.dictionaries(texts, st.one_of(st.none(), floats), max_size=6),
)
intents = st.one_of(
    st.builds(
        TradeIntent,
        symbol=symbols,
        side=st.sampled_from(Side),
        quantity=positive,
        reason=texts,
    ),
    st.builds(
        TradeIntent,
        symbol=symbols,
        side=st.just(Side.BUY),
        quantity=positive,
        reason=texts,
        size_fraction=st.sampled_from([Decimal(1), Decimal("0.5"), Decimal("1E-12")]),
    ),
)
checks = st.builds(
    RiskCheck,
    name=texts,
    passed=st.booleans(),
    limit=st.none() | nested_decimals,
    value=st.none() | nested_decimals,
    message=texts,
)
rounds = st.builds(
    AdjustRound,
    round=st.integers(0, 9),
    proposal=st.builds(
        Proposal,
        controller=texts,
        strategy=texts,
        intents=st.lists(intents, max_size=2),
        rationale=texts,
        confidence=st.floats(0, 1),
    ),
    verdict=st.none()
    | st.builds(
        RiskVerdict,
        approved=st.booleans(),
        checks=st.lists(checks, max_size=3),
        fee_estimate=nested_decimals,
    ),
)


def orders(amounts: st.SearchStrategy[Decimal] = decimals) -> st.SearchStrategy[Order]:
    return st.one_of(
        st.builds(
            Order,
            client_order_id=ids,
            decision_id=ids,
            symbol=symbols,
            side=st.sampled_from(Side),
            quantity=amounts,
            status=st.sampled_from(OrderStatus),
            placed_ms=ms,
            updated_ms=ms,
            reason=texts,
            version=st.integers(1, 2**40),
        ),
        st.builds(
            Order,
            client_order_id=ids,
            decision_id=ids,
            symbol=symbols,
            side=st.sampled_from(Side),
            quantity=amounts,
            status=st.sampled_from(OrderStatus),
            placed_ms=ms,
            updated_ms=ms,
            size_fraction=st.sampled_from(
                [Decimal(1), Decimal("0.333333333333333333333"), Decimal("1E-13")]
            ),
        ),
    )


def fills(amounts: st.SearchStrategy[Decimal] = decimals) -> st.SearchStrategy[Fill]:
    return st.builds(
        Fill,
        fill_id=ids,
        client_order_id=ids,
        decision_id=ids,
        symbol=symbols,
        side=st.sampled_from(Side),
        quantity=amounts,
        price=amounts,
        fee=amounts,
        ts_ms=ms,
    )


decisions = st.builds(
    DecisionRecord,
    decision_id=ids,
    ts_ms=ms,
    symbol=symbols,
    branch=st.sampled_from(Branch),
    triggers=st.lists(signals, max_size=3),
    features=features,
    rounds=st.lists(rounds, max_size=3),
    status=st.sampled_from(DecisionStatus),
    orders=st.lists(orders(nested_decimals), max_size=2),
    fills=st.lists(fills(nested_decimals), max_size=2),
    portfolio_before=st.dictionaries(texts, texts, max_size=4),
    note=texts,
    version=st.integers(1, 2**40),
)
alerts = st.builds(
    Alert,
    alert_id=ids,
    ts_ms=ms,
    severity=st.sampled_from(Severity),
    source=texts,
    message=texts,
    context=st.dictionaries(texts, _json_values(), max_size=4),
)
