"""The prompt sanitizer folds every look-alike of the fence brackets, as a class.

The class is taken from Unicode's own data, independently of how `sanitize_text` builds its
table: every character whose NFKC form holds "<" or ">", and every character that Unicode's
TR39 confusables table (through `confusable_homoglyphs`' public API) calls confusable with
one of them, and every character Unicode names an angle bracket. None may survive cleaning,
alone or spelling a closing fence.
"""

from __future__ import annotations

import unicodedata

import pytest
from confusable_homoglyphs import confusables
from hypothesis import given
from hypothesis import strategies as st

from models.gpt.prompt import FENCE_TAG, sanitize_text

QUOTES = {"\u2039", "\u203a"}  # what the brackets become; the designated safe quotes


def _looks_like_a_bracket(ch: str) -> bool:
    if "<" in unicodedata.normalize("NFKC", ch) or ">" in unicodedata.normalize("NFKC", ch):
        return True
    if "ANGLE BRACKET" in unicodedata.name(ch, ""):  # 〈 ⟨ ⟪ ❬ ❰ ⧼ ...: same shape, other names
        return True
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=[]) or []
    return any(g["c"] in "<>" for hit in found for g in hit["homoglyphs"])


LOOKALIKES = sorted(
    ch
    for ch in (chr(c) for c in range(0x30000))
    if not unicodedata.category(ch).startswith(("C", "M")) and _looks_like_a_bracket(ch)
)


def test_the_class_holds_the_reported_canadian_syllabics() -> None:
    assert {"\u1438", "\u1433", "<", ">", "\u3008", "\u02c2", "\u27e8"} <= set(LOOKALIKES)


@pytest.mark.parametrize(
    "ch", [c for c in LOOKALIKES if c not in QUOTES], ids=lambda c: f"U+{ord(c):04X}"
)
def test_no_lookalike_survives_cleaning(ch: str) -> None:
    fence = f"{ch}/{FENCE_TAG} id=x{ch}"
    cleaned = sanitize_text(fence)
    assert not any(_looks_like_a_bracket(c) for c in set(cleaned) - QUOTES), cleaned
    assert cleaned[0] in QUOTES and cleaned[-1] in QUOTES


@given(st.lists(st.sampled_from([*LOOKALIKES, "/", " ", "a", "\u200b", "\u0301"]), max_size=30))
def test_text_made_of_lookalikes_keeps_none(chars: list[str]) -> None:
    cleaned = sanitize_text("".join(chars))
    assert not any(_looks_like_a_bracket(c) for c in set(cleaned) - QUOTES), cleaned
    assert sanitize_text(cleaned) == cleaned
