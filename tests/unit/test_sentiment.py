"""Item sentiment (Loughran-McDonald for news, VADER for posts) and its per-bar windows
(models/sentiment)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.sentiment.lexicons import loughran_mcdonald
from models.sentiment.score import NEGATIONS, score_news, score_post
from models.sentiment.windows import SentimentWindows

LM = loughran_mcdonald()
POSITIVE = sorted(LM.positive)
NEGATIVE = sorted(LM.negative - LM.positive)
NEUTRAL = ["THE", "COMPANY", "QUARTER", "SHARES", "REPORTED", "ON", "TUESDAY", "ITS"]


def test_the_lm_lexicon_is_the_finance_one() -> None:
    assert len(LM.positive) > 300 and len(LM.negative) > 2000
    assert {"LOSS", "LOSSES", "LITIGATION", "DECLINED"} <= LM.negative
    assert {"GAIN", "GAINS", "IMPROVED", "STRONG"} <= LM.positive
    # The point of a finance lexicon: words general lexicons call negative are neutral here.
    assert not {"LIABILITY", "TAX", "COST", "CRUDE"} & (LM.positive | LM.negative)


@given(
    st.lists(
        st.tuples(st.sampled_from(["p", "n", "x"]), st.integers(0, 10_000)),
        min_size=0,
        max_size=40,
    ),
    st.booleans(),
)
def test_a_news_score_is_the_word_count_ratio(words: list[tuple[str, int]], lower: bool) -> None:
    """Independent count: no negation among the words, so each positive counts positive."""
    pool = {"p": POSITIVE, "n": NEGATIVE, "x": NEUTRAL}
    text = " ".join(pool[k][i % len(pool[k])] for k, i in words)
    scored = score_news(text.lower() if lower else text)
    p = sum(1 for k, _ in words if k == "p")
    n = sum(1 for k, _ in words if k == "n")
    assert (scored.positive, scored.negative, scored.words) == (p, n, len(words))
    assert scored.score == pytest.approx(0.0 if p + n == 0 else (p - n) / (p + n))
    assert -1.0 <= scored.score <= 1.0


@pytest.mark.parametrize("negation", [*sorted(NEGATIONS), "didn't"])
def test_a_negated_positive_word_is_negative(negation: str) -> None:
    assert score_news("Margins improved").score == 1.0
    assert score_news(f"Margins {negation} improved").score == -1.0
    assert score_news(f"{negation} margins really improved").score == -1.0
    assert score_news(f"{negation} one two three improved").score == 1.0  # out of its reach


@given(st.text(max_size=300))
def test_any_text_scores_in_range(text: str) -> None:
    for scored in (score_news(text, text), score_post(text)):
        assert -1.0 <= scored.score <= 1.0


def test_posts_score_by_vader() -> None:
    assert score_post("ABC to the moon!!! love it").score > 0.5
    assert score_post("this stock is a terrible scam, awful").score < -0.5
    assert score_post("ABC opens at ten").score == 0.0


items = st.lists(
    st.tuples(st.integers(0, 100), st.floats(-1, 1), st.sampled_from(["A", "B"])),
    max_size=60,
)


@settings(max_examples=200)
@given(items, st.lists(st.integers(0, 110), min_size=1, max_size=12), st.integers(1, 10))
def test_windows_count_what_was_published_up_to_each_close_and_nothing_later(
    added: list[tuple[int, float, str]], ends: list[int], span: int
) -> None:
    ends = sorted(ends)
    windows = SentimentWindows(span=span)
    for ts, score, symbol in added:
        windows.add([symbol], ts, score)
    mine = [(ts, s) for ts, s, sym in added if sym == "A"]
    means: list[float] = []
    previous = None
    for end in ends:
        got = windows.close("A", end)
        inside = [s for ts, s in mine if ts <= end and (previous is None or ts > previous)]
        previous = end
        assert got.count == len(inside)  # a later item never counts now
        if not inside:
            assert (got.mean, got.surprise) == (0.0, 0.0)
            continue
        mean = sum(inside) / len(inside)
        assert got.mean == pytest.approx(mean)
        # The surprise against pandas' own exponentially weighted mean of earlier windows.
        baseline = pd.Series(means).ewm(span=span, adjust=False).mean().iloc[-1] if means else None
        assert got.surprise == pytest.approx(0.0 if baseline is None else mean - baseline)
        means.append(mean)


def test_an_item_of_several_symbols_counts_once_for_each() -> None:
    windows = SentimentWindows()
    windows.add(["A", "B", "A"], 5, 0.5)
    assert windows.close("A", 10).count == 1 and windows.close("B", 10).count == 1
    assert windows.close("C", 10).count == 0


def test_a_window_cannot_end_before_the_last_nor_take_a_score_out_of_range() -> None:
    windows = SentimentWindows()
    windows.add(["A"], 5, 0.5)
    windows.close("A", 10)
    with pytest.raises(ValueError, match="before the last"):
        windows.close("A", 9)
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        windows.add(["A"], 5, 1.5)
