"""A per-symbol online model of the next bar's direction, learnt prequentially (issue 14).

At each bar of a symbol, `OnlineSignModel.step` first learns from the previous bar's features
with the label the current bar revealed (did the close rise?), and only then predicts the next
bar from the current features: the model never sees a label before predicting it (predict,
then learn: no look-ahead), and its quality is measured on predictions made before their
outcome was known (rolling accuracy and log loss over the last `window` predictions).

The model is River's logistic regression on standardised features (`StandardScaler |
LogisticRegression`, SGD), one per symbol: small (~140 µs a bar on a loaded 2-core
machine), and it follows a market that changes. Its state is plain Python objects: it
pickles with the desk's snapshot, so a restart goes on learning where it stopped. Which
features it reads is configured (`OnlineConfig.features`: any bar feature or sentiment
feature by name); a missing or non-finite value is left out of that bar's input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OnlineConfig", "OnlineSignModel", "Prediction"]


class OnlineConfig(BaseModel):
    """The online model's settings (the `online` settings section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = (
        "return_1",
        "rsi",
        "volatility",
        "volume_z",
        "drawdown",
        "sentiment_mean",
        "sentiment_surprise",
    )
    learning_rate: float = Field(default=0.01, gt=0, le=1)
    window: int = Field(default=500, ge=10)
    """Predictions the rolling quality metrics cover."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the model says about a symbol's next bar, and how good it has been."""

    symbol: str
    ts_ms: int
    p_up: float
    """Probability that the next bar closes higher (0.5: no opinion)."""
    samples: int
    """Labels learnt so far."""
    accuracy: float | None
    """Rolling share of right calls (None before the first scored prediction)."""
    log_loss: float | None


def _pipeline(learning_rate: float) -> Any:
    from river import compose, linear_model, optim, preprocessing

    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate)),
    )


@dataclass(slots=True)
class _SymbolModel:
    pipeline: Any
    last_x: dict[str, float] | None = None
    last_close: float | None = None
    last_p: float | None = None
    samples: int = 0
    hits: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


@dataclass(slots=True)
class OnlineSignModel:
    """The models of every symbol (module docstring)."""

    config: OnlineConfig = field(default_factory=OnlineConfig)
    symbols: dict[str, _SymbolModel] = field(default_factory=dict)

    def _inputs(self, features: dict[str, float]) -> dict[str, float]:
        out = {}
        for name in self.config.features:
            value = features.get(name)
            if value is not None and math.isfinite(value):
                out[name] = float(value)
        return out

    def step(self, symbol: str, ts_ms: int, close: float, features: dict[str, float]) -> Prediction:
        """One bar of `symbol`: learn the previous bar's outcome, then predict the next."""
        model = self.symbols.get(symbol)
        if model is None:
            model = self.symbols[symbol] = _SymbolModel(_pipeline(self.config.learning_rate))
        if model.last_x is not None and model.last_close is not None:
            up = close > model.last_close
            if model.last_p is not None:  # score the call made before the label was known
                self._score(model, model.last_p, up)
            model.pipeline.learn_one(model.last_x, up)
            model.samples += 1
        x = self._inputs(features)
        p_up = float(model.pipeline.predict_proba_one(x).get(True, 0.5)) if x else 0.5
        model.last_x, model.last_close, model.last_p = x, close, p_up
        accuracy = sum(model.hits) / len(model.hits) if model.hits else None
        loss = sum(model.losses) / len(model.losses) if model.losses else None
        return Prediction(symbol, ts_ms, p_up, model.samples, accuracy, loss)

    def _score(self, model: _SymbolModel, p_up: float, up: bool) -> None:
        window = self.config.window
        model.hits.append(int((p_up > 0.5) == up))
        p = min(max(p_up if up else 1.0 - p_up, 1e-12), 1.0)
        model.losses.append(-math.log(p))
        if len(model.hits) > window:
            del model.hits[0], model.losses[0]
