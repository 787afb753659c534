"""Tax lots (models/tax/lots.py): IRS Publication 550's worked examples, each method against
an independent computation, and properties that hold for any ledger."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.tax.lots import LotMethod, ShortSale, TaxFill, Term, realise, term_of

D = Decimal


def _ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, 15, tzinfo=UTC).timestamp() * 1000)


def _fill(
    i: str, side: str, qty: int, price: str, ts: int, fee: str = "0", sym: str = "X"
) -> TaxFill:
    return TaxFill(i, sym, side, D(qty), D(price), D(fee), ts)


# --------------------------------------------------------------- IRS Publication 550's examples


def test_pub550_wash_sale_example_1() -> None:
    """Buy 100 for $1,000; sell them for $750; within 30 days buy 100 for $800: the $250 loss
    is not deductible, and the new shares' basis is $1,050."""
    ledger = realise(
        [
            _fill("b1", "buy", 100, "10", _ms(2024, 1, 2)),
            _fill("s1", "sell", 100, "7.5", _ms(2024, 3, 1)),
            _fill("b2", "buy", 100, "8", _ms(2024, 3, 20)),
        ]
    )
    (sale,) = ledger.dispositions
    assert sale.gain == D(-250) and sale.wash_disallowed == D(250) and sale.taxable_gain == 0
    (lot,) = ledger.open_lots["X"]
    assert lot.basis == D(1050) and lot.quantity == 100
    assert sale.replacement_lots == (lot.lot_id,)
    # The new shares' holding period includes the sold shares' (2 Jan to 1 Mar).
    assert lot.held_since_ms == _ms(2024, 3, 20) - (_ms(2024, 3, 1) - _ms(2024, 1, 2))


def test_pub550_wash_sale_example_2() -> None:
    """Buy 100 for $1,000; sell them for $750; within 30 days buy 50 for $400: the loss on 50
    shares ($125) is disallowed and the new basis is $525; the other $125 is deductible."""
    ledger = realise(
        [
            _fill("b1", "buy", 100, "10", _ms(2024, 1, 2)),
            _fill("s1", "sell", 100, "7.5", _ms(2024, 3, 1)),
            _fill("b2", "buy", 50, "8", _ms(2024, 3, 20)),
        ]
    )
    (sale,) = ledger.dispositions
    assert sale.wash_disallowed == D(125) and sale.taxable_gain == D(-125)
    (lot,) = ledger.open_lots["X"]
    assert lot.basis == D(525) and lot.quantity == 50


def test_a_purchase_more_than_30_days_away_is_no_replacement() -> None:
    ledger = realise(
        [
            _fill("b1", "buy", 100, "10", _ms(2024, 1, 2)),
            _fill("b0", "buy", 10, "9", _ms(2024, 1, 30)),  # 31 days before the sale
            _fill("s1", "sell", 100, "7.5", _ms(2024, 3, 1)),
            _fill("b2", "buy", 100, "8", _ms(2024, 4, 1)),  # 31 days after
        ]
    )
    assert ledger.dispositions[0].wash_disallowed == 0


def test_held_shares_bought_within_30_days_before_the_loss_are_replacements() -> None:
    ledger = realise(
        [
            _fill("b1", "buy", 100, "10", _ms(2024, 1, 2)),
            _fill("b2", "buy", 40, "8", _ms(2024, 2, 15)),
            _fill("s1", "sell", 100, "7.5", _ms(2024, 3, 1)),  # FIFO: sells b1
        ]
    )
    (sale,) = ledger.dispositions
    assert sale.lot_id == "b1" and sale.wash_disallowed == D(100)  # 40 x 2.50
    (lot,) = ledger.open_lots["X"]
    assert lot.basis == D(320) + D(100)


@pytest.mark.parametrize(
    ("bought", "sold", "term"),
    [
        ((2023, 2, 5), (2024, 2, 5), Term.SHORT),  # Pub 550: one year to the day is short
        ((2023, 2, 5), (2024, 2, 6), Term.LONG),
        ((2024, 2, 29), (2025, 2, 28), Term.SHORT),
        ((2024, 2, 29), (2025, 3, 1), Term.LONG),
    ],
)
def test_the_holding_period_starts_the_day_after_the_purchase(
    bought: tuple[int, int, int], sold: tuple[int, int, int], term: Term
) -> None:
    assert term_of(_ms(*bought), _ms(*sold)) is term


def test_fees_are_in_the_basis_and_out_of_the_proceeds() -> None:
    ledger = realise(
        [
            _fill("b1", "buy", 10, "100", _ms(2024, 1, 2), fee="5"),
            _fill("s1", "sell", 4, "110", _ms(2024, 6, 2), fee="2"),
        ]
    )
    (sale,) = ledger.dispositions
    assert sale.basis == D(402) and sale.proceeds == D(438) and sale.gain == D(36)
    assert ledger.open_lots["X"][0].basis == D(603)


