"""Exchange credentials come from the environment or a private file, and never show a value."""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from connectors.exchange.secrets import (
    MASK,
    ExchangeCredentials,
    Secret,
    SecretsError,
    credential_names,
    load_credentials,
    read_secrets_file,
    redact,
)

KEY = "ak-1Fq8Zr0Lw"
SECRET = "sk-9Vb7Hn2Mx#=x"  # '#' and '=' must survive a dotenv file
PASSWORD = "pp-4Tg6Yc"
OTHER = "ak-generic-5Jd"


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def assert_no_value(text: str) -> None:
    for value in (KEY, SECRET, PASSWORD, OTHER):
        assert value not in text, text


# ---------------------------------------------------------------------------- environment


def test_per_exchange_variables_win_over_the_generic_ones() -> None:
    env = {
        "STRATFLOW_BINANCE_API_KEY": KEY,
        "STRATFLOW_BINANCE_SECRET": f"  {SECRET}\n",  # surrounding whitespace is not the key
        "STRATFLOW_BINANCE_PASSWORD": PASSWORD,
        "STRATFLOW_EXCHANGE_API_KEY": OTHER,
        "STRATFLOW_EXCHANGE_SECRET": OTHER,
    }
    creds = load_credentials("binance", env)
    assert creds.api_key.reveal() == KEY
    assert creds.secret.reveal() == SECRET
    assert creds.password is not None and creds.password.reveal() == PASSWORD


def test_generic_variables_serve_any_exchange() -> None:
    env = {"STRATFLOW_EXCHANGE_API_KEY": OTHER, "STRATFLOW_EXCHANGE_SECRET": SECRET}
    creds = load_credentials("coinbase-pro", env)
    assert (creds.api_key.reveal(), creds.secret.reveal(), creds.password) == (OTHER, SECRET, None)
    assert credential_names("coinbase-pro")[0][0] == "STRATFLOW_COINBASE_PRO_API_KEY"


def test_missing_variables_are_named_without_values() -> None:
    with pytest.raises(SecretsError) as nothing:
        load_credentials("kraken", {"STRATFLOW_BINANCE_API_KEY": KEY})
    message = str(nothing.value)
    assert "STRATFLOW_KRAKEN_API_KEY and STRATFLOW_KRAKEN_SECRET" in message
    assert "STRATFLOW_EXCHANGE_API_KEY and STRATFLOW_EXCHANGE_SECRET" in message
    assert "STRATFLOW_SECRETS_FILE" in message

    # half a pair is an error, not a reason to borrow the generic secret
    env = {"STRATFLOW_KRAKEN_API_KEY": KEY, "STRATFLOW_EXCHANGE_SECRET": OTHER}
    with pytest.raises(SecretsError) as half:
        load_credentials("kraken", env)
    assert str(half.value).startswith("STRATFLOW_KRAKEN_SECRET is not set")
    assert "STRATFLOW_KRAKEN_API_KEY is, in the environment" in str(half.value)
    assert_no_value(str(nothing.value) + str(half.value))


def test_an_empty_variable_counts_as_missing() -> None:
    env = {"STRATFLOW_BINANCE_API_KEY": KEY, "STRATFLOW_BINANCE_SECRET": "  "}
    with pytest.raises(SecretsError, match=r"^STRATFLOW_BINANCE_SECRET is not set"):
        load_credentials("binance", env)


def test_a_bad_exchange_name_is_refused() -> None:
    with pytest.raises(SecretsError, match="not an exchange name"):
        load_credentials("../binance", {})


# ---------------------------------------------------------------------------- secrets file


def test_yaml_file_keeps_values_as_written(tmp_path: Path) -> None:
    path = private_file(
        tmp_path / "secrets.yaml",
        f"STRATFLOW_BINANCE_API_KEY: '{KEY}'\n"
        f"STRATFLOW_BINANCE_SECRET: 0123\n"  # YAML 1.1 would read an octal int
        f"STRATFLOW_BINANCE_PASSWORD: yes\n"  # ... and a bool
        f"OPENAI_API_KEY: {OTHER}\n",
    )
    creds = load_credentials("binance", {"STRATFLOW_SECRETS_FILE": str(path)})
    assert creds.api_key.reveal() == KEY
    assert creds.secret.reveal() == "0123"
    assert creds.password is not None and creds.password.reveal() == "yes"


