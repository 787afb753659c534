"""Tax lots from a ledger's fills: which shares a sale sold, its gain, short or long term, and
US wash sales (issue 15, item 3; IRS Publication 550, "Basis of Investment Property",
"Holding Period" and "Wash Sales").

- Every buy is a lot: its basis is what it cost, fee included. A sale takes shares from the
  open lots of its symbol in the order the method says (`LotMethod`): first in first out (the
  IRS default when shares are not identified), last in first out, highest unit basis first,
  or the lots the caller names (specific identification). Its fee reduces its proceeds,
  shared across the lots in proportion to the shares.
- Holding period: it starts the day after the purchase; a lot sold more than one year later
  (UTC calendar dates) is long term, otherwise short term.
- Wash sales: a loss on a sale is disallowed to the extent substantially identical shares
  (here: the same symbol) were bought within 30 days before or after it and are not among
  the shares sold (nor shares of a purchase the sale sold from, as brokers count them). The
  disallowed loss is added to the basis of those replacement shares,
  whose holding period then includes that of the shares sold; the replacement shares are
  split into their own lot, and each share replaces a sold share once. The sale reports its
  loss with the disallowed amount as the adjustment (code W on Form 8949). This reads fills
  after the sale (a purchase within the next 30 days), so it is a batch over a ledger, as a
  yearly report is; other jurisdictions differ (e.g. the UK's 30-day "bed and breakfast" rule
  matches later purchases to the sale instead; Germany has no wash-sale rule): see
  specs/models.tax.md.
- Short sales (a sale of more shares than are held) are refused (`ShortSale`): their tax
  treatment (the gain realised when the short is closed) is not modelled.
Everything is `Decimal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "MONEY_QUANTUM",
    "WASH_WINDOW",
    "Disposition",
    "Lot",
    "LotLedger",
    "LotMethod",
    "ShortSale",
    "TaxFill",
    "Term",
    "realise",
    "term_of",
]

WASH_WINDOW = timedelta(days=30)
MONEY_QUANTUM = Decimal("1e-12")
"""Shares of a basis or of proceeds are rounded to this (the store's money scale); the last
share takes the remainder, so no amount is made or lost by the split."""
_ZERO = Decimal(0)


def _share(amount: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """`part / whole` of `amount`, rounded to `MONEY_QUANTUM` (all of it when part is whole)."""
    if part == whole:
        return amount
    return (amount * part / whole).quantize(MONEY_QUANTUM)


_DAY_MS = 86_400_000


class LotMethod(StrEnum):
    FIFO = "fifo"
    LIFO = "lifo"
    HIFO = "hifo"
    SPECIFIC = "specific"


class Term(StrEnum):
    SHORT = "short"
    LONG = "long"


class ShortSale(ValueError):
    """A sale of more shares than are held: outside the lot engine."""


@dataclass(frozen=True, slots=True)
class TaxFill:
    """One fill as the lot engine reads it (`models.core.messages.Fill` has these fields)."""

    fill_id: str
    symbol: str
    side: str  # "buy" or "sell"
    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts_ms: int


@dataclass(slots=True)
class Lot:
    lot_id: str
    symbol: str
    bought_ms: int
    """When the shares were bought (the order FIFO and LIFO use)."""
    held_since_ms: int
    """Where the holding period starts counting (earlier than `bought_ms` for wash-sale
    replacement shares, which take on the sold shares' holding period)."""
    quantity: Decimal
    basis: Decimal
    """The remaining shares' basis, fee and wash-sale adjustments included."""
    source_fill: str = ""

    @property
    def unit_basis(self) -> Decimal:
        return self.basis / self.quantity if self.quantity else _ZERO


@dataclass(frozen=True, slots=True)
class Disposition:
    """Shares of one lot sold by one sale: a Form 8949 line."""

    symbol: str
    lot_id: str
    sale_id: str
    quantity: Decimal
    bought_ms: int
    held_since_ms: int
    sold_ms: int
    proceeds: Decimal
    basis: Decimal
    term: Term
    wash_disallowed: Decimal = _ZERO
    """The part of the loss not deductible now (moved into the replacement shares' basis)."""
    replacement_lots: tuple[str, ...] = ()

    @property
    def gain(self) -> Decimal:
        """Proceeds less basis, as reported (before the wash-sale adjustment)."""
        return self.proceeds - self.basis

    @property
    def taxable_gain(self) -> Decimal:
        """The gain with the disallowed loss added back: what counts this year."""
        return self.gain + self.wash_disallowed


@dataclass(slots=True)
class LotLedger:
    """The result: every disposition in sale order, and the lots still open."""

    dispositions: list[Disposition] = field(default_factory=list)
    open_lots: dict[str, list[Lot]] = field(default_factory=dict)

    def position(self, symbol: str) -> Decimal:
        return sum((lot.quantity for lot in self.open_lots.get(symbol, [])), _ZERO)


def _date(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).date()


def _one_year_after(d: date) -> date:
    try:
        return d.replace(year=d.year + 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year + 1, day=28)


def term_of(held_since_ms: int, sold_ms: int) -> Term:
    """Long term when sold more than one year after the purchase date (UTC dates)."""
    return Term.LONG if _date(sold_ms) > _one_year_after(_date(held_since_ms)) else Term.SHORT


Picker = Callable[[TaxFill, Sequence[Lot]], Sequence[tuple[str, Decimal]]]
"""Specific identification: for a sale and the symbol's open lots, (lot id, shares) to sell."""


def _ordered(lots: list[Lot], method: LotMethod) -> list[Lot]:
    if method is LotMethod.LIFO:
        return sorted(lots, key=lambda lot: lot.bought_ms, reverse=True)
    if method is LotMethod.HIFO:
        return sorted(lots, key=lambda lot: (-lot.unit_basis, lot.bought_ms))
    return sorted(lots, key=lambda lot: lot.bought_ms)


@dataclass(slots=True)
class _Pending:
    """Wash-sale adjustments waiting for a later purchase: shares, basis to add, and how far
    back their holding period starts (ms)."""

    shares: Decimal
    basis: Decimal
    tacked_ms: int
    disposition: int


class _Engine:
    def __init__(self, method: LotMethod, pick: Picker | None, wash_sales: bool) -> None:
        if method is LotMethod.SPECIFIC and pick is None:
            raise ValueError("specific identification needs a picker of lots")
        self.method, self.pick, self.wash_sales = method, pick, wash_sales
        self.ledger = LotLedger()
        self.fills: list[TaxFill] = []
        self.replaced: dict[str, Decimal] = {}  # buy fill id -> shares already replacements
        self.pending: dict[str, list[_Pending]] = {}  # buy fill id -> adjustments to apply

    def buy(self, fill: TaxFill) -> None:
        lots = self.ledger.open_lots.setdefault(fill.symbol, [])
        basis = fill.quantity * fill.price + fill.fee
        left, left_basis = fill.quantity, basis
        for n, adj in enumerate(self.pending.pop(fill.fill_id, [])):
            part_basis = _share(basis, adj.shares, fill.quantity)
            lots.append(
                Lot(
                    f"{fill.fill_id}/w{n}",
                    fill.symbol,
                    fill.ts_ms,
                    fill.ts_ms - adj.tacked_ms,
                    adj.shares,
                    part_basis + adj.basis,
                    fill.fill_id,
                )
            )
            self._link(adj.disposition, f"{fill.fill_id}/w{n}")
            left -= adj.shares
            left_basis -= part_basis
        if left > 0:
            lots.append(
                Lot(
                    fill.fill_id,
                    fill.symbol,
                    fill.ts_ms,
                    fill.ts_ms,
                    left,
                    left_basis,
                    fill.fill_id,
                )
            )

    def _link(self, index: int, lot_id: str) -> None:
        d = self.ledger.dispositions[index]
        self.ledger.dispositions[index] = _with(d, replacement_lots=(*d.replacement_lots, lot_id))

    def sell(self, fill: TaxFill) -> None:
        lots = self.ledger.open_lots.get(fill.symbol, [])
        held = sum((lot.quantity for lot in lots), _ZERO)
        if fill.quantity > held:
            raise ShortSale(
                f"{fill.fill_id}: sells {fill.quantity} {fill.symbol} with {held} held "
                "(short sales are not lotted)"
            )
        if self.method is LotMethod.SPECIFIC:
            assert self.pick is not None
            chosen = list(self.pick(fill, tuple(lots)))
        else:
            chosen, need = [], fill.quantity
            for lot in _ordered(lots, self.method):
                if need <= 0:
                    break
                take = min(need, lot.quantity)
                chosen.append((lot.lot_id, take))
                need -= take
        by_id = {lot.lot_id: lot for lot in lots}
        if sum((q for _, q in chosen), _ZERO) != fill.quantity or any(
            lid not in by_id or q <= 0 or q > by_id[lid].quantity for lid, q in chosen
        ):
            raise ValueError(f"{fill.fill_id}: the lots picked do not make up the sale")
        proceeds_total = fill.quantity * fill.price - fill.fee
        proceeds_left = proceeds_total
        sold_lots: set[str] = set()
        for k, (lot_id, shares) in enumerate(chosen):
            lot = by_id[lot_id]
            basis = _share(lot.basis, shares, lot.quantity)
            last = k == len(chosen) - 1
            proceeds = proceeds_left if last else _share(proceeds_total, shares, fill.quantity)
            proceeds_left -= proceeds
            lot.quantity -= shares
            lot.basis -= basis
            sold_lots.add(lot.source_fill)
            self.ledger.dispositions.append(
                Disposition(
                    fill.symbol,
                    lot_id,
                    fill.fill_id,
                    shares,
                    lot.bought_ms,
                    lot.held_since_ms,
                    fill.ts_ms,
                    proceeds,
                    basis,
                    term_of(lot.held_since_ms, fill.ts_ms),
                )
            )
        self.ledger.open_lots[fill.symbol] = [lot for lot in lots if lot.quantity > 0]
        if self.wash_sales:
            first = len(self.ledger.dispositions) - len(chosen)
            for index in range(first, len(self.ledger.dispositions)):
                if self.ledger.dispositions[index].gain < 0:
                    self._wash(index, sold_lots)

    def _wash(self, index: int, sold_lots: set[str]) -> None:
        """Replacement shares for the loss of disposition `index` (module docstring)."""
        d = self.ledger.dispositions[index]
        sold_ms = d.sold_ms
        window_ms = int(WASH_WINDOW.total_seconds() * 1000)
        remaining = d.quantity
        disallowed = _ZERO
        loss = -d.gain
        tacked_ms = sold_ms - d.held_since_ms
        for other in self.fills:
            if remaining <= 0:
                break
            if (
                other.side != "buy"
                or other.symbol != d.symbol
                or abs(other.ts_ms - sold_ms) > window_ms
                or other.fill_id in sold_lots
            ):
                continue
            free = other.quantity - self.replaced.get(other.fill_id, _ZERO)
            if other.ts_ms <= sold_ms:  # bought before: only shares still held replace
                free = min(free, self._held_from(other.fill_id))
            shares = min(free, remaining)
            if shares <= 0:
                continue
            self.replaced[other.fill_id] = self.replaced.get(other.fill_id, _ZERO) + shares
            remaining -= shares
            moved = loss - disallowed if remaining == 0 else _share(loss, shares, d.quantity)
            disallowed += moved
            if other.ts_ms <= sold_ms:
                self._adjust_held(other.fill_id, shares, moved, tacked_ms, index)
            else:
                self.pending.setdefault(other.fill_id, []).append(
                    _Pending(shares, moved, tacked_ms, index)
                )
        if disallowed:
            self.ledger.dispositions[index] = _with(
                self.ledger.dispositions[index], wash_disallowed=disallowed
            )

    def _held_from(self, fill_id: str) -> Decimal:
        return sum(
            (
                lot.quantity
                for lots in self.ledger.open_lots.values()
                for lot in lots
                if lot.source_fill == fill_id and "/w" not in lot.lot_id
            ),
            _ZERO,
        )

    def _adjust_held(
        self, fill_id: str, shares: Decimal, moved: Decimal, tacked_ms: int, index: int
    ) -> None:
        """Split `shares` of a held purchase into a replacement lot with the moved loss."""
        for lots in self.ledger.open_lots.values():
            for n, lot in enumerate(lots):
                if lot.source_fill != fill_id or "/w" in lot.lot_id or lot.quantity <= 0:
                    continue
                part_basis = _share(lot.basis, shares, lot.quantity)
                lot.quantity -= shares
                lot.basis -= part_basis
                lot_id = f"{fill_id}/w{index}"
                lots.insert(
                    n,
                    Lot(
                        lot_id,
                        lot.symbol,
                        lot.bought_ms,
                        lot.held_since_ms - tacked_ms,
                        shares,
                        part_basis + moved,
                        fill_id,
                    ),
                )
                self._link(index, lot_id)
                lots[:] = [x for x in lots if x.quantity > 0]
                return


def _with(d: Disposition, **changes: object) -> Disposition:
    from dataclasses import replace

    return replace(d, **changes)  # type: ignore[arg-type]


def realise(
    fills: Iterable[TaxFill],
    method: LotMethod = LotMethod.FIFO,
    *,
    pick: Picker | None = None,
    wash_sales: bool = True,
) -> LotLedger:
    """The lots and dispositions of `fills` (in time order; ties keep the given order)."""
    ordered = sorted(enumerate(fills), key=lambda x: (x[1].ts_ms, x[0]))
    engine = _Engine(method, pick, wash_sales)
    engine.fills = [f for _, f in ordered]
    for _, fill in ordered:
        if fill.quantity <= 0 or fill.price < 0 or fill.fee < 0:
            raise ValueError(f"{fill.fill_id}: quantity, price and fee must be positive")
        if fill.side == "buy":
            engine.buy(fill)
        elif fill.side == "sell":
            engine.sell(fill)
        else:
            raise ValueError(f"{fill.fill_id}: side is buy or sell, got {fill.side!r}")
    return engine.ledger
