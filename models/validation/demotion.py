"""A live setup past its limits: demoted to paper, its strategies to close-only, said loudly.

While a setup trades real orders (`stratflow run --exchange`), the desk keeps a `DemotionWatch`
on its equity: the first bar at which the drawdown from the run's equity peak passes
`promotion.demote_drawdown` (`models.validation.promotion.demotion_reasons`) demotes the setup.
From then on the run is close-only (`CloseOnlyReviewer`, one more reviewer in the review loop:
an order that would open or grow a position is refused with its reason, exits pass, so GPT's
strategies and every other proposer only close), and a critical alert (`demotion_alert`, source
`promotion`, the setup hash in its context) tells the operator; `api.promotion_steps` turns that
alert into the ledger's `demotion` record, so the next `run --exchange` of the setup is
refused until a new paper run and a new approval.

The watch also measures the run's fills against the simulator as they arrive
(`models.validation.live_divergence.DivergenceWatch`, in `divergence`): once at least
`promotion.divergence_min_orders` orders are measured, a window whose divergence score passes
`promotion.divergence_limit` demotes the setup the same way (one critical alert, close-only).

Pure and picklable: the watch is part of the desk's snapshot, so a restarted run stays
demoted and keeps its peak and its measured orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from models.config.gates import PromotionConfig
from models.config.settings import ExecutionConfig
from models.core.ids import alert_id
from models.core.messages import Alert, Proposal, RiskCheck, RiskVerdict, Severity, Side
from models.review.loop import ReviewContext
from models.validation.live_divergence import DivergenceWatch
from models.validation.promotion import Divergence, demotion_reasons

__all__ = ["DEMOTION_SOURCE", "CloseOnlyReviewer", "DemotionWatch", "demotion_alert"]

DEMOTION_SOURCE = "promotion"
"""The `source` of a demotion alert (what `api.promotion_steps` looks for)."""


@dataclass(slots=True)
class DemotionWatch:
    """The run's equity peak and, once demoted, when and why (it never un-demotes itself:
    only a new paper run and approval promote the setup again)."""

    setup: str
    peak: Decimal | None = None
    demoted_ms: int | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    divergence: DivergenceWatch | None = None  # fills against the simulator (None: not watched)
    measured: Divergence | None = None  # the divergence that demoted the setup, if one did

    @property
    def demoted(self) -> bool:
        return self.demoted_ms is not None

    def observe(self, equity: Decimal, ts_ms: int, policy: PromotionConfig) -> list[str]:
        """Take the equity at `ts_ms`; the reasons when this is the moment of demotion (once),
        else []."""
        if self.peak is None or equity > self.peak:
            self.peak = equity
        if self.demoted or self.peak <= 0:
            return []
        drawdown = (self.peak - equity) / self.peak
        reasons = demotion_reasons(drawdown, None, policy)
        if reasons:
            self.demoted_ms = ts_ms
            self.reasons = tuple(reasons)
        return reasons

    def judge_divergence(
        self, ts_ms: int, policy: PromotionConfig, execution: ExecutionConfig
    ) -> list[str]:
        """After an order was measured: the reasons when the window's divergence score passes
        `divergence_limit` with at least `divergence_min_orders` orders in it (once), else []."""
        watch = getattr(self, "divergence", None)  # a snapshot from before the field: None
        if self.demoted or watch is None or len(watch.measured) < policy.divergence_min_orders:
            return []
        measured = watch.divergence(
            slippage_bps=execution.slippage_bps,
            fee_bps=execution.fee_bps,
            equity=execution.initial_cash,
            policy=policy,
        )
        reasons = demotion_reasons(Decimal(0), measured.score, policy)
        if reasons:
            self.demoted_ms = ts_ms
            self.measured = measured
            self.reasons = tuple(
                f"{r} over the last {measured.expected} orders (slippage "
                f"{measured.slippage_bps:.1f} bps, fill mismatch {measured.fill_mismatch:.2f}, "
                f"P&L gap {measured.pnl_gap:.4f})"
                for r in reasons
            )
        return list(self.reasons) if reasons else []


def demotion_alert(watch: DemotionWatch, ts_ms: int) -> Alert:
    """The critical alert of a demotion: what passed its limit, and what happens now."""
    return Alert(
        alert_id=alert_id("demotion", watch.setup, ts_ms),
        ts_ms=ts_ms,
        severity=Severity.CRITICAL,
        source=DEMOTION_SOURCE,
        message=(
            f"setup {watch.setup} demoted to paper: {'; '.join(watch.reasons)}; this run is "
            "close-only now (exits only), and the next run --exchange needs a new paper run "
            "and approval"
        ),
        context={"setup": watch.setup, "reasons": list(watch.reasons)},
    )


@dataclass(frozen=True, slots=True)
class CloseOnlyReviewer:
    """Refuses every order that would open or grow a position (a buy from flat or long, a sell
    from flat or short); orders that only reduce one pass."""

    name: str = "close_only"
    why: str = "the setup is demoted"  # the message's cause (a trading state reuses this one)

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        checks: list[RiskCheck] = []
        for intent in proposal.intents:
            held = ctx.portfolio.quantity(intent.symbol)
            delta = intent.quantity if intent.side is Side.BUY else -intent.quantity
            grows = abs(held + delta) > abs(held) or (held != 0 and (held + delta) * held < 0)
            checks.append(
                RiskCheck(
                    name=self.name,
                    passed=not grows,
                    limit=abs(held),
                    value=abs(held + delta),
                    message=(
                        f"{self.why}: {intent.side.value} {intent.quantity} "
                        f"{intent.symbol} would open or grow a position (close-only)"
                        if grows
                        else ""
                    ),
                )
            )
        return RiskVerdict(
            approved=all(c.passed for c in checks), checks=checks, fee_estimate=Decimal(0)
        )
