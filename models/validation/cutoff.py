"""The model's memory of the future: is a GPT decision in-sample for the model that took it?

A language model trained on text up to its knowledge cutoff may have read what happened after
the bars it is shown: a backtest in which GPT decides on 2008 GOOG bars measures its memory of
2008, not its judgement. So every GPT decision, and the run as a whole, is labelled:

- `in_sample`: the decision's bar ends on or before the model's published cutoff day (UTC): the
  model may remember what followed;
- `possibly_in_sample`: the model's cutoff is unknown (not in `models.gpt.cost.KNOWLEDGE_CUTOFFS`),
  so nothing rules memory out;
- `anonymised`: anonymised mode was on (`gpt.anonymize`: opaque symbols, relative time, rebased
  prices), so the model is not told which history it sees; not labelled in-sample, though the
  method has limits (`models.gpt.anonymize`);
- `out_of_sample`: the bar is after the cutoff day: the model cannot have read about it.

Pure: the model name, the bars' times and the mode in, a label out. The decision log carries
the label of an in-sample or possibly in-sample decision (`call_note`); the backtest report shows
the run's (`label_run`, `RunLabel.banner`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from models.core.messages import GPT_DETAIL_MAX_CHARS, GptCall, GptOutcome
from models.gpt.cost import KNOWLEDGE_CUTOFFS, knowledge_cutoff

__all__ = [
    "DecisionLabel",
    "RunLabel",
    "SampleStatus",
    "call_note",
    "cutoff_end_ms",
    "label_call",
    "label_decision",
    "label_run",
]


class SampleStatus(StrEnum):
    IN_SAMPLE = "in_sample"
    POSSIBLY_IN_SAMPLE = "possibly_in_sample"
    ANONYMISED = "anonymised"
    OUT_OF_SAMPLE = "out_of_sample"


_FLAGGED = frozenset({SampleStatus.IN_SAMPLE, SampleStatus.POSSIBLY_IN_SAMPLE})


def cutoff_end_ms(cutoff: date) -> int:
    """Epoch ms of the end of the cutoff day (UTC): a bar ending at or before it is in-sample."""
    start = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC) + timedelta(days=1)
    return int(start.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class DecisionLabel:
    """One GPT decision's label: the status, the model, its cutoff (None: unknown)."""

    status: SampleStatus
    model: str
    cutoff: date | None

    @property
    def flagged(self) -> bool:
        """True when the decision may come from the model's memory of what followed."""
        return self.status in _FLAGGED


def label_decision(
    model: str,
    bar_end_ms: int,
    *,
    anonymised: bool,
    cutoffs: Mapping[str, date] = KNOWLEDGE_CUTOFFS,
) -> DecisionLabel:
    """The label of a decision `model` took on the bar ending at `bar_end_ms`."""
    cutoff = knowledge_cutoff(model, cutoffs)
    if anonymised:
        status = SampleStatus.ANONYMISED
    elif cutoff is None:
        status = SampleStatus.POSSIBLY_IN_SAMPLE
    elif bar_end_ms <= cutoff_end_ms(cutoff):
        status = SampleStatus.IN_SAMPLE
    else:
        status = SampleStatus.OUT_OF_SAMPLE
    return DecisionLabel(status, model, cutoff)


def call_note(label: DecisionLabel) -> str:
    """The decision log's words for a flagged decision ("" for any other): appended to the
    detail of its GPT call row, so an unflagged call's row is exactly as before."""
    if label.status is SampleStatus.IN_SAMPLE:
        return f"in-sample for {label.model}: bar before its knowledge cutoff {label.cutoff}"
    if label.status is SampleStatus.POSSIBLY_IN_SAMPLE:
        return f"possibly in-sample for {label.model}: knowledge cutoff unknown"
    return ""


def label_call(
    call: GptCall,
    *,
    anonymised: bool,
    fallback_model: str,
    cutoffs: Mapping[str, date] = KNOWLEDGE_CUTOFFS,
) -> GptCall:
    """`call` with its label in `detail` when the answer it carries is a flagged decision
    (an answered call, `ok`); any other call is returned as it is. The model is the one that
    answered (`call.model`), else `fallback_model` (the configured one)."""
    if call.outcome is not GptOutcome.OK:
        return call
    model = call.model or fallback_model
    note = call_note(label_decision(model, call.ts_ms, anonymised=anonymised, cutoffs=cutoffs))
    if not note:
        return call
    detail = f"{call.detail}; {note}" if call.detail else note
    return call.model_copy(update={"detail": detail[:GPT_DETAIL_MAX_CHARS]})


@dataclass(frozen=True, slots=True)
class RunLabel:
    """A run's GPT decisions counted by label, with the bars' time range they decided on."""

    decisions: int
    in_sample: int
    possibly_in_sample: int
    anonymised: int
    out_of_sample: int
    models: tuple[str, ...]
    first_ms: int | None
    last_ms: int | None

    @property
    def status(self) -> SampleStatus | None:
        """The run's label: the worst of its decisions' (None: no GPT decision)."""
        for status, n in (
            (SampleStatus.IN_SAMPLE, self.in_sample),
            (SampleStatus.POSSIBLY_IN_SAMPLE, self.possibly_in_sample),
            (SampleStatus.ANONYMISED, self.anonymised),
            (SampleStatus.OUT_OF_SAMPLE, self.out_of_sample),
        ):
            if n:
                return status
        return None

    @property
    def flagged(self) -> int:
        return self.in_sample + self.possibly_in_sample

    def banner(self) -> str:
        """One line for the report ("" without GPT decisions)."""
        if not self.decisions:
            return ""
        models = ", ".join(self.models)
        if self.in_sample:
            return (
                f"IN-SAMPLE FOR THE MODEL: {self.in_sample} of {self.decisions} GPT decisions "
                f"({models}) were taken on bars before the model's knowledge cutoff; their "
                "results may reflect the model's memory of what followed, not its judgement"
                + (
                    f" ({self.possibly_in_sample} more with an unknown cutoff)"
                    if self.possibly_in_sample
                    else ""
                )
            )
        if self.possibly_in_sample:
            return (
                f"POSSIBLY IN-SAMPLE FOR THE MODEL: the knowledge cutoff of {models} is unknown, "
                f"so none of the {self.decisions} GPT decisions can be shown to be free of the "
                "model's memory of what followed"
            )
        if self.anonymised == self.decisions:
            return (
                f"anonymised: all {self.decisions} GPT decisions ({models}) saw opaque symbols, "
                "relative time and rebased prices"
            )
        return (
            f"out of sample for the model: {self.out_of_sample} of {self.decisions} GPT "
            f"decisions ({models}) after its knowledge cutoff"
            + (f", {self.anonymised} anonymised" if self.anonymised else "")
        )


def label_run(labels: Iterable[tuple[DecisionLabel, int]]) -> RunLabel:
    """Count `(label, bar_end_ms)` of a run's GPT decisions."""
    counts = dict.fromkeys(SampleStatus, 0)
    models: set[str] = set()
    times: list[int] = []
    for label, ms in labels:
        counts[label.status] += 1
        models.add(label.model)
        times.append(ms)
    return RunLabel(
        decisions=len(times),
        in_sample=counts[SampleStatus.IN_SAMPLE],
        possibly_in_sample=counts[SampleStatus.POSSIBLY_IN_SAMPLE],
        anonymised=counts[SampleStatus.ANONYMISED],
        out_of_sample=counts[SampleStatus.OUT_OF_SAMPLE],
        models=tuple(sorted(models)),
        first_ms=min(times, default=None),
        last_ms=max(times, default=None),
    )
