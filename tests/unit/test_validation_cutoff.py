"""The model's memory of the future (issue 12, part 4): knowledge cutoffs in the price table
and the in-sample label of each GPT decision and of a run (models/validation/cutoff.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from models.core.messages import GptCall, GptOutcome
from models.gpt.cost import DEFAULT_PRICES, KNOWLEDGE_CUTOFFS, knowledge_cutoff
from models.validation.cutoff import (
    SampleStatus,
    call_note,
    cutoff_end_ms,
    label_call,
    label_decision,
    label_run,
)

DAY_MS = 86_400_000


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def test_every_model_of_the_price_table_has_a_published_cutoff() -> None:
    assert set(KNOWLEDGE_CUTOFFS) == set(DEFAULT_PRICES)
    assert knowledge_cutoff("gpt-4o-mini") == date(2023, 10, 1)
    assert knowledge_cutoff("gpt-4.1") == date(2024, 6, 1)


def test_a_snapshot_has_its_alias_cutoff_and_names_are_never_matched_by_prefix() -> None:
    assert knowledge_cutoff("gpt-4o-2024-08-06") == knowledge_cutoff("gpt-4o")
    assert knowledge_cutoff("gpt-4o-mini-2024-07-18") == date(2023, 10, 1)
    assert knowledge_cutoff("gpt-4o-turbo") is None  # not gpt-4o's
    assert knowledge_cutoff("stratflow-local") is None
    assert knowledge_cutoff("gpt-5", {"gpt-5": date(2020, 1, 1)}) == date(2020, 1, 1)


def test_the_cutoff_day_itself_is_in_sample_and_the_next_day_is_not() -> None:
    cutoff = date(2023, 10, 1)
    end = cutoff_end_ms(cutoff)
    assert end == ms(datetime(2023, 10, 2, tzinfo=UTC))
    assert label_decision("gpt-4o", end, anonymised=False).status is SampleStatus.IN_SAMPLE
    after = label_decision("gpt-4o", end + 1, anonymised=False)
    assert after.status is SampleStatus.OUT_OF_SAMPLE and not after.flagged


@given(
    model=st.sampled_from(sorted(KNOWLEDGE_CUTOFFS)),
    offset_days=st.integers(min_value=-5000, max_value=5000),
    within_day_ms=st.integers(min_value=0, max_value=DAY_MS - 1),
    anonymised=st.booleans(),
)
def test_a_decision_is_in_sample_exactly_when_its_bar_ends_by_the_cutoff_day(
    model: str, offset_days: int, within_day_ms: int, anonymised: bool
) -> None:
    cutoff = KNOWLEDGE_CUTOFFS[model]
    # Independent of cutoff_end_ms: the first instant of the day after the cutoff, by datetime.
    next_day = datetime.combine(cutoff + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    bar_end = ms(next_day) + offset_days * DAY_MS + within_day_ms
    label = label_decision(model, bar_end, anonymised=anonymised)
    assert label.cutoff == cutoff and label.model == model
    if anonymised:
        assert label.status is SampleStatus.ANONYMISED and not label.flagged
    elif bar_end <= ms(next_day):
        assert label.status is SampleStatus.IN_SAMPLE and label.flagged
        assert str(cutoff) in call_note(label)
    else:
        assert label.status is SampleStatus.OUT_OF_SAMPLE and call_note(label) == ""


@given(bar_end=st.integers(min_value=0, max_value=4_000_000_000_000))
def test_an_unknown_model_is_possibly_in_sample_whatever_the_time(bar_end: int) -> None:
    label = label_decision("my-finetune", bar_end, anonymised=False)
    assert label.status is SampleStatus.POSSIBLY_IN_SAMPLE and label.cutoff is None
    assert call_note(label) == "possibly in-sample for my-finetune: knowledge cutoff unknown"


def _call(outcome: GptOutcome, ts_ms: int, model: str = "gpt-4o", detail: str = "") -> GptCall:
    return GptCall(
        call_id="d/gpt0",
        ts_ms=ts_ms,
        decision_id="d",
        symbol="GOOG",
        model=model,
        prompt_hash="h",
        outcome=outcome,
        detail=detail,
    )


def test_only_an_answered_call_on_flagged_bars_gains_the_label() -> None:
    before = ms(datetime(2010, 5, 3, 15, tzinfo=UTC))
    after = ms(datetime(2026, 5, 3, 15, tzinfo=UTC))

    def label(call: GptCall, anonymised: bool = False, model: str = "gpt-4o") -> GptCall:
        return label_call(call, anonymised=anonymised, fallback_model=model)

    for untouched in (
        _call(GptOutcome.TIMEOUT, before),  # no answer: no GPT decision
        _call(GptOutcome.OK, after),  # after the cutoff
    ):
        assert label(untouched) is untouched
    assert label(_call(GptOutcome.OK, before), anonymised=True).detail == ""
    labelled = label(_call(GptOutcome.OK, before))
    assert labelled.detail == "in-sample for gpt-4o: bar before its knowledge cutoff 2023-10-01"
    kept = label(_call(GptOutcome.OK, before, detail="rejected: x"))
    assert kept.detail.startswith("rejected: x; in-sample for gpt-4o")
    unnamed = label(_call(GptOutcome.OK, after, model=""), model="z")
    assert unnamed.detail == "possibly in-sample for z: knowledge cutoff unknown"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["gpt-4o", "gpt-5", "unknown-model"]),
            st.integers(min_value=1_500_000_000_000, max_value=1_800_000_000_000),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_a_run_is_labelled_by_its_worst_decision_and_counts_each(
    decisions: list[tuple[str, int, bool]],
) -> None:
    labels = [(label_decision(m, t, anonymised=a), t) for m, t, a in decisions]
    run = label_run(labels)
    statuses = [lab.status for lab, _ in labels]
    assert run.decisions == len(decisions)
    assert run.in_sample == statuses.count(SampleStatus.IN_SAMPLE)
    assert run.possibly_in_sample == statuses.count(SampleStatus.POSSIBLY_IN_SAMPLE)
    assert run.flagged == run.in_sample + run.possibly_in_sample
    order = list(SampleStatus)  # in, possibly, anonymised, out: worst first
    assert run.status == (min(statuses, key=order.index) if statuses else None)
    banner = run.banner()
    if not decisions:
        assert banner == "" and run.first_ms is None
    elif run.in_sample:
        assert banner.startswith("IN-SAMPLE FOR THE MODEL") and str(run.in_sample) in banner
    elif run.possibly_in_sample:
        assert banner.startswith("POSSIBLY IN-SAMPLE")
    else:
        assert not banner.startswith(("IN-SAMPLE", "POSSIBLY")) and banner


def test_a_backtests_gpt_decisions_are_labelled_from_its_answered_calls() -> None:
    """`api.backtest_output.gpt_label`: the run's answered calls (model, bar time) with the
    configured mode; a call without a model name is the configured model's."""
    from api.backtest import RunRows
    from api.backtest_output import gpt_label
    from models.config.settings import Settings

    def rows(answers: list[tuple[str, int]]) -> RunRows:
        return RunRows({}, [], {}, {}, set(), gpt_answers=answers)

    old = ms(datetime(2012, 1, 2, tzinfo=UTC))
    new = ms(datetime(2026, 1, 2, tzinfo=UTC))
    plain = Settings.model_validate({"symbols": {"GOOG": {}}})  # gpt-4o-mini by default
    run = gpt_label(plain, rows([("gpt-4o-mini-2024-07-18", old), ("", old), ("gpt-5", new)]))
    assert (run.decisions, run.in_sample, run.out_of_sample) == (3, 2, 1)
    assert run.models == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-5")
    anonymised = Settings.model_validate({"symbols": {"GOOG": {}}, "gpt": {"anonymize": True}})
    masked = gpt_label(anonymised, rows([("gpt-4o", old)]))
    assert masked.status is SampleStatus.ANONYMISED and masked.flagged == 0
    assert gpt_label(plain, rows([])).banner() == ""
