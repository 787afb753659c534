"""`stratflow exchange`: the Binance-compatible exchange emulator on 127.0.0.1, run by hand.

The tests start `connectors.sim.exchange_emulator.ExchangeEmulator` themselves; this command is for
trying the executor, a ccxt script or a notebook against an exchange that really trades (book,
fills, fees, locked funds) without an account, a network or money. It prints the base URL and a
freshly generated API key and secret (test keys, valid for this run only), moves the prices by a
seeded random walk so the book and the bars change, and runs until Ctrl-C.
"""

from __future__ import annotations

import signal
from decimal import Decimal
from typing import Annotated

import typer

DEFAULT_SYMBOLS = "BTC/USDT,ETH/USDT"
QUOTE_DEPOSIT = Decimal(100_000)
BASE_DEPOSIT_VALUE = Decimal(10_000)


def parse_symbols(text: str) -> list[str]:
    """`"BTC/USDT, eth/usdt"` -> `["BTC/USDT", "ETH/USDT"]`; ValueError (one line) otherwise."""
    from models.sim.matching import MarketSpec

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("--symbols is empty; give markets like BTC/USDT,ETH/USDT")
    pairs: list[str] = []
    for name in names:
        try:
            pair = MarketSpec.from_pair(name).pair
        except ValueError:
            raise ValueError(
                f"--symbols: {name!r} is not a market; write BASE/QUOTE, e.g. BTC/USDT"
            ) from None
        if pair in pairs:
            raise ValueError(f"--symbols: {pair} given twice")
        pairs.append(pair)
    return pairs


def exchange(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 = a free one)")
    ] = 0,
    symbols: Annotated[
        str, typer.Option(help="Comma-separated markets, BASE/QUOTE")
    ] = DEFAULT_SYMBOLS,
    seed: Annotated[int, typer.Option(help="Seed of the generated price walk")] = 7,
) -> None:
    """Run a Binance-compatible spot exchange emulator for ccxt on 127.0.0.1, until Ctrl-C."""
    from api.cli import UserError, console, guarded
    from connectors.sim.exchange_emulator import (
        ExchangeEmulator,
        ExchangeEmulatorError,
        default_price,
        market_for,
    )

    def go() -> None:
        try:
            pairs = parse_symbols(symbols)
        except ValueError as err:
            raise UserError(str(err)) from None
        markets = [market_for(p, default_price(p)) for p in pairs]
        balances: dict[str, Decimal] = {}
        for spec in markets:
            balances[spec.quote] = QUOTE_DEPOSIT
            qty = BASE_DEPOSIT_VALUE / default_price(spec.pair) / spec.step_size
            balances[spec.base] = qty.to_integral_value() * spec.step_size
        emulator = ExchangeEmulator(markets, balances=balances, port=port or None)
        # Block the signals before any thread starts, so every thread inherits the mask and
        # Ctrl-C reaches the sigwait below instead of interrupting a request handler.
        signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            try:
                emulator.start()
            except ExchangeEmulatorError as err:
                raise UserError(str(err)) from None
            emulator.start_price_walk(seed)
            try:
                console.out(f"EXCHANGE_URL={emulator.base_url}", highlight=False)
                console.out(f"EXCHANGE_API_KEY={emulator.api_key}", highlight=False)
                console.out(f"EXCHANGE_API_SECRET={emulator.secret}", highlight=False)
                listed = ", ".join(f"{s.pair} {default_price(s.pair)}" for s in markets)
                held = ", ".join(f"{v} {k}" for k, v in sorted(balances.items()))
                console.out(f"markets: {listed} (random walk, seed {seed})", highlight=False)
                console.out(f"account: {held}", highlight=False)
                console.out(
                    "ccxt: ccxt.binance(connectors.sim.exchange_emulator.ccxt_config("
                    "EXCHANGE_URL, EXCHANGE_API_KEY, EXCHANGE_API_SECRET))",
                    highlight=False,
                )
                console.out("exchange emulator ready (Ctrl-C stops it)", highlight=False)
                signal.sigwait(signals)
            finally:
                emulator.stop()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        console.out("exchange emulator stopped", highlight=False)

    guarded(go)
