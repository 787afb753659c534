"""`stratflow run --exchange NAME [--paper|--sandbox]`: the flow on an exchange through ccxt.

What starts around the flow:
- the market feed (`connectors/exchange/market_feed.py`): the exchange's trades -> the market topic,
  resumed from its state file without gaps or duplicates;
- the order gateway (`connectors/exchange/gateway.py` + `connectors/exchange/ccxt_executor.py`): the
  desk's orders -> the exchange, reports back; the desk reconciles its book with the exchange
  before its first order.
`--paper` serves the project's exchange emulator on 127.0.0.1 instead of the real exchange (a
Binance-compatible spot market with a real matching engine, fed by a seeded random walk), funded
with `execution.initial_cash` in the account currency: the whole live path, without an account
or money. Otherwise the exchange's keys come from the environment or the secrets file
(`connectors/exchange/secrets.py`) and are never printed; `--sandbox` uses the exchange's test
network
where ccxt knows one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.config.settings import Settings

__all__ = ["exchange_session"]


class ExchangeSetupError(ValueError):
    """A mistake in how the exchange run was asked for; phrased for the user, one line."""


def _pairs(settings: Settings) -> list[str]:
    bad = [s for s in settings.symbols if "/" not in s]
    if bad:
        raise ExchangeSetupError(
            "an exchange run needs BASE/QUOTE symbols in the config (e.g. BTC/USDT); "
            f"not: {', '.join(sorted(bad))}"
        )
    quotes = {s.split("/", 1)[1] for s in settings.symbols}
    if quotes != {settings.execution.currency}:
        raise ExchangeSetupError(
            f"execution.currency is {settings.execution.currency}, but the symbols are quoted "
            f"in {', '.join(sorted(quotes))}: the book keeps one cash currency"
        )
    return list(settings.symbols)


def lot_problems(client: Any, settings: Settings, pairs: list[str]) -> list[str]:
    """Configured lot sizes the exchange would refuse: every order is a multiple of the
    symbol's `lot_size`, so a lot off the exchange's amount step makes orders fail at the
    exchange; better one clear line before the first order."""
    import ccxt

    problems: list[str] = []
    markets = getattr(client, "markets", None) or {}
    for pair in pairs:
        market = markets.get(pair)
        if market is None:
            problems.append(f"{pair} is not a market on this exchange")
            continue
        raw = (market.get("precision") or {}).get("amount")
        if raw is None:
            continue
        if getattr(client, "precisionMode", None) == ccxt.TICK_SIZE:
            step = Decimal(str(raw))
        else:  # DECIMAL_PLACES / SIGNIFICANT_DIGITS: a number of decimals
            step = Decimal(1).scaleb(-int(raw))
        lot = settings.symbols[pair].lot_size
        if step > 0 and lot % step != 0:
            problems.append(
                f"symbols.{pair}.lot_size is {lot}, but the exchange's amount step is "
                f"{step.normalize():f}: set lot_size to a multiple of it"
            )
    return problems


def exchange_minimums(client: Any, pairs: list[str]) -> dict[str, Decimal]:
    """Each pair's smallest order value (ccxt's `limits.cost.min`, e.g. Binance's NOTIONAL
    filter), for the desk to leave out orders the exchange would refuse."""
    out: dict[str, Decimal] = {}
    markets = getattr(client, "markets", None) or {}
    for pair in pairs:
        raw = (((markets.get(pair) or {}).get("limits") or {}).get("cost") or {}).get("min")
        if raw is not None and raw > 0:
            out[pair] = Decimal(repr(float(raw)))
    return out


def _real_clients(name: str, sandbox: bool) -> tuple[Any, Any]:
    import ccxt

    from connectors.exchange.secrets import SecretsError, load_credentials

    cls = getattr(ccxt, name, None)
    if name not in ccxt.exchanges or cls is None:
        raise ExchangeSetupError(f"unknown exchange {name!r}; ccxt knows e.g. binance, kraken")
    try:
        creds = load_credentials(name)
    except SecretsError as err:
        raise ExchangeSetupError(str(err)) from None
    config: dict[str, Any] = {
        "apiKey": creds.api_key.reveal(),
        "secret": creds.secret.reveal(),
        "enableRateLimit": True,
    }
    if creds.password is not None:
        config["password"] = creds.password.reveal()
    clients = cls(config), cls(dict(config))
    if sandbox:
        for client in clients:
            try:
                client.set_sandbox_mode(True)
            except ccxt.NotSupported:
                raise ExchangeSetupError(f"{name} has no sandbox in ccxt") from None
    return clients


def order_kind(paper: bool, sandbox: bool) -> str:
    """What the orders of a run are, in the words its start and end lines use: only a real
    exchange's are "real orders"."""
    if paper:
        return "paper orders on the local emulator"
    if sandbox:
        return "sandbox (test network) orders"
    return "real orders"


