"""Anonymised mode: ask GPT about history without letting it recognise the history.

A backtest on 2008 GOOG bars is worthless if the model answers from what it read about GOOG in
2008: it knows what came next. So, for backtests, the prompt is rewritten before it is sent:
- symbols become opaque ids (`ASSET-1`, `ASSET-2`, ... in order of first appearance, or keyed
  hashes `ASSET-<10 hex>` that stay the same across decisions when a key is given);
- absolute times become "seconds before the decision" (the decision itself is at 0);
- prices are rebased per symbol, `base` (100) at a reference price (by default the decision
  bar's close, or a holding's mark price), and every feature that is a price (close, sma_*, ema,
  vwap, channel_high/low, peak_close) is rebased with the same factor, so their relations hold;
  unitless features (rsi, volatility, volume_z, drawdown, return_1) are left as they are;
  position quantities are scaled the other way, so every notional (and so every money limit)
  keeps its meaning;
- news and social text has tickers, cashtags and the company names passed in replaced by the
  ids (matched after cleaning, so zero-width characters, full-width letters and Greek/Cyrillic
  look-alikes do not hide a name), and numbers (prices, years, dates) and month names blanked.

The `AnonymizationMap` remembers all of it, so GPT's answer, written in anonymised terms, is
translated back: universe and target-weight ids to real symbols, and numeric thresholds that a
condition compares with a price feature back to real price levels. Everything is pure,
deterministic (same inputs, same ids, same numbers) and picklable, like the rest of `models/`.

Limits of the method, by design: a price threshold over a universe whose symbols were rebased
with different factors has no single real value, so it is refused with a reason; free text is
scrubbed only of the names it is given (an unnamed product or person still leaks), which is why
`drop_digest=True` exists.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Final, TypeVar

from pydantic import ValidationError

from models.core.messages import FeatureVector, Signal
from models.gpt.prompt import (
    MAX_SOURCE_CHARS,
    MAX_STORED_TEXT,
    CurrentStrategy,
    DigestItem,
    PositionInfo,
    PromptContext,
    sanitize_text,
)
from models.strategy.spec import (
    MAX_DECISION_RATIONALE,
    MAX_NAME_LEN,
    MAX_SPEC_RATIONALE,
    Comparison,
    ConditionNode,
    GptDecision,
    Rejection,
    StrategySpec,
    validation_reasons,
)

__all__ = [
    "ALIAS_PREFIX",
    "PRICE_FEATURES",
    "UNITLESS_FEATURES",
    "AnonymizationError",
    "AnonymizationMap",
    "anonymize",
    "build_map",
]

ALIAS_PREFIX: Final = "ASSET-"  # matches SYMBOL_PATTERN (no "_" allowed there)
PRICE_FEATURES: Final[frozenset[str]] = frozenset(
    {"close", "sma_fast", "sma_slow", "ema", "vwap", "channel_high", "channel_low", "peak_close"}
)
UNITLESS_FEATURES: Final[frozenset[str]] = frozenset(
    {"rsi", "volatility", "volume_z", "drawdown", "return_1"}
)
_THRESHOLD_BOUNDS: Final = ("above", "below")  # a threshold trigger's bounds, in its feature's unit
_SIG: Final = Context(prec=10)  # rebased numbers keep 10 significant digits
_KEYED_HEX: Final = 10


class AnonymizationError(ValueError):
    """The context (or decision) cannot be anonymised faithfully; the message says why."""


class _Untranslatable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------ numbers


def _round(value: Decimal) -> Decimal:
    """10 significant digits, no exponent for ordinary magnitudes, no trailing zeros."""
    d = _SIG.create_decimal(value)
    if d == d.to_integral_value():
        return d.quantize(Decimal(1))
    return d.normalize()


def _to_decimal(value: float) -> Decimal:
    return Decimal(repr(value))


# --------------------------------------------------------------------------------- text

# Greek and Cyrillic letters that look like Latin ones: folded (one character for one, so match
# positions stay valid) before looking for tickers and names, never in the text shown.
_FOLD: Final = str.maketrans(
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορυχ" + "АВЕКМНОРСТХЅІЈԚԜаеорсухіјѕԛԝһ",  # Greek + Cyrillic
    "ABEZHIKMNOPTYXaikvopux" + "ABEKMHOPCTXSIJQWaeopcyxijsqwh",
)
_NOT_ALNUM_BEFORE: Final = r"(?<![^\W_])"
_NOT_ALNUM_AFTER: Final = r"(?![^\W_])"
_CASHTAG: Final = re.compile(r"(?<![^\W_])\$[A-Za-z][A-Za-z0-9.]{0,9}(?![^\W_])")
# A number not glued to a letter ("Q4", "H1" stay; "close_above_800" does not); percentages
# stay (they are unitless).
_NUMBER: Final = re.compile(r"(?<![^\W_])(?<![.,])\d+(?:[.,]\d+)*(?![\d.,]*\s?%)")
_MONTHS: Final = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)
_MONTH: Final = re.compile(
    r"\b(?:"
    + "|".join(m for name in _MONTHS for m in (name, name.upper()))
    + r")\b|\b(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?(?=\s*#)"
)
_PLACEHOLDER_BASE: Final = 0xF0000  # plane-15 private use: `sanitize_text` removes any in input


@functools.lru_cache(maxsize=128)
def _term_regex(terms: tuple[tuple[str, bool, bool], ...]) -> re.Pattern[str]:
    """One alternation over (literal, case-insensitive, cashtag allowed); group `gN` = term N.
    Longest terms first, so "Motorola Mobility" wins over "Motorola"."""
    order = sorted(range(len(terms)), key=lambda i: (-len(terms[i][0]), terms[i][0], i))
    alts = []
    for i in order:
        literal, insensitive, cashtag = terms[i]
        body = re.escape(literal)
        if insensitive:
            body = f"(?i:{body})"
        prefix = r"\$?" if cashtag else ""
        alts.append(f"(?P<g{i}>{_NOT_ALNUM_BEFORE}{prefix}{body}{_NOT_ALNUM_AFTER})")
    return re.compile("|".join(alts))


@functools.lru_cache(maxsize=128)
def _alias_regex(aliases: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(a) for a in sorted(aliases, key=lambda a: (-len(a), a)))
    return re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])")


# ------------------------------------------------------------------------------ the map


@dataclass(frozen=True, slots=True)
class AnonymizationMap:
    """How one context was anonymised, and the way back.

    `aliases`: real symbol -> opaque id; `references`: real symbol -> the price shown as `base`;
    `now_ms`: the decision time (shown as 0); `names`: real symbol -> names replaced in text.
    Plain data (dicts, Decimals, str), so it pickles and compares by value."""

    aliases: dict[str, str]
    references: dict[str, Decimal]
    base: Decimal
    now_ms: int
    names: dict[str, tuple[str, ...]]
    strip_numbers: bool = True
    drop_digest: bool = False

    # ------------------------------------------------------------------ symbols and numbers

    def alias(self, symbol: str) -> str:
        try:
            return self.aliases[symbol]
        except KeyError:
            raise AnonymizationError(f"symbol {symbol!r} has no anonymous id") from None

    def real(self, alias: str) -> str | None:
        """The real symbol of an id, None for an id this map never gave out."""
        for real, given in self.aliases.items():
            if given == alias:
                return real
        return None

    def _reference(self, symbol: str) -> Decimal:
        ref = self.references.get(symbol)
        if ref is None:
            raise AnonymizationError(
                f"no reference price for {symbol!r}: pass it in reference_prices"
            )
        return ref

    def rebase_price(self, symbol: str, price: Decimal) -> Decimal:
        """Real price -> rebased (`base` at the symbol's reference price)."""
        return _round(price * self.base / self._reference(symbol))

    def restore_price(self, symbol: str, price: Decimal) -> Decimal:
        """Rebased price -> real price (exact inverse of the factor; no rounding)."""
        return price * self._reference(symbol) / self.base

    def rebase_float(self, symbol: str, value: float) -> float:
        return float(self.rebase_price(symbol, _to_decimal(value)))

    def restore_float(self, symbol: str, value: float) -> float:
        return float(self.restore_price(symbol, _to_decimal(value)))

    def scale_quantity(self, symbol: str, quantity: Decimal) -> Decimal:
        """Quantities move opposite to prices, so quantity * price (a notional) is unchanged."""
        return _round(quantity * self._reference(symbol) / self.base)

    def relative_ms(self, ts_ms: int) -> int:
        """A time as milliseconds relative to the decision (negative = before it)."""
        return ts_ms - self.now_ms

    # ----------------------------------------------------------------------------- text

    def _terms(self) -> tuple[tuple[tuple[str, bool, bool], ...], tuple[str, ...]]:
        """(literal, case-insensitive, cashtag) per term, and the alias each term becomes.
        Tickers of three or more characters match in any case ("$goog"); shorter ones only as
        written, so "A" does not eat the article "a". Names always match in any case."""
        terms: list[tuple[str, bool, bool]] = []
        targets: list[str] = []
        for real, alias in self.aliases.items():
            terms.append((real.translate(_FOLD), len(real) >= 3, True))
            targets.append(alias)
            for name in self.names.get(real, ()):
                clean = sanitize_text(name).translate(_FOLD)
                if clean:
                    terms.append((clean, True, False))
                    targets.append(alias)
        return tuple(terms), tuple(targets)

    def scrub_text(self, text: str, max_chars: int | None = None) -> str:
        """Untrusted text in anonymised terms: cleaned (`sanitize_text`), tickers, cashtags
        and names replaced by ids, unknown cashtags by "[ticker]", numbers by "#" and month
        names by "[month]" (unless `strip_numbers` is off). Percentages are kept."""
        clean = sanitize_text(text)
        terms, targets = self._terms()
        if terms:
            regex = _term_regex(terms)
            folded = clean.translate(_FOLD)
            pieces: list[str] = []
            pos = 0
            for m in regex.finditer(folded):
                index = int((m.lastgroup or "g0")[1:])
                pieces.append(clean[pos : m.start()])
                pieces.append(chr(_PLACEHOLDER_BASE + index))
                pos = m.end()
            pieces.append(clean[pos:])
            clean = "".join(pieces)
        clean = _CASHTAG.sub("[ticker]", clean)
        if self.strip_numbers:
            clean = _MONTH.sub("[month]", _NUMBER.sub("#", clean))
        out = "".join(
            targets[ord(ch) - _PLACEHOLDER_BASE]
            if _PLACEHOLDER_BASE <= ord(ch) < _PLACEHOLDER_BASE + len(targets)
            else ch
            for ch in clean
        )
        return sanitize_text(out, max_chars)

    def restore_text(self, text: str) -> str:
        """Ids back to real symbols (for the rationale and name of a restored answer)."""
        if not self.aliases:
            return text
        reverse = {alias: real for real, alias in self.aliases.items()}
        regex = _alias_regex(tuple(reverse))
        return regex.sub(lambda m: reverse[m.group(0)], text)

    # ------------------------------------------------------------------------ contexts

    def _signal(self, s: Signal) -> Signal:
        priced = any(k in PRICE_FEATURES for k in s.detail)
        detail: dict[str, float | str | None] = {}
        for key, value in s.detail.items():
            if isinstance(value, str):
                continue  # free text in a detail could name anything
            rebase = key in PRICE_FEATURES or (
                key in _THRESHOLD_BOUNDS and s.kind == "threshold" and priced
            )
            if rebase:
                detail[key] = None if value is None else self.rebase_float(s.symbol, value)
            elif key in UNITLESS_FEATURES or key in _THRESHOLD_BOUNDS:
                detail[key] = value
            # anything else is dropped: an unknown number may be a price
        return s.model_copy(
            update={
                "symbol": self.alias(s.symbol),
                "ts_ms": self.relative_ms(s.ts_ms),
                "trigger": self.scrub_text(s.trigger) or "trigger",
                "detail": detail,
            }
        )

    def _features(self, fv: FeatureVector) -> FeatureVector:
        values: dict[str, float | None] = {}
        for key, value in fv.values.items():
            if key in PRICE_FEATURES:
                values[key] = None if value is None else self.rebase_float(fv.symbol, value)
            elif key in UNITLESS_FEATURES:
                values[key] = value
            # an unknown feature is dropped: it may be a price
        return FeatureVector(
            symbol=self.alias(fv.symbol),
            ts_ms=self.relative_ms(fv.ts_ms),
            close=self.rebase_float(fv.symbol, fv.close),
            values=values,
        )

    def _position(self, symbol: str, p: PositionInfo) -> PositionInfo:
        return PositionInfo(
            quantity=self.scale_quantity(symbol, p.quantity),
            avg_cost=self.rebase_price(symbol, p.avg_cost),
            mark_price=None if p.mark_price is None else self.rebase_price(symbol, p.mark_price),
        )

    def _digest(self, items: Iterable[DigestItem]) -> tuple[DigestItem, ...]:
        if self.drop_digest:
            return ()
        out: list[DigestItem] = []
        for n, item in enumerate(sorted(items, key=lambda i: (-i.ts_ms, i.kind, i.id)), 1):
            text = self.scrub_text(item.text, MAX_STORED_TEXT)
            if not text:
                continue
            out.append(
                DigestItem(
                    kind=item.kind,
                    id=f"item-{n}",  # a feed's id can carry a date or a name
                    ts_ms=self.relative_ms(item.ts_ms),
                    symbols=tuple(self.alias(s) for s in item.symbols),
                    text=text,
                    source=self.scrub_text(item.source, MAX_SOURCE_CHARS),
                )
            )
        return tuple(out)

    def anonymize_context(self, ctx: PromptContext) -> PromptContext:
        """The same context in anonymised terms (`anonymized=True`, decision at time 0).
        Money (cash, equity, limits, PnL) is unchanged: notionals are preserved."""
        strategy = None
        if ctx.strategy is not None:
            spec = self.anonymize_spec(ctx.strategy.spec)
            strategy = CurrentStrategy(strategy_id="S-" + spec.fingerprint()[:16], spec=spec)
        return PromptContext(
            now_ms=self.relative_ms(ctx.now_ms),
            symbol=self.alias(ctx.symbol),
            branch=ctx.branch,
            signals=tuple(self._signal(s) for s in ctx.signals),
            features=self._features(ctx.features),
            positions={
                self.alias(sym): self._position(sym, p) for sym, p in sorted(ctx.positions.items())
            },
            cash=ctx.cash,
            equity=ctx.equity,
            limits=ctx.limits,
            performance=ctx.performance,
            strategy=strategy,
            digest=self._digest(ctx.digest),
            anonymized=True,
        )

    # ----------------------------------------------------------------- strategies, answers

    def _price_scale(
        self, universe: Sequence[str], convert: Callable[[str, Decimal], Decimal]
    ) -> Callable[[float], float] | str:
        """The converter for price levels of a strategy on `universe` (real symbols), or why
        there is none: one number means one level only if every symbol has the same factor."""
        refs = {self.references.get(s) for s in universe}
        if None in refs:
            missing = [self.aliases.get(s, "?") for s in universe if s not in self.references]
            return f"no reference price for {', '.join(missing)}"
        if len(refs) != 1:
            return (
                "price levels differ per asset after rebasing, so one number cannot stand for "
                f"all of {', '.join(self.aliases.get(s, '?') for s in universe)}; compare price "
                "features with each other (e.g. close > sma_slow) or use one asset per strategy"
            )
        anchor = universe[0]
        return lambda x: float(convert(anchor, _to_decimal(x)))

    def _map_spec(
        self,
        spec: StrategySpec,
        symbol: Callable[[str, str], str],
        universe_real: Sequence[str],
        convert: Callable[[str, Decimal], Decimal],
        text: Callable[[str, int], str],
        path: str,
    ) -> tuple[StrategySpec, list[str]]:
        reasons: list[str] = []
        scale = self._price_scale(universe_real, convert)

        def comparison(cmp: Comparison, where: str) -> Comparison:
            left, right = cmp.left, cmp.right
            if isinstance(left, str) == isinstance(right, str):
                return cmp  # feature vs feature (same unit) or number vs number
            feature, side = (left, "right") if isinstance(left, str) else (right, "left")
            number = right if side == "right" else left
            assert not isinstance(number, str)
            if feature in UNITLESS_FEATURES:
                return cmp
            if feature not in PRICE_FEATURES:
                reasons.append(f"{where}: {feature!r} is neither a price nor unitless")
                return cmp
            if isinstance(scale, str):
                reasons.append(f"{where}: price level {number:g} on {feature}: {scale}")
                return cmp
            return cmp.model_copy(update={side: float(_round(_to_decimal(scale(number))))})

        def node(cond: ConditionNode, where: str) -> ConditionNode:
            if isinstance(cond, Comparison):
                return comparison(cond, where)
            kids = [node(c, f"{where}.conditions[{i}]") for i, c in enumerate(cond.conditions)]
            return cond.model_copy(update={"conditions": kids})

        try:
            mapped_universe = [
                symbol(s, f"{path}.universe[{i}]") for i, s in enumerate(spec.universe)
            ]
            weights = [
                w.model_copy(update={"symbol": symbol(w.symbol, f"{path}.target_weights[{i}]")})
                for i, w in enumerate(spec.target_weights)
            ]
        except _Untranslatable as err:
            return spec, [err.reason]
        updated = spec.model_copy(
            update={
                "name": text(spec.name, MAX_NAME_LEN) or "strategy",
                "rationale": text(spec.rationale, MAX_SPEC_RATIONALE),
                "universe": mapped_universe,
                "target_weights": weights,
                "entry": node(spec.entry, f"{path}.entry"),
                "exit": node(spec.exit, f"{path}.exit"),
            }
        )
        return updated, reasons

    def _forward_symbol(self, real: str, where: str) -> str:
        if real not in self.aliases:
            raise _Untranslatable(f"{where}: symbol {real!r} has no anonymous id")
        return self.aliases[real]

    def _forward_text(self, text: str, limit: int) -> str:
        return self.scrub_text(text, limit)

    def anonymize_spec(self, spec: StrategySpec) -> StrategySpec:
        """A real strategy in anonymised terms (e.g. the current one, shown in the context).
        Raises `AnonymizationError` when a symbol has no id or a price level has no single
        rebased value (see `restore_decision`)."""
        mapped, reasons = self._map_spec(
            spec,
            self._forward_symbol,
            spec.universe,
            self.rebase_price,
            self._forward_text,
            "strategy",
        )
        if reasons:
            raise AnonymizationError("; ".join(reasons))
        return _revalidate(mapped)

    def anonymize_decision(self, decision: GptDecision) -> GptDecision:
        """A real decision in anonymised terms (e.g. an earlier answer fed back to the model)."""
        strategy = None if decision.strategy is None else self.anonymize_spec(decision.strategy)
        return _revalidate(
            decision.model_copy(
                update={
                    "strategy": strategy,
                    "rationale": self.scrub_text(decision.rationale, MAX_DECISION_RATIONALE),
                }
            )
        )

    def _restore_text(self, text: str, limit: int) -> str:
        restored = self.restore_text(text)
        return restored if len(restored) <= limit else text  # never cut what the model said

    def restore_decision(self, decision: GptDecision) -> GptDecision | Rejection:
        """GPT's anonymised answer in real terms: ids -> symbols, price levels -> real prices,
        ids in the name and rationale -> symbols. A `Rejection` (one reason per problem, for
        the adjust loop) when an id is unknown (e.g. the model used a real ticker), a price
        level has no single real value, or the translated answer breaks a bound."""
        rationale = self._restore_text(decision.rationale, MAX_DECISION_RATIONALE)
        if decision.strategy is None:
            return decision.model_copy(update={"rationale": rationale})
        spec = decision.strategy

        def back(alias: str, where: str) -> str:
            real = self.real(alias)
            if real is None:
                raise _Untranslatable(
                    f"{where}: unknown asset id {alias!r}; use the ids of the context "
                    f"({', '.join(self.aliases.values())})"
                )
            return real

        reasons: list[str] = []
        universe_real: list[str] = []
        for i, alias in enumerate(spec.universe):
            try:
                universe_real.append(back(alias, f"strategy.universe[{i}]"))
            except _Untranslatable as err:
                reasons.append(err.reason)
        for i, w in enumerate(spec.target_weights):
            if self.real(w.symbol) is None:
                reasons.append(
                    f"strategy.target_weights[{i}].symbol: unknown asset id {w.symbol!r}"
                )
        if reasons:
            return Rejection(reasons)
        mapped, reasons = self._map_spec(
            spec, back, universe_real, self.restore_price, self._restore_text, "strategy"
        )
        if reasons:
            return Rejection(reasons)
        restored = decision.model_copy(update={"strategy": mapped, "rationale": rationale})
        try:
            return GptDecision.model_validate(restored.model_dump())
        except ValidationError as err:
            # The reasons go back to the model: no real value may appear in them.
            return Rejection([_GOT.sub("", r) for r in validation_reasons(err)])


_GOT: Final = re.compile(r" \(got .*\)$")
_M = TypeVar("_M", StrategySpec, GptDecision)


def _revalidate(model: _M) -> _M:
    """`model_copy(update=...)` does not validate; the result must still be a valid model."""
    try:
        return type(model).model_validate(model.model_dump())
    except ValidationError as err:
        raise AnonymizationError("; ".join(validation_reasons(err))) from None


# ---------------------------------------------------------------------------- building


def _symbols_in(ctx: PromptContext) -> list[str]:
    """Every symbol of the context, in order of first appearance (positions sorted, digest
    newest first), so equal contexts give equal ids."""
    seen: list[str] = [ctx.symbol, ctx.features.symbol]
    seen += [s.symbol for s in ctx.signals]
    seen += sorted(ctx.positions)
    if ctx.strategy is not None:
        seen += ctx.strategy.spec.universe
        seen += [w.symbol for w in ctx.strategy.spec.target_weights]
    for item in sorted(ctx.digest, key=lambda i: (-i.ts_ms, i.kind, i.id)):
        seen += item.symbols
    return seen


def _keyed_alias(key: bytes, symbol: str) -> str:
    digest = hmac.new(key, symbol.encode("utf-8"), hashlib.sha256).hexdigest()
    return ALIAS_PREFIX + digest[:_KEYED_HEX].upper()


def _positive(value: Decimal) -> bool:
    try:
        return value.is_finite() and value > 0
    except InvalidOperation:  # pragma: no cover - signalling NaN
        return False


def build_map(
    ctx: PromptContext,
    *,
    names: Mapping[str, Sequence[str]] | None = None,
    reference_prices: Mapping[str, Decimal] | None = None,
    known_symbols: Sequence[str] = (),
    key: bytes | None = None,
    base: Decimal = Decimal(100),
    strip_numbers: bool = True,
    drop_digest: bool = False,
) -> AnonymizationMap:
    """The map for one context.

    Ids: `ASSET-1`, `ASSET-2`, ... in order of first appearance (`known_symbols` first, e.g.
    the configured symbols, which keeps ids stable across a backtest), then the context, then
    the keys of `names`; with a `key`, `ASSET-` + 10 hex digits of HMAC-SHA256(key, symbol),
    stable across contexts. References: `reference_prices`, else the decision close for the
    decision symbol and the mark price (else average cost) of each holding. `names` maps a
    symbol to the company and product names replaced in text (e.g. {"GOOG": ["Google"]})."""
    if not _positive(base):
        raise AnonymizationError("base must be a finite number > 0")
    ordered: list[str] = []
    for sym in [*known_symbols, *_symbols_in(ctx), *sorted(names or {})]:
        if sym not in ordered:
            ordered.append(sym)
    if key is None:
        aliases = {sym: f"{ALIAS_PREFIX}{i}" for i, sym in enumerate(ordered, 1)}
    else:
        aliases = {sym: _keyed_alias(key, sym) for sym in ordered}
        if len(set(aliases.values())) != len(aliases):
            raise AnonymizationError("keyed ids collide; use another key")
    refs: dict[str, Decimal] = {}
    close = _to_decimal(ctx.features.close)
    if _positive(close):
        refs[ctx.symbol] = close
    for sym, pos in sorted(ctx.positions.items()):
        price = pos.mark_price if pos.mark_price is not None else pos.avg_cost
        if sym not in refs and _positive(price):
            refs[sym] = price
    for sym, price in (reference_prices or {}).items():
        if not _positive(price):
            raise AnonymizationError(f"reference price of {sym!r} must be a finite number > 0")
        refs[sym] = price
    if ctx.symbol not in refs:
        raise AnonymizationError(f"no reference price for the decision symbol {ctx.symbol!r}")
    return AnonymizationMap(
        aliases=aliases,
        references=refs,
        base=base,
        now_ms=ctx.now_ms,
        names={sym: tuple(n) for sym, n in sorted((names or {}).items())},
        strip_numbers=strip_numbers,
        drop_digest=drop_digest,
    )


def anonymize(
    ctx: PromptContext,
    *,
    names: Mapping[str, Sequence[str]] | None = None,
    reference_prices: Mapping[str, Decimal] | None = None,
    known_symbols: Sequence[str] = (),
    key: bytes | None = None,
    base: Decimal = Decimal(100),
    strip_numbers: bool = True,
    drop_digest: bool = False,
) -> tuple[PromptContext, AnonymizationMap]:
    """`build_map` then `anonymize_context`: the context to prompt with, and the map that
    translates the answer back (`restore_decision`)."""
    mapping = build_map(
        ctx,
        names=names,
        reference_prices=reference_prices,
        known_symbols=known_symbols,
        key=key,
        base=base,
        strip_numbers=strip_numbers,
        drop_digest=drop_digest,
    )
    return mapping.anonymize_context(ctx), mapping