def test_dotenv_file_and_environment_precedence(tmp_path: Path) -> None:
    path = private_file(
        tmp_path / "exchange.env",
        "# exchange keys\n\n"
        f"export STRATFLOW_EXCHANGE_API_KEY={KEY}\n"
        f'STRATFLOW_EXCHANGE_SECRET="{SECRET}"\n'
        f"STRATFLOW_EXCHANGE_PASSWORD = '{PASSWORD}'\n",
    )
    creds = load_credentials("binance", {}, file=path)
    assert creds.api_key.reveal() == KEY
    assert creds.secret.reveal() == SECRET
    assert creds.password is not None and creds.password.reveal() == PASSWORD
    # the environment overrides the file, name by name
    env = {"STRATFLOW_EXCHANGE_API_KEY": OTHER, "STRATFLOW_SECRETS_FILE": str(path)}
    assert load_credentials("binance", env).api_key.reveal() == OTHER


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = private_file(
        tmp_path / "secrets.env",
        f"STRATFLOW_EXCHANGE_API_KEY={KEY}\nSTRATFLOW_EXCHANGE_SECRET={SECRET}\n",
        mode,
    )
    env = {"STRATFLOW_SECRETS_FILE": str(path), "STRATFLOW_EXCHANGE_API_KEY": OTHER}
    with pytest.raises(SecretsError) as refused:
        load_credentials("binance", env)  # refused even though the environment has a key
    message = str(refused.value)
    assert f"chmod 600 {path}" in message
    assert f"mode {mode:04o}" in message
    assert_no_value(message)
    path.chmod(0o600)
    assert load_credentials("binance", env).secret.reveal() == SECRET


def test_file_problems_never_quote_the_file(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="secrets file not found"):
        read_secrets_file(tmp_path / "absent.env")
    bad_line = private_file(tmp_path / "bad.env", f"STRATFLOW_EXCHANGE_SECRET={SECRET}\n{KEY}\n")
    with pytest.raises(SecretsError, match="line 2 is not KEY=value") as line_err:
        read_secrets_file(bad_line)
    bad_yaml = private_file(tmp_path / "bad.yaml", f"STRATFLOW_EXCHANGE_SECRET: '{SECRET}\n")
    with pytest.raises(SecretsError, match="not valid YAML") as yaml_err:
        read_secrets_file(bad_yaml)
    nested = private_file(tmp_path / "nested.yml", f"STRATFLOW_EXCHANGE_SECRET: [{SECRET}]\n")
    with pytest.raises(SecretsError, match="must be a plain string") as nested_err:
        read_secrets_file(nested)
    assert_no_value(str(line_err.value) + str(yaml_err.value) + str(nested_err.value))


# ---------------------------------------------------------------------------- never shown


class _Holder(BaseModel):
    exchange: str
    credentials: ExchangeCredentials


def test_credentials_never_show_a_value() -> None:
    creds = ExchangeCredentials(api_key=KEY, secret=SECRET, password=PASSWORD)
    holder = _Holder(exchange="binance", credentials=creds)
    shown = [
        repr(creds),
        str(creds),
        f"{creds}",
        f"{creds!r}",
        f"{creds.secret}|{creds.secret!s}|{creds.secret!r}|{creds.secret:>30}",
        "%s %r" % (creds.api_key, creds.api_key),  # noqa: UP031 - the logging idiom
        creds.model_dump_json(),
        json.dumps(creds.model_dump(mode="json")),
        json.dumps(creds.model_dump(), default=str),
        repr(holder),
        holder.model_dump_json(),
        str(vars(creds)),
    ]
    for text in shown:
        assert_no_value(text)
    assert MASK in creds.model_dump_json()
    for target in (creds, creds.secret, holder):
        with pytest.raises(TypeError, match="not pickled") as refused:
            pickle.dumps(target)
        assert_no_value(str(refused.value))
    assert copy.deepcopy(holder) == holder  # copying still works: same immutable secrets
    assert creds.secret.reveal() == SECRET


def test_invalid_credentials_do_not_echo_the_input() -> None:
    with pytest.raises(ValidationError) as empty:
        ExchangeCredentials(api_key="", secret=SECRET)
    with pytest.raises(ValidationError) as wrong_type:
        ExchangeCredentials.model_validate({"api_key": KEY.encode(), "secret": SECRET})
    assert "must not be empty" in str(empty.value)
    assert "must be a string" in str(wrong_type.value)
    assert_no_value(str(empty.value) + str(wrong_type.value))


def test_secret_equality_and_truth() -> None:
    assert Secret(KEY) == Secret(KEY) and Secret(KEY) != Secret(OTHER)
    assert Secret(KEY) != KEY  # never equal to the plain text
    assert (
        not Secret("")
        and ExchangeCredentials(api_key=KEY, secret=SECRET, password="").password is None
    )


def test_redact_scrubs_plain_and_url_encoded_values() -> None:
    creds = ExchangeCredentials(api_key=KEY, secret=SECRET)
    line = f"GET /api?key={KEY}&sig={SECRET.replace('#', '%23').replace('=', '%3D')} {SECRET}"
    scrubbed = redact(line, *creds.secrets(), None, "")
    assert_no_value(scrubbed)
    assert scrubbed == f"GET /api?key={MASK}&sig={MASK} {MASK}"
    assert redact("nothing to hide", Secret(KEY)) == "nothing to hide"
