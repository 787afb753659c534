"""The compliance rules' parameters, one file per jurisdiction or account (YAML/JSON, read by
the caller and validated here). Every field is optional: a rule whose parameter is unset is
off, and says so in no verdict. What each rule enforces and why: specs/models.compliance.md."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ComplianceConfig", "MarketRules", "SessionHours", "Throttle"]

Positive = Annotated[Decimal, Field(gt=0)]


class Throttle(BaseModel):
    """At most `count` within `window_s` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    window_s: int = Field(ge=1, le=86_400)


class SessionHours(BaseModel):
    """When a venue trades, in UTC: weekdays (0 Monday .. 6 Sunday) and an open and close
    minute of the day (close after open; 0 and 1440 for all day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    open_minute: int = Field(default=0, ge=0, le=1440)
    close_minute: int = Field(default=1440, ge=0, le=1440)


class MarketRules(BaseModel):
    """The exchange's own limits of an instrument (from its market info: ccxt `market()`'s
    `limits.amount.min` and `precision.amount`). The price tick binds limit orders; the desk
    places market orders only, so it has no rule yet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_quantity: Decimal | None = Field(default=None, ge=0)
    quantity_step: Decimal | None = Field(default=None, gt=0)


class ComplianceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jurisdiction: str = Field(default="", max_length=40)
    account: str = Field(default="", max_length=80)
    blocked: frozenset[str] = frozenset()
    """Instruments never traded (sanctions, a firm's blocklist): block."""
    restricted: frozenset[str] = frozenset()
    """Instruments traded only with a warning on record (a watch list): warn."""
    allowed_venues: frozenset[str] | None = None
    """Venues this account may trade on (None: any)."""
    instrument_jurisdictions: dict[str, str] = Field(default_factory=dict)
    allowed_jurisdictions: frozenset[str] | None = None
    """Jurisdictions of instruments this account may trade (an instrument not in
    `instrument_jurisdictions` is unknown and blocked while this is set)."""
    price_collar: Decimal | None = Field(default=None, gt=0, lt=1)
    """Largest move of the order's price estimate from the reference price (0.05: 5 %); no
    reference price: block (fail closed)."""
    max_order_value: Positive | None = None
    max_order_quantity: Positive | None = None
    max_position_value: Positive | None = None
    max_concentration: Decimal | None = Field(default=None, gt=0, le=1)
    """Largest share of equity one instrument may take after the order."""
    order_rate: Throttle | None = None
    """Orders of the account (RTS 6 Art. 15(1)(c): maximum messages)."""
    repeat_throttle: Throttle | None = None
    """Executions of one instrument and side (RTS 6 Art. 15(1)(d): repeated automated
    execution throttles)."""
    self_trade_prevention: Literal["expire_taker", "expire_maker", "expire_both", "none"] = (
        "expire_taker"
    )
    """What the venue does if an order would still meet one of ours (passed through ccxt where
    the exchange has such a mode); the rule itself never sends an order against our own."""
    hours: dict[str, SessionHours] = Field(default_factory=dict)
    """Trading hours per venue (a venue not listed trades all the time)."""
    markets: dict[str, MarketRules] = Field(default_factory=dict)
