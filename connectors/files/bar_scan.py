"""The bar pass of a file scan: duplicates, each symbol's spacing and calendar fit, counts.

It must see every symbol's bars by open time. `connectors.files.market_file` feeds it while
it builds the runs as long as the file is in order (the usual case; a clean chunk at a time,
by numpy, `add_chunk`), and otherwise with one pass over the merged runs afterwards (`add`),
which is what it always did before issue 11; both give the same result, since an in-order
file's build order is its merged order.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from connectors.files.market_source import MarketFileError
from connectors.files.row_path import BAD_BAR
from models.market.interval import BarInterval, CalendarFit

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["BarScan"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_INTERVAL_S = 31 * 86400


class ProblemSink(Protocol):
    def add(self, row: int, reason: str) -> None: ...


class BarScan:
    """Bars by open time in, per symbol: the last bar (duplicates), the gaps between bars, the
    calendar fit; out: the valid count, symbols and intervals."""

    def __init__(self, problems: ProblemSink, given: BarInterval | None) -> None:
        self.problems = problems
        self.given = given
        self.last: dict[str, tuple[int, int]] = {}  # symbol -> (open µs, row) of its latest
        self.gaps: dict[str, Counter[int]] = {}
        self.fits: dict[str, CalendarFit] = {}
        self.count = 0
        self.symbols: set[str] = set()

    def add(self, us: int, row: int, sym: str, kind: int, payload: tuple[Any, ...]) -> None:
        """One bar (the next by open time): a duplicate is reported (the first by row wins);
        an invalid bar is reported here unless it is a duplicate."""
        prev = self.last.get(sym)
        if prev is not None and prev[0] == us:
            when = (_EPOCH + timedelta(microseconds=us)).isoformat()
            self.problems.add(row, f"duplicate bar of {sym} at {when} (first: row {prev[1]})")
            return
        if prev is not None:
            self.gaps[sym][us - prev[0]] += 1
        else:
            self.gaps[sym] = Counter()
            self.fits[sym] = CalendarFit()
        if self.given is None:
            self.fits[sym].add(us // 1000 if us % 1000 == 0 else 1)  # 1 ms: no calendar stamp
        self.last[sym] = (us, row)
        if kind == BAD_BAR:
            self.problems.add(row, payload[0])
            return
        self.count += 1
        self.symbols.add(sym)

    def add_chunk(self, us: npt.NDArray[np.int64], rows: list[int], syms: list[str]) -> None:
        """Valid bars in open-time order, by numpy; with a duplicate among them, one by one."""
        import numpy as np

        names = list(dict.fromkeys(syms))
        codes = (
            np.zeros(len(syms), dtype=np.int64)
            if len(names) == 1
            else np.array([names.index(s) for s in syms], dtype=np.int64)
        )
        plans = []
        for k, sym in enumerate(names):
            where = np.flatnonzero(codes == k)
            opens = us[where]
            prev = self.last.get(sym)
            series = opens if prev is None else np.concatenate(([prev[0]], opens))
            gaps = np.diff(series)
            if bool((gaps == 0).any()):
                for u, row, s in zip(us.tolist(), rows, syms, strict=True):
                    self.add(u, row, s, 0, ())
                return
            plans.append((sym, where, opens, gaps))
        for sym, where, opens, gaps in plans:
            if sym not in self.gaps:
                self.gaps[sym] = Counter()
                self.fits[sym] = CalendarFit()
            values, counts = np.unique(gaps, return_counts=True)
            self.gaps[sym].update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
            if self.given is None:
                fit = self.fits[sym]
                for u in opens.tolist():
                    fit.add(u // 1000 if u % 1000 == 0 else 1)
            self.last[sym] = (int(opens[-1]), rows[int(where[-1])])
            self.count += len(opens)
            self.symbols.add(sym)

    def intervals(self, path: Path) -> dict[str, BarInterval]:
        if self.given is not None:
            return dict.fromkeys(self.gaps, self.given)
        return {
            sym: _interval_of(sym, g, self.fits[sym], path) for sym, g in sorted(self.gaps.items())
        }


def _counter_median(gaps: Counter[int]) -> float:
    """`statistics.median` of the multiset, without expanding it."""
    n = sum(gaps.values())
    want = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    found: list[int] = []
    seen = 0
    for gap in sorted(gaps):
        seen += gaps[gap]
        while want and want[0] < seen:
            found.append(gap)
            want.pop(0)
    return sum(found) / len(found)


def _interval_of(sym: str, gaps: Counter[int], fit: CalendarFit, path: Path) -> BarInterval:
    """Median spacing (robust to weekends, holidays and the odd missing bar), or the calendar
    interval the stamps follow."""
    if not gaps:
        raise MarketFileError(
            f"{path}: cannot infer the bar interval of {sym} from a single bar; "
            "pass --interval (e.g. --interval 1d)"
        )
    median_us = _counter_median(gaps)
    if (calendar := fit.interval(median_us / 1000)) is not None:
        return calendar
    seconds = max(1, round(median_us / 1e6))
    if seconds > _MAX_INTERVAL_S:
        raise MarketFileError(
            f"{path}: inferred bar interval of {sym} is {seconds / 86400:.0f} days, "
            "more than the 31-day maximum (calendar periods stamped on their first or last "
            "day are recognised; else pass --interval, e.g. 3mo)"
        )
    return BarInterval.fixed(seconds * 1000)
