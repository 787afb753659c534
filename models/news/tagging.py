"""Which traded symbols a text is about: tickers, $cashtags and company names.

Only symbols the run trades are tagged (the desk keeps text per configured symbol; anything else
would be dead weight in the digest). Three ways to name one:

- the ticker as a whole word, in upper case as written (`GOOG`, `BTC/USDT`): "Goog" or
  "GOOGL" do not count;
- a cashtag, `$` and the ticker in any case (`$goog`), the social-media convention;
- a company name from the settings (`news.names: {AAPL: [Apple, Apple Inc]}`), in any case, on
  word boundaries ("Apple's" counts, "Pineapple" does not).

A word boundary is any character that is not a letter or a digit (Unicode-aware), so names in
other scripts work and `$` or punctuation next to a ticker do not hide it. One regular
expression is compiled per tagger, alternatives longest first, so a text is scanned once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["SymbolTagger"]

_EDGE_L = r"(?<![^\W_])"  # start of text or a non-word character before
_EDGE_R = r"(?![^\W_])"  # end of text or a non-word character after


@dataclass(frozen=True)
class SymbolTagger:
    """Tags texts with `symbols` (the run's), using `names` (symbol -> company names)."""

    symbols: frozenset[str]
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _exact: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _folded: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _lookup: dict[str, str] = field(init=False, repr=False, compare=False)

    @classmethod
    def of(
        cls, symbols: Iterable[str], names: Mapping[str, Iterable[str]] | None = None
    ) -> SymbolTagger:
        traded = frozenset(symbols)
        kept = {s: tuple(n for n in ns if n.strip()) for s, ns in (names or {}).items()}
        return cls(traded, {s: ns for s, ns in kept.items() if s in traded and ns})

    def __post_init__(self) -> None:
        lookup: dict[str, str] = {}
        exact = sorted(self.symbols, key=lambda s: (-len(s), s))
        folded: list[str] = []
        for sym in exact:
            lookup[f"${sym}".casefold()] = sym
            folded.append(f"${sym}")
        for sym, names in sorted(self.names.items()):
            for name in names:
                key = " ".join(name.split()).casefold()
                lookup.setdefault(key, sym)
                folded.append(" ".join(name.split()))
        folded.sort(key=lambda s: (-len(s), s))

        def alternation(words: list[str], edge_l: str) -> str:
            parts = (r"\s+".join(re.escape(w) for w in word.split(" ")) for word in words)
            return f"{edge_l}(?:{'|'.join(parts)}){_EDGE_R}"

        object.__setattr__(
            self, "_exact", re.compile(alternation(exact, _EDGE_L)) if exact else None
        )
        # A cashtag's `$` is itself a boundary, so its left edge only needs no word before it.
        object.__setattr__(
            self,
            "_folded",
            re.compile(alternation(folded, _EDGE_L), re.IGNORECASE) if folded else None,
        )
        object.__setattr__(self, "_lookup", lookup)

    def tag(self, *texts: str) -> list[str]:
        """The traded symbols `texts` name, in order of first mention."""
        found: dict[str, None] = {}
        for text in texts:
            hits: list[tuple[int, str]] = []
            if self._exact is not None:
                hits += [(m.start(), m.group(0)) for m in self._exact.finditer(text)]
            if self._folded is not None:
                for m in self._folded.finditer(text):
                    sym = self._lookup.get(" ".join(m.group(0).split()).casefold())
                    if sym is not None:
                        hits.append((m.start(), sym))
            for _, sym in sorted(hits):
                found.setdefault(sym, None)
        return list(found)

    def keep(self, symbols: Iterable[str]) -> list[str]:
        """`symbols` (e.g. given by a JSON-lines record) that the run trades, in their order."""
        return list(dict.fromkeys(s for s in symbols if s in self.symbols))