@pytest.mark.parametrize(
    ("method", "sold_from"),
    [(LotMethod.FIFO, ["a"]), (LotMethod.LIFO, ["c"]), (LotMethod.HIFO, ["b"])],
)
def test_each_method_picks_its_lot(method: LotMethod, sold_from: list[str]) -> None:
    fills = [
        _fill("a", "buy", 10, "100", _ms(2024, 1, 2)),
        _fill("b", "buy", 10, "130", _ms(2024, 1, 3)),
        _fill("c", "buy", 10, "110", _ms(2024, 1, 4)),
        _fill("s", "sell", 10, "120", _ms(2024, 6, 1)),
    ]
    ledger = realise(fills, method, wash_sales=False)
    assert [d.lot_id for d in ledger.dispositions] == sold_from


def test_specific_identification_sells_the_lots_named() -> None:
    fills = [
        _fill("a", "buy", 10, "100", _ms(2024, 1, 2)),
        _fill("b", "buy", 10, "130", _ms(2024, 1, 3)),
        _fill("s", "sell", 12, "120", _ms(2024, 6, 1)),
    ]
    ledger = realise(fills, LotMethod.SPECIFIC, pick=lambda _s, _l: [("b", D(10)), ("a", D(2))])
    assert [(d.lot_id, d.quantity) for d in ledger.dispositions] == [("b", 10), ("a", 2)]
    with pytest.raises(ValueError, match="do not make up the sale"):
        realise(fills, LotMethod.SPECIFIC, pick=lambda _s, _l: [("b", D(10))])


def test_a_short_sale_is_refused_with_the_fill() -> None:
    with pytest.raises(ShortSale, match="s1: sells 5 X with 0 held"):
        realise([_fill("s1", "sell", 5, "10", _ms(2024, 1, 2))])


# ------------------------------------------------------------------------------ properties

trades = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 50),
        st.integers(50, 150),
        st.integers(0, 300),  # days
        st.sampled_from(["X", "Y"]),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=30,
)


def _ledger_fills(raw: list[tuple[str, int, int, int, str, int]]) -> list[TaxFill]:
    """Time-ordered fills whose sells never exceed the shares held."""
    held: dict[str, int] = {}
    out = []
    for n, (side, qty, price, day, sym, fee) in enumerate(sorted(raw, key=lambda r: r[3])):
        if side == "sell":
            qty = min(qty, held.get(sym, 0))
            if qty == 0:
                continue
        held[sym] = held.get(sym, 0) + (qty if side == "buy" else -qty)
        ts = _ms(2024, 1, 1) + day * 86_400_000 + n
        out.append(TaxFill(f"f{n}", sym, side, D(qty), D(price), D(fee), ts))
    return out


@settings(max_examples=300, deadline=None)
@given(trades, st.sampled_from([LotMethod.FIFO, LotMethod.LIFO, LotMethod.HIFO]), st.booleans())
def test_lots_sum_to_the_position_and_basis_and_gains_are_conserved(
    raw: list[tuple[str, int, int, int, str, int]], method: LotMethod, wash: bool
) -> None:
    fills = _ledger_fills(raw)
    ledger = realise(fills, method, wash_sales=wash)
    for sym in ("X", "Y"):
        mine = [f for f in fills if f.symbol == sym]
        position = sum(f.quantity if f.side == "buy" else -f.quantity for f in mine)
        assert ledger.position(sym) == position
        bought = sum(f.quantity * f.price + f.fee for f in mine if f.side == "buy")
        sold = sum(f.quantity * f.price - f.fee for f in mine if f.side == "sell")
        ds = [d for d in ledger.dispositions if d.symbol == sym]
        open_basis = sum(lot.basis for lot in ledger.open_lots.get(sym, []))
        disallowed = sum(d.wash_disallowed for d in ds)
        # Basis is neither made nor lost: what was paid plus the losses moved into it.
        assert sum(d.basis for d in ds) + open_basis == bought + disallowed
        # The gains this year plus the basis still open are the cash that moved.
        assert sum(d.taxable_gain for d in ds) == sold - bought + open_basis
        assert all(d.wash_disallowed <= max(-d.gain, D(0)) for d in ds)
        if not wash:
            assert disallowed == 0


@settings(max_examples=200, deadline=None)
@given(trades)
def test_fifo_matches_a_plain_queue(raw: list[tuple[str, int, int, int, str, int]]) -> None:
    fills = _ledger_fills(raw)
    ledger = realise(fills, LotMethod.FIFO, wash_sales=False)
    queues: dict[str, deque[list[Decimal]]] = {}
    expected = []
    for f in fills:
        q = queues.setdefault(f.symbol, deque())
        if f.side == "buy":
            q.append([f.quantity, (f.quantity * f.price + f.fee) / f.quantity])
            continue
        need = f.quantity
        while need > 0:
            shares = min(need, q[0][0])
            proceeds = (f.quantity * f.price - f.fee) * shares / f.quantity
            expected.append((f.fill_id, shares, proceeds - q[0][1] * shares))
            q[0][0] -= shares
            need -= shares
            if q[0][0] == 0:
                q.popleft()
    got = [(d.sale_id, d.quantity, d.gain) for d in ledger.dispositions]
    assert len(got) == len(expected)
    for (gs, gq, gg), (es, eq, eg) in zip(got, expected, strict=True):
        assert (gs, gq) == (es, eq) and abs(gg - eg) <= D("2e-12")
