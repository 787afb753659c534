"""The online model as a reviewer of the desk's review loop (issue 14, item 3).

For every intent that adds exposure (a buy; a sell below the position, which opens or grows
a short), the reviewer reads the model's latest `Prediction` for its symbol and its confidence
in the intent's direction (`p_up` for a buy, `1 - p_up` for a sell):
- below `veto_below`: refused (`online_model:SYM`, the confidence against the limit): the model
  is fairly sure the trade goes the wrong way; the proposer cannot size this away;
- below `full_above`: approved only at a smaller size: an order worth more than
  `confidence_scale x full_fraction x equity` (the scale linear from 0 at `veto_below` to 1 at
  `full_above`) is refused with that `online_size:SYM` cap, which proposers shrink to as to the
  per-order limit. The cap does not depend on the order, so a resized order passes the next
  round (a cap relative to the order would shrink it every round);
- else: passed.
An intent that reduces exposure always passes (the model never traps a position), and the
model says nothing (every check passes, its reason noted) until it has learnt `min_samples`
labels and its rolling accuracy is at least `min_accuracy`: a model no better than chance has
no business resizing trades. Every check carries the figures, so the decision log says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from models.core.messages import Proposal, RiskCheck, RiskVerdict, Side
from models.online.model import Prediction
from models.review.loop import ReviewContext

__all__ = ["OnlineModelReviewer", "OnlineReviewConfig", "confidence_scale"]

_QUANT = Decimal("0.0001")


class OnlineReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    veto_below: float = Field(default=0.35, ge=0, le=0.5)
    full_above: float = Field(default=0.5, ge=0, le=1)
    min_samples: int = Field(default=200, ge=0)
    min_accuracy: float = Field(default=0.52, ge=0, le=1)
    full_fraction: Decimal = Field(default=Decimal(1), gt=0, le=10)
    """The share of equity one order may take at full confidence (the cap's base)."""


def confidence_scale(confidence: float, cfg: OnlineReviewConfig) -> float:
    """The share of a trade the model lets through at `confidence` (0 at or below the veto,
    1 at or above `full_above`, linear between)."""
    if confidence <= cfg.veto_below:
        return 0.0
    if confidence >= cfg.full_above or cfg.full_above <= cfg.veto_below:
        return 1.0
    return (confidence - cfg.veto_below) / (cfg.full_above - cfg.veto_below)


@dataclass(frozen=True, slots=True)
class OnlineModelReviewer:
    """A `Reviewer` (models.review.loop) over the latest predictions by symbol."""

    predictions: Mapping[str, Prediction]
    config: OnlineReviewConfig = field(default_factory=OnlineReviewConfig)
    name: str = "online_model"

    def _trusted(self, p: Prediction | None) -> str:
        """Why the model is not asked ("" when it is)."""
        if p is None:
            return "no prediction yet"
        if p.samples < self.config.min_samples:
            return f"learnt {p.samples} of {self.config.min_samples} bars"
        if p.accuracy is None or p.accuracy < self.config.min_accuracy:
            acc = "n/a" if p.accuracy is None else f"{p.accuracy:.3f}"
            return f"rolling accuracy {acc} below {self.config.min_accuracy}"
        return ""

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        checks: list[RiskCheck] = []
        for intent in proposal.intents:
            sym = intent.symbol
            held = ctx.portfolio.quantity(sym)
            reduces = intent.side is Side.SELL and intent.quantity <= held
            if reduces:
                continue
            p = self.predictions.get(sym)
            why_not = self._trusted(p)
            if why_not or p is None:
                checks.append(
                    RiskCheck(
                        name=f"online_model:{sym}", passed=True, message=f"not asked: {why_not}"
                    )
                )
                continue
            confidence = p.p_up if intent.side is Side.BUY else 1.0 - p.p_up
            conf = Decimal(str(confidence)).quantize(_QUANT)
            scale = confidence_scale(confidence, self.config)
            veto = Decimal(str(self.config.veto_below))
            checks.append(
                RiskCheck(
                    name=f"online_model:{sym}",
                    passed=scale > 0.0,
                    limit=veto,
                    value=conf,
                    message=f"the online model gives a {intent.side.value} of {sym} "
                    f"{conf} confidence (rolling accuracy {p.accuracy:.3f} over its last "
                    f"calls); at or below {veto} it is refused",
                )
            )
            if 0.0 < scale < 1.0:
                price = ctx.prices.get(sym)
                if price is not None:
                    notional = intent.quantity * price
                    base = ctx.portfolio.equity() * self.config.full_fraction
                    cap = (base * Decimal(str(scale))).quantize(Decimal("0.01"))
                    if notional > cap:
                        checks.append(
                            RiskCheck(
                                name=f"online_size:{sym}",
                                passed=False,
                                limit=cap,
                                value=notional,
                                message=f"confidence {conf} lets an order take {scale:.0%} of "
                                f"{self.config.full_fraction} x equity",
                            )
                        )
        approved = all(c.passed for c in checks)
        return RiskVerdict(approved=approved, checks=checks, fee_estimate=Decimal(0))
