"""`stratflow validate --config CFG` (no strategy file or run id): the configured setup's
validation step.

Every strategy file of the setup is checked on the given data (default: the shipped datasets
its strategies trade) as `stratflow validate FILE` checks one, and the outcome is recorded in
the promotion ledger as the setup's `validation` step (`api.promotion_steps.record_validation`,
`models.validation.promotion.validation_verdict`): it passes when no check fails, warnings
allowed and listed; for a GPT controller the validation gate must be on too. Only this form
records, so what is recorded is always exactly the setup a later `run --exchange` trades: a
file's strategies edited after `validate FILE` would otherwise pass for a setup never checked.

A setup without strategy files has nothing to check (GPT writes its strategies on the fly,
each judged by the gate; the built-in engine's rules are the project's): its step is recorded
without data, and `stratflow backtest` records it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from api.validate_cmd import Target
    from models.config.settings import Settings
    from models.validation.fragility import CheckOptions, Fragility
    from models.validation.promotion import StepRecord

__all__ = ["validate_setup"]


def validate_setup(
    settings: Settings,
    sources: list[str] | None,
    symbol: str | None,
    interval: str | None,
    start_ms: int | None,
    end_ms: int | None,
    span: str,
    options: CheckOptions,
    *,
    progress: bool,
    say: Callable[[str], None],
) -> tuple[Target | None, list[Fragility], StepRecord]:
    """Check the setup's strategy files (none: nothing to check) and record the step; the
    target checked (None without files), every check, and the record."""
    from api.promotion_steps import open_ledger, record_validation
    from api.validate_cmd import _target_bars, check_all
    from models.validation.promotion import setup_hash

    target: Target | None = None
    checked: list[Fragility] = []
    first: int | None = None
    last: int | None = None
    if settings.strategies:
        label = f"setup {setup_hash(settings)}"
        target, _ = _target_bars(
            settings,
            list(settings.strategies),
            label,
            sources,
            symbol,
            interval,
            start_ms,
            end_ms,
            span,
        )
        checked = check_all(settings, target, options, progress=progress, say=say)
        starts = [int(b.start_ms[0]) for b in target.bars.values() if len(b)]
        ends = [int(b.end_ms[-1]) for b in target.bars.values() if len(b)]
        first, last = (min(starts), max(ends)) if starts else (None, None)
    results = [(c.strategy, c.symbol, r) for c in checked for r in c.results]
    with open_ledger(settings) as store:
        record = record_validation(store, settings, results, first, last)
    return target, checked, record
