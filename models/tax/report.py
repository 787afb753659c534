"""The yearly tax report from a `LotLedger` (issue 15, item 3): the lines of IRS Form 8949
and their totals, as CSV rows and as one readable HTML page.

Form 8949 has a line per disposition: (a) description, (b) date acquired, (c) date sold, (d)
proceeds, (e) cost or other basis, (f) code, (g) adjustment, (h) gain or loss (d - e + g).
Part I holds short-term lines, Part II long-term ones; a wash sale has code W and its
disallowed loss as the (positive) adjustment. Money is rounded to cents for the form (half
up, as the IRS rounds to whole dollars or cents); the ledger's exact figures stay in the
lots. The date acquired of replacement shares is the start of their holding period (it
includes the sold shares', Publication 550), so the line's term matches its part. Dates are
UTC. The fiat value at each trade is the fill's price in the account's currency (the
ledger's quote currency): a ledger kept in another currency needs its conversion first.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from models.tax.lots import Disposition, LotLedger, Term

__all__ = ["FORM_8949_COLUMNS", "Form8949Line", "form_8949", "report_csv", "report_html"]

FORM_8949_COLUMNS = (
    "part",
    "description",
    "date_acquired",
    "date_sold",
    "proceeds",
    "cost_basis",
    "code",
    "adjustment",
    "gain_or_loss",
)
_CENT = Decimal("0.01")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%m/%d/%Y")


@dataclass(frozen=True, slots=True)
class Form8949Line:
    part: str  # "I" short term, "II" long term
    description: str
    date_acquired: str
    date_sold: str
    proceeds: Decimal
    cost_basis: Decimal
    code: str
    adjustment: Decimal
    gain_or_loss: Decimal


def _line(d: Disposition) -> Form8949Line:
    proceeds, basis = _cents(d.proceeds), _cents(d.basis)
    adjustment = _cents(d.wash_disallowed)
    return Form8949Line(
        part="I" if d.term is Term.SHORT else "II",
        description=f"{d.quantity.normalize():f} {d.symbol}",
        date_acquired=_day(d.held_since_ms),
        date_sold=_day(d.sold_ms),
        proceeds=proceeds,
        cost_basis=basis,
        code="W" if d.wash_disallowed else "",
        adjustment=adjustment,
        gain_or_loss=proceeds - basis + adjustment,
    )


def form_8949(ledger: LotLedger, year: int) -> list[Form8949Line]:
    """The lines of the dispositions sold in `year` (UTC), Part I then Part II, in sale order."""
    sold = [
        d for d in ledger.dispositions if datetime.fromtimestamp(d.sold_ms / 1000, UTC).year == year
    ]
    lines = [_line(d) for d in sold]
    return [ln for ln in lines if ln.part == "I"] + [ln for ln in lines if ln.part == "II"]


def _totals(lines: Sequence[Form8949Line], part: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    mine = [ln for ln in lines if ln.part == part]
    return (
        sum((ln.proceeds for ln in mine), Decimal(0)),
        sum((ln.cost_basis for ln in mine), Decimal(0)),
        sum((ln.adjustment for ln in mine), Decimal(0)),
        sum((ln.gain_or_loss for ln in mine), Decimal(0)),
    )


def report_csv(lines: Sequence[Form8949Line]) -> str:
    """Form 8949's lines as CSV (`FORM_8949_COLUMNS`), one row per line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FORM_8949_COLUMNS)
    for ln in lines:
        writer.writerow(
            [
                ln.part,
                ln.description,
                ln.date_acquired,
                ln.date_sold,
                f"{ln.proceeds:.2f}",
                f"{ln.cost_basis:.2f}",
                ln.code,
                f"{ln.adjustment:.2f}" if ln.adjustment else "",
                f"{ln.gain_or_loss:.2f}",
            ]
        )
    return out.getvalue()


def report_html(lines: Sequence[Form8949Line], year: int, method: str, account: str) -> str:
    """One self-contained page: both parts with their totals, the method and the account."""

    def money(x: Decimal) -> str:
        return f"{x:,.2f}"

    parts = []
    for part, title in (("I", "Part I: short-term"), ("II", "Part II: long-term")):
        rows = [
            "<tr>"
            + "".join(
                f"<td>{html.escape(v)}</td>"
                for v in (
                    ln.description,
                    ln.date_acquired,
                    ln.date_sold,
                    money(ln.proceeds),
                    money(ln.cost_basis),
                    ln.code,
                    money(ln.adjustment) if ln.adjustment else "",
                    money(ln.gain_or_loss),
                )
            )
            + "</tr>"
            for ln in lines
            if ln.part == part
        ]
        p, b, a, g = _totals(lines, part)
        total = (
            f"<tr class=total><td>Totals</td><td></td><td></td><td>{money(p)}</td>"
            f"<td>{money(b)}</td><td></td><td>{money(a)}</td><td>{money(g)}</td></tr>"
        )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "(a) Description",
                "(b) Acquired",
                "(c) Sold",
                "(d) Proceeds",
                "(e) Cost basis",
                "(f) Code",
                "(g) Adjustment",
                "(h) Gain or loss",
            )
        )
        parts.append(
            f"<h2>{title}</h2><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}{total}</tbody></table>"
        )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Form 8949 lines {year}</title><style>"
        "body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.total{font-weight:bold}"
        "</style></head><body>"
        f"<h1>Form 8949 lines, tax year {year}</h1>"
        f"<p>Account {html.escape(account or '-')}; lots by {html.escape(method)}; "
        "US wash sales applied (code W); dates UTC; amounts in the account's currency. "
        "Check against your broker's 1099-B before filing.</p>" + "".join(parts) + "</body></html>"
    )
