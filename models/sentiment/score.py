"""One item's sentiment: a score in [-1, 1] and what it rests on.

News (`score_news`): Loughran-McDonald word counts, `(positive - negative) / (positive +
negative)`, 0 when neither occurs. A positive word with a negation ("no", "not", "none",
"neither", "never", "nobody") among the three words before it counts as negative, as
Loughran and McDonald do (2011, section III.B): "did not improve" is not good news.
Posts (`score_post`): VADER's compound score (already in [-1, 1]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from models.sentiment.lexicons import loughran_mcdonald, vader

__all__ = ["NEGATIONS", "TextScore", "score_news", "score_post"]

NEGATIONS: Final = frozenset({"NO", "NOT", "NONE", "NEITHER", "NEVER", "NOBODY"})
"""Loughran and McDonald's negation words."""
NEGATION_REACH: Final = 3
"""How many words before a positive word a negation turns it negative."""
MAX_SCORED_CHARS: Final = 20_000
"""Text beyond this is not read (a message's body is capped there anyway)."""

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


@dataclass(frozen=True, slots=True)
class TextScore:
    score: float
    """In [-1, 1]: negative to positive; 0 when the text carries no sentiment words."""
    positive: int = 0
    negative: int = 0
    words: int = 0


def score_news(headline: str, body: str = "") -> TextScore:
    """A news item's Loughran-McDonald score (module docstring)."""
    lexicon = loughran_mcdonald()
    text = f"{headline}\n{body}"[:MAX_SCORED_CHARS]
    words = [w.upper() for w in _WORD.findall(text)]
    positive = negative = 0
    for i, word in enumerate(words):
        if word in lexicon.negative:
            negative += 1
        elif word in lexicon.positive:
            before = words[max(0, i - NEGATION_REACH) : i]
            if any(w in NEGATIONS or w.endswith("N'T") for w in before):
                negative += 1
            else:
                positive += 1
    total = positive + negative
    score = 0.0 if total == 0 else (positive - negative) / total
    return TextScore(score, positive, negative, len(words))


def score_post(text: str) -> TextScore:
    """A post's VADER compound score."""
    scores = vader().polarity_scores(text[:MAX_SCORED_CHARS])
    compound = max(-1.0, min(1.0, float(scores["compound"])))
    return TextScore(compound, words=len(_WORD.findall(text[:MAX_SCORED_CHARS])))
