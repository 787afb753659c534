"""The control API's pure pieces (api/server): the token and who may serve without one, the
confirmation nonces, listen addresses, page cursors, and settings shown and changed (secrets
never shown, only changeable keys, every problem named with its key)."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.server.auth import (
    FORBIDDEN,
    NOT_AUTHENTICATED,
    ApiToken,
    AuthSetupError,
    BearerGate,
    check_exposure,
    is_loopback,
    load_token,
)
from api.server.common import decode_cursor, encode_cursor
from api.server.nonce import NonceBook
from api.server.serve import ListenError, parse_listen
from api.server.settings_edit import SettingsRefused, key_path, propose, redacted
from models.config.settings import Settings

TOKEN = "s3cr3t-token-0123456789"


def test_the_token_comes_from_the_environment_or_its_file(tmp_path: Path) -> None:
    assert load_token({}) is None
    token = load_token({"STRATFLOW_API_TOKEN": TOKEN})
    assert token is not None and token.matches(TOKEN) and not token.matches(TOKEN + "x")
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    from_file = load_token({"STRATFLOW_API_TOKEN_FILE": str(path)})
    assert from_file is not None and from_file.matches(TOKEN)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STRATFLOW_API_TOKEN": "short"}, "at least 16"),
        ({"STRATFLOW_API_TOKEN": "two words but long enough"}, "one word"),
        ({"STRATFLOW_API_TOKEN": TOKEN, "STRATFLOW_API_TOKEN_FILE": "/x"}, "not both"),
        ({"STRATFLOW_API_TOKEN_FILE": "/nonexistent/token"}, "No such file"),
    ],
)
def test_a_bad_token_is_one_line_that_never_shows_it(env: dict[str, str], says: str) -> None:
    with pytest.raises(AuthSetupError, match=says) as err:
        load_token(env)
    assert env.get("STRATFLOW_API_TOKEN", "\0") not in str(err.value)


def test_the_token_is_never_shown_nor_pickled() -> None:
    token = ApiToken(TOKEN)
    assert TOKEN not in repr(token) and TOKEN not in str(token) and TOKEN not in f"{token}"
    with pytest.raises(TypeError):
        pickle.dumps(token)


@pytest.mark.parametrize(
    ("host", "token", "no_auth", "refused"),
    [
        ("127.0.0.1", None, False, "needs a token"),
        ("0.0.0.0", None, False, "needs a token"),
        ("0.0.0.0", None, True, "loopback address only"),
        ("192.168.1.5", None, True, "loopback address only"),
        ("127.0.0.1", ApiToken(TOKEN), True, "leave out one"),
        ("127.0.0.1", None, True, ""),
        ("::1", None, True, ""),
        ("localhost", None, True, ""),
        ("0.0.0.0", ApiToken(TOKEN), False, ""),
    ],
)
def test_only_a_loopback_address_is_served_without_a_token(
    host: str, token: ApiToken | None, no_auth: bool, refused: str
) -> None:
    if refused:
        with pytest.raises(AuthSetupError, match=refused):
            check_exposure(host, token, no_auth)
    else:
        check_exposure(host, token, no_auth)
    assert is_loopback("127.0.0.2") and not is_loopback("example.com")


def test_the_gate_says_401_without_a_bearer_token_and_403_with_a_wrong_one() -> None:
    gate = BearerGate(app=None, token=ApiToken(TOKEN))  # type: ignore[arg-type]
    assert gate.refusal("") == (401, NOT_AUTHENTICATED)
    assert gate.refusal(f"Basic {TOKEN}") == (401, NOT_AUTHENTICATED)
    assert gate.refusal("Bearer ") == (401, NOT_AUTHENTICATED)
    assert gate.refusal("Bearer nope") == (403, FORBIDDEN)
    assert gate.refusal(f"bearer {TOKEN}") is None
    assert BearerGate(app=None, token=None).refusal("") is None  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000

    def __call__(self) -> int:
        return self.ms


def test_a_nonce_confirms_its_action_once_before_it_expires() -> None:
    clock = Clock()
    book = NonceBook(clock, ttl_ms=60_000)
    a, b, c = book.issue("halt"), book.issue("halt"), book.issue("halt")
    assert len({a.nonce, b.nonce, c.nonce}) == 3 and a.expires_ms == 61_000
    assert book.redeem(a.nonce, "halt")
    assert not book.redeem(a.nonce, "halt")  # once
    assert not book.redeem(b.nonce, "mode:live")  # another action: refused, and spent
    assert not book.redeem(b.nonce, "halt")
    clock.ms = 61_000
    assert not book.redeem(c.nonce, "halt")  # expired
    assert not book.redeem("made-up", "halt")


def test_the_nonce_book_keeps_at_most_max_open() -> None:
    book = NonceBook(Clock(), max_open=2)
    first = book.issue("halt")
    book.issue("halt")
    book.issue("halt")
    assert not book.redeem(first.nonce, "halt")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)), ("h:65535", ("h", 65535))],
)
def test_listen_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["8080", ":8080", "host:", "host:http", "host:70000", ""])
def test_a_bad_listen_address_is_one_line(text: str) -> None:
    with pytest.raises(ListenError, match="HOST:PORT"):
        parse_listen(text)


@given(st.integers(min_value=-(2**61), max_value=2**61), st.text(max_size=80))
def test_a_cursor_gives_back_its_place(ts_ms: int, key: str) -> None:
    assert decode_cursor(encode_cursor(ts_ms, key)) == (ts_ms, key)


@pytest.mark.parametrize("cursor", ["x", "e30", "WzEsMl0", "WyJhIiwiYiJd", "!!!", "W3RydWUsImEiXQ"])
def test_anything_but_a_cursor_is_a_422(cursor: str) -> None:
    from fastapi import HTTPException

    with pytest.raises(HTTPException) as err:
        decode_cursor(cursor)
    assert err.value.status_code == 422


SECRET = "hunter2-password"


def _settings() -> Settings:
    return Settings.model_validate(
        {
            "symbols": {"ABC": {}, "BRK.B": {}},
            "clickhouse": {"url": f"http://user:{SECRET}@db.example:8123/"},
            "notify": {"urls": [f"jsons://ops:{SECRET}@hooks.example/x"]},
        }
    )


def test_shown_settings_hold_no_secret() -> None:
    doc = redacted(_settings())
    assert SECRET not in repr(doc)
    assert doc["clickhouse"]["url"].startswith("http://user:***@db.example")
    assert doc["risk"]["max_order_notional"] == "25000"


def test_a_change_gives_its_diff_and_the_values_the_command_carries() -> None:
    p = propose(
        _settings(),
        {"risk.max_order_notional": 30000, "gpt.model": "gpt-x", "symbols.BRK.B.lot_size": "5"},
    )
    assert p.settings.risk.max_order_notional == Decimal(30000)
    assert p.settings.symbols["BRK.B"].lot_size == Decimal(5)
    assert p.diff[0] == {"key": "risk.max_order_notional", "before": "25000", "after": "30000"}
    assert p.values == {
        "risk.max_order_notional": "30000",
        "gpt.model": "gpt-x",
        "symbols.BRK.B.lot_size": "5",
    }
    # The secrets the settings hold survive a change (they are carried, never shown).
    assert p.settings.clickhouse.url == _settings().clickhouse.url


@pytest.mark.parametrize(
    ("values", "key", "says"),
    [
        ({"risk.max_order_notional": -1}, "risk.max_order_notional", "greater than 0"),
        ({"risk.max_order_notionl": 1}, "risk.max_order_notionl", "Extra inputs"),
        ({"bars.interval": "5m"}, "bars.interval", "not changeable"),
        ({"clickhouse.url": "http://x"}, "clickhouse.url", "a secret"),
        ({"notify.urls": ["jsons://h/p"]}, "notify.urls", "a secret"),
        ({"strategy.target_fraction": 2}, "strategy.target_fraction", "less than or equal"),
        ({"symbols.abc": {}}, "symbols.abc", "not changeable"),
        ({"risk.max_order_notional": 25000}, "", "changes nothing"),
    ],
)
def test_a_refused_change_names_its_key_and_reason(
    values: dict[str, object], key: str, says: str
) -> None:
    with pytest.raises(SettingsRefused) as err:
        propose(_settings(), values)
    (problem,) = err.value.problems
    assert problem[0] == key and says in problem[1]
    assert SECRET not in str(err.value)


def test_symbol_keys_may_hold_dots() -> None:
    assert key_path("symbols.BRK.B") == ["symbols", "BRK.B"]
    assert key_path("symbols.BRK.B.lot_size") == ["symbols", "BRK.B", "lot_size"]
    assert key_path("risk.min_cash") == ["risk", "min_cash"]
