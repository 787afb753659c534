"""Start-up reconciliation: the exchange's balances become the book.

When a run starts against a real exchange, what the exchange holds is the truth: cash in the
account currency and the base asset of every configured BASE/QUOTE symbol are set to its
balances, every difference is reported, and open orders the desk did not place are listed. The
cost of a quantity the book did not buy is unknown, so the price now stands for it: the adopted
quantity starts without a made-up profit.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from models.config.settings import Settings
from models.core.messages import Alert
from models.execution.reports import ExchangeState
from models.monitoring.alerts import reconcile_alert, strange_orders_alert
from models.portfolio.book import Portfolio


def reconcile(
    portfolio: Portfolio,
    state: ExchangeState,
    settings: Settings,
    known_orders: Iterable[str],
    ts_ms: int,
) -> list[Alert]:
    """Set `portfolio` to the exchange's balances; the alerts saying what changed and which
    open orders are strangers (not among `known_orders`, the desk's client order ids)."""
    out: list[Alert] = []
    currency = settings.execution.currency
    diffs: list[str] = []
    cash = state.balances.get(currency)
    if cash is not None and cash != portfolio.cash:
        diffs.append(f"cash {portfolio.cash} -> {cash} {currency}")
        portfolio.set_cash(cash)
    for sym in sorted(settings.symbols):
        base, _, quote = sym.partition("/")
        if not quote:
            continue  # not an exchange pair: nothing to compare
        held = state.balances.get(base, Decimal(0))
        mine = portfolio.quantity(sym)
        price = state.prices.get(sym)
        if price is not None and price > 0:
            portfolio.marks.setdefault(sym, price)  # valued before its first bar
        if held != mine:
            diffs.append(f"{sym} {mine} -> {held}")
            avg = portfolio.position(sym).avg_cost if mine > 0 else Decimal(0)
            mark = portfolio.marks.get(sym, Decimal(0))
            portfolio.adopt(sym, held, avg or mark)
    known = set(known_orders)
    strangers = [
        str(o.get("clientOrderId") or o.get("id"))
        for o in state.open_orders
        if str(o.get("clientOrderId")) not in known
    ]
    if diffs:
        out.append(reconcile_alert(ts_ms, diffs))
    if strangers:
        out.append(strange_orders_alert(ts_ms, strangers))
    return out