@contextlib.contextmanager
def exchange_session(
    settings: Settings,
    *,
    name: str,
    paper: bool,
    sandbox: bool,
    bootstrap: str,
    state_dir: Path,
    say: Callable[[str], None],
    seed: int = 7,
    gate: Callable[[], str | None] | None = None,
) -> Iterator[Any]:
    """Start the feed and the order gateway (and, for `paper`, the emulator); yield the
    gateway for `run_pipeline(orders=...)`; stop everything on the way out.

    `gate` (the promotion check, `api.promotion_steps.live_refusal`) is asked before real
    orders can be placed: once the exchange and its keys are known good, before the account
    is read; a line it returns refuses the run."""
    from connectors.exchange.ccxt_executor import CcxtExecutor
    from connectors.exchange.gateway import ExecutionGateway
    from connectors.exchange.market_feed import MarketFeed
    from models.execution.stale_order import stale_rule

    pairs = _pairs(settings)
    with contextlib.ExitStack() as stack:
        if paper:
            from connectors.sim.exchange_emulator import ExchangeEmulator
            from models.sim.matching import EngineConfig

            if name != "binance":
                raise ExchangeSetupError(
                    "--paper emulates Binance's spot API; use --exchange binance --paper"
                )
            emulator = ExchangeEmulator(
                pairs,
                balances={settings.execution.currency: settings.execution.initial_cash},
                # As on Binance (without BNB): a buy pays its commission in the asset bought.
                config=EngineConfig(fee_in_received_asset=True),
            )
            stack.enter_context(emulator)
            emulator.start_price_walk(seed, interval_s=1.0)
            feed_client, order_client = emulator.client(), emulator.client()
            say(
                f"paper trading on the exchange emulator at {emulator.base_url} "
                f"({', '.join(pairs)}, {settings.execution.initial_cash} "
                f"{settings.execution.currency}, prices from a random walk, seed {seed}): "
                f"{order_kind(paper, sandbox)}, no account or money"
            )
        else:
            feed_client, order_client = _real_clients(name, sandbox)
            refusal = gate() if gate is not None and not sandbox else None
            if refusal:
                raise ExchangeSetupError(refusal)
            where = f"{name}'s test network" if sandbox else name
            say(f"trading on {where}: {order_kind(paper, sandbox)}")
        executor = CcxtExecutor(order_client, stale=stale_rule(settings))
        try:  # the desk reconciles against this at start: fail here, in one line, if it can't
            executor.state(pairs)
        except Exception as err:
            raise ExchangeSetupError(
                f"cannot read the account on {name}: {type(err).__name__}: {err}"[:300]
            ) from None
        for problem in lot_problems(order_client, settings, pairs):
            raise ExchangeSetupError(problem)
        state_dir.mkdir(parents=True, exist_ok=True)
        feed = MarketFeed(
            feed_client,
            pairs,
            topic=settings.kafka.topics.market,
            bootstrap=bootstrap,
            state_path=state_dir / f"feed-{name}{'-paper' if paper else ''}.json",
        )
        stack.callback(feed.close)
        stop = threading.Event()
        thread = threading.Thread(target=feed.run, args=(stop,), name="market-feed", daemon=True)
        thread.start()

        def stop_feed() -> None:
            stop.set()
            thread.join(10)

        stack.callback(stop_feed)
        gateway = ExecutionGateway(executor)
        gateway.min_notional = exchange_minimums(order_client, pairs)
        stack.callback(gateway.close)
        yield gateway
