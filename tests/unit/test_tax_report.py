"""The yearly Form 8949 report from tax lots (models/tax/report.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

from models.tax.lots import TaxFill, realise
from models.tax.report import FORM_8949_COLUMNS, form_8949, report_csv, report_html

D = Decimal


def _ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, 15, tzinfo=UTC).timestamp() * 1000)


FILLS = [
    TaxFill("b1", "X", "buy", D(100), D(10), D(0), _ms(2023, 1, 2)),
    TaxFill("b2", "X", "buy", D(100), D(10), D(1), _ms(2024, 1, 2)),
    TaxFill("s1", "X", "sell", D(150), D("12.005"), D("1.50"), _ms(2024, 6, 3)),
    TaxFill("s2", "X", "sell", D(50), D("7.5"), D(0), _ms(2024, 7, 1)),
    TaxFill("b3", "X", "buy", D(50), D(8), D(0), _ms(2024, 7, 20)),
    TaxFill("s3", "X", "sell", D(10), D(9), D(0), _ms(2025, 1, 5)),
]


def test_lines_split_by_term_with_wash_sales_coded_and_cents_rounded() -> None:
    lines = form_8949(realise(FILLS), 2024)
    # s1 (FIFO): 100 of b1 held > 1 year (Part II), 50 of b2 (Part I); s2: 50 of b2 at a loss,
    # replaced by b3 within 30 days (W).
    assert [(ln.part, ln.description, ln.code) for ln in lines] == [
        ("I", "50 X", ""),
        ("I", "50 X", "W"),
        ("II", "100 X", ""),
    ]
    long = lines[2]
    assert long.date_acquired == "01/02/2023" and long.date_sold == "06/03/2024"
    assert long.proceeds == D("1199.50")  # 100/150 of (1,800.75 - 1.50), to the cent
    assert long.cost_basis == D("1000.00") and long.gain_or_loss == D("199.50")
    wash = lines[1]
    assert wash.gain_or_loss == 0 and wash.adjustment == -(wash.proceeds - wash.cost_basis)
    assert all(ln.gain_or_loss == ln.proceeds - ln.cost_basis + ln.adjustment for ln in lines)
    assert form_8949(realise(FILLS), 2025)[0].date_sold == "01/05/2025"


def test_csv_and_html_carry_every_line_and_the_totals() -> None:
    lines = form_8949(realise(FILLS), 2024)
    rows = list(csv.reader(io.StringIO(report_csv(lines))))
    assert tuple(rows[0]) == FORM_8949_COLUMNS and len(rows) == len(lines) + 1
    assert [r[6] for r in rows[1:]] == ["", "W", ""]
    page = report_html(lines, 2024, "fifo", "<acct>")
    assert page.count("<tr class=total>") == 2 and "&lt;acct&gt;" in page
    total_long = f"{lines[2].gain_or_loss:,.2f}"
    assert total_long in page
