"""The configuration of issue 12's gates: the validation gate every new GPT strategy passes
(`models.validation.gate`, `models.validation.scenarios`) and the road from backtest to paper to
live (`models.validation.promotion`). Sections of `models.config.settings.Settings`."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from models.config.base import Duration, _duration_field, _Section

__all__ = ["PromotionConfig", "ScenarioConfig", "ValidationConfig", "ValidationThresholds"]


# ------------------------------------------------------------------ validation gate (issue 12)


class ScenarioConfig(_Section):
    """The stress scenarios a new strategy is run through (`models.validation.scenarios`), built
    from the symbol's own recent bars. Defaults are shocks a strategy must survive on a liquid
    crypto or equity venue, not the worst ever seen: a flash crash of 20 % (BTC fell ~30 % intraday
    on 2021-05-19; the simulator's `FlashCrash` falls 15 % and regains half), an opening gap of
    10 % (an earnings gap or an exchange outage), a volatility three times the window's (a calm
    week turning into a stressed one, as the simulator's regimes 0.01 -> 0.03), and costs of a thin
    book (slippage x5, fees x2: a taker's fee tier and a book a few levels deep)."""

    flash_crash_pct: float = Field(
        default=0.20, gt=0, lt=1, description="Fall of each flash crash, e.g. 0.2 = 20 %"
    )
    flash_crash_bars: int = Field(default=3, ge=1, le=1000, description="Bars the fall takes")
    recovery_pct: float = Field(
        default=0.5, ge=0, le=1, description="Share of the fall regained after a crash"
    )
    recovery_bars: int = Field(default=10, ge=1, le=10_000, description="Bars the recovery takes")
    shocks: int = Field(
        default=3,
        ge=1,
        le=50,
        description="Crashes and gaps, placed evenly in the window (so a strategy that is long "
        "at some point is long through one); the worst one counts",
    )
    gap_pct: float = Field(
        default=0.10, gt=0, lt=1, description="An open this far below the previous close"
    )
    regime_fall_pct: float = Field(
        default=0.10,
        ge=0,
        lt=1,
        description="Regime switch: the stressed part's drift reversed, and at least this fall "
        "over it (a window without a trend still turns down)",
    )
    volatility_scale: float = Field(
        default=3.0, ge=1, le=20, description="Volatility burst: bar returns scaled by this"
    )
    stressed_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of the window (its end) the regime switch and the burst take",
    )
    slippage_mult: float = Field(
        default=5.0, ge=1, le=1000, description="Thin liquidity: slippage multiplied by this"
    )
    fee_mult: float = Field(
        default=2.0, ge=1, le=1000, description="Thin liquidity: fees multiplied by this"
    )


class ValidationThresholds(_Section):
    """What a new strategy must show to run. Losses are fractions of equity (0.25 = 25 %)."""

    max_drawdown_pct: float = Field(
        default=0.25, gt=0, le=1, description="Largest peak-to-trough fall on the history"
    )
    max_scenario_loss_pct: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Largest fall of equity in any stress scenario (the worst one counts)",
    )
    min_trades: int = Field(
        default=1,
        ge=0,
        le=100_000,
        description="Closed trades on the history: a strategy that never traded there has "
        "shown nothing",
    )
    max_underperformance_pct: float = Field(
        default=0.10,
        ge=0,
        le=10,
        description="How far the history's return may fall short of holding the symbol at the "
        "strategy's own position fraction (0.1: ten points of equity)",
    )
    min_history_bars: int = Field(
        default=50,
        ge=2,
        le=1_000_000,
        description="Bars of history needed to judge at all (never fewer than the strategy's "
        "warm-up plus two); fewer: refused, nothing to judge it on",
    )


class ValidationConfig(_Section):
    """The gate every new GPT strategy passes before it runs (`models.validation.gate`)."""

    enabled: bool = Field(
        default=True, description="Validate every strategy GPT creates or replaces"
    )
    window_bars: int = Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description="Recent bars kept per symbol (in the desk's state) to validate on",
    )
    unmodelled: Literal["warn", "fail"] = Field(
        default="warn",
        description="A strategy part the evaluator does not run (target_weights rebalancing, a "
        "short): warn (its rules are still judged; logged) or fail (refused)",
    )
    thresholds: ValidationThresholds = ValidationThresholds()
    scenarios: ScenarioConfig = ScenarioConfig()


# --- promotion (issue 12, part 5): the road from backtest to paper to live -------------------


class PromotionConfig(_Section):
    """What each step from backtest to live must show (`models.validation.promotion`); none of
    it changes a run's results, so it is not a result setting."""

    backtest_max_drawdown: Decimal = Field(
        default=Decimal("0.30"), gt=0, le=1, description="Largest drawdown a passing backtest has"
    )
    backtest_min_trades: int = Field(
        default=1, ge=0, description="Round trips a passing backtest has at least"
    )
    paper_min_duration: Duration = _duration_field(
        "24h", "Event time a paper run covers (first bar to last) before approval"
    )
    slippage_scale_bps: Decimal = Field(
        default=Decimal("25"), gt=0, description="Mean fill slippage vs simulated that scores 1"
    )
    fill_mismatch_scale: Decimal = Field(
        default=Decimal("0.10"), gt=0, description="Share of fills missing/extra that scores 1"
    )
    pnl_gap_scale: Decimal = Field(
        default=Decimal("0.01"), gt=0, description="P&L gap vs simulated / equity that scores 1"
    )
    divergence_limit: Decimal = Field(
        default=Decimal("1"), gt=0, description="Largest divergence score paper or live may have"
    )
    demote_drawdown: Decimal = Field(
        default=Decimal("0.15"), gt=0, le=1, description="A live setup past it is demoted"
    )
    watch: bool = Field(
        default=False,
        description="Demote past demote_drawdown or divergence_limit in this exchange run "
        "(always on for real orders; set it to try demotion in a --paper run)",
    )
    divergence_min_orders: int = Field(
        default=5,
        ge=1,
        description="Orders measured against the simulator (settled, their next bar seen) "
        "before a live run's divergence may demote it: one odd fill cannot",
    )
    divergence_window: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="The last measured orders a live run's divergence is scored on",
    )

    @model_validator(mode="after")
    def _window_holds_the_minimum(self) -> PromotionConfig:
        if self.divergence_min_orders > self.divergence_window:
            raise ValueError(
                f"divergence_min_orders ({self.divergence_min_orders}) is more than "
                f"divergence_window ({self.divergence_window}): the watch could never judge"
            )
        return self
