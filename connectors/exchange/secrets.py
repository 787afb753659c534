"""Exchange API keys from the environment or a private file, held so they cannot leak by accident.

A live run needs an exchange API key and secret. They come from the environment (what
containers and CI inject) or from a secrets file (what a person on a server keeps); never from
`stratflow.yaml`, which is meant to be shared. The names, for an exchange called `binance`:

- `STRATFLOW_BINANCE_API_KEY`, `STRATFLOW_BINANCE_SECRET`, `STRATFLOW_BINANCE_PASSWORD`
  (per exchange; the password, or passphrase, only where the exchange has one), else
- `STRATFLOW_EXCHANGE_API_KEY`, `STRATFLOW_EXCHANGE_SECRET`, `STRATFLOW_EXCHANGE_PASSWORD`.

Each name is looked up in the environment first, then in the file named by
`STRATFLOW_SECRETS_FILE` (or passed in): YAML (`.yaml`, `.yml`, `.json`: a mapping of those
names to strings) or dotenv-style `KEY=value` lines (any other name). A file that group or
others can read or write is refused, with the `chmod 600` that fixes it: a key readable by
every account on the machine is not a secret.

The key and secret are taken as a pair with one prefix: a per-exchange key is never combined
with the generic secret. Values are `Secret`s: repr, str, format and JSON dumps show
`**********`, pickling refuses, and only `.reveal()` gives the text. Errors name the variable
and where it was looked for, never a value. `redact()` scrubs known secrets out of a log line.
"""

from __future__ import annotations

import hmac
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import quote

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "ENV_SECRETS_FILE",
    "GENERIC_PREFIX",
    "MASK",
    "ExchangeCredentials",
    "Secret",
    "SecretsError",
    "credential_names",
    "load_credentials",
    "read_secrets_file",
    "redact",
]

ENV_SECRETS_FILE: Final = "STRATFLOW_SECRETS_FILE"
GENERIC_PREFIX: Final = "STRATFLOW_EXCHANGE"
MASK: Final = "**********"
MAX_FILE_BYTES: Final = 1 << 20
"""A secrets file is a handful of lines; anything bigger is the wrong file."""

_YAML_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})
_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXCHANGE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SecretsError(RuntimeError):
    """Credentials missing or unusable. The message names variables and files, never a value."""


class Secret:
    """A string that does not show itself: repr `Secret('**********')`, str and format
    `**********`, JSON (pydantic) `"**********"`. `reveal()` returns the text.

    Pickling raises `TypeError` rather than write the value into a snapshot, a cache or a
    message to another process: load the credentials where they are used. Copies return the
    same object (it is immutable), so models holding a secret can still be copied."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The secret text: call it only where the value is handed to its one consumer."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(
            "a Secret is not pickled (it would write the value out); load the credentials "
            "where they are used"
        )

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(None)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _to_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda _: MASK, when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}


def _to_secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value.strip())
    raise ValueError("must be a string")


class ExchangeCredentials(BaseModel):
    """An exchange API key pair (and the passphrase some exchanges add). Built from strings or
    `Secret`s; holds `Secret`s. Never shows a value (errors included: inputs are hidden)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    api_key: Secret
    secret: Secret
    password: Secret | None = None

    @field_validator("api_key", "secret")
    @classmethod
    def _not_empty(cls, value: Secret) -> Secret:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("password")
    @classmethod
    def _empty_is_none(cls, value: Secret | None) -> Secret | None:
        return value or None

    def secrets(self) -> tuple[Secret, ...]:
        """Every value held, for `redact(line, *credentials.secrets())`."""
        return tuple(s for s in (self.api_key, self.secret, self.password) if s)


def redact(text: str, *secrets: Secret | str | None) -> str:
    """`text` with every occurrence of each secret (as is and percent-encoded, as it appears in
    URLs) replaced by `**********`; empty and None secrets are ignored."""
    values: set[str] = set()
    for item in secrets:
        value = item.reveal() if isinstance(item, Secret) else item
        if value:
            values.update((value, quote(value, safe="")))
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def credential_names(exchange_name: str) -> tuple[tuple[str, str, str], ...]:
    """The (api key, secret, password) variable names to try, most specific first: the
    exchange's own (`binance` -> `STRATFLOW_BINANCE_...`, `coinbase-pro` ->
    `STRATFLOW_COINBASE_PRO_...`), then the generic `STRATFLOW_EXCHANGE_...`."""
    if not _EXCHANGE.match(exchange_name):
        raise SecretsError(
            f"{exchange_name!r} is not an exchange name (letters, digits, '_', '-', '.')"
        )
    own = "STRATFLOW_" + re.sub(r"[^A-Z0-9]", "_", exchange_name.upper())
    prefixes = dict.fromkeys((own, GENERIC_PREFIX))  # ordered, once each
    return tuple((f"{p}_API_KEY", f"{p}_SECRET", f"{p}_PASSWORD") for p in prefixes)


# ------------------------------------------------------------------------------ the file


def _refuse(path: Path, problem: str) -> NoReturn:
    raise SecretsError(f"secrets file {path}: {problem}")


def _read_private(path: Path) -> str:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open
            _refuse(path, "not a regular file")
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode  # the file actually opened
            if os.name == "posix" and mode & 0o077:
                raise SecretsError(
                    f"secrets file {path} can be read or changed by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}` so that only "
                    "its owner can read it"
                )
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SecretsError(f"secrets file not found: {path}") from None
    except OSError as err:
        _refuse(path, f"cannot be read ({err.strerror or type(err).__name__})")
    if len(data) > MAX_FILE_BYTES:
        _refuse(path, f"larger than {MAX_FILE_BYTES} bytes; is it the right file?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        _refuse(path, "not UTF-8 text")


def _parse_dotenv(path: Path, text: str) -> dict[str, Secret]:
    """`KEY=value` lines; blank lines, `# comments` and an `export ` prefix are allowed; one
    pair of matching quotes around a value is removed. No interpolation, no inline comments
    (a `#` may be part of a secret)."""
    values: dict[str, Secret] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key):
            _refuse(path, f"line {lineno} is not KEY=value")  # the line itself is not shown
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = Secret(value)
    return values


def _parse_yaml(path: Path, text: str) -> dict[str, Secret]:
    """A mapping of names to strings. Read with YAML's base loader, so every scalar stays the
    text written (`0123` stays `0123`, `yes` stays `yes`)."""
    try:
        doc = yaml.load(text, Loader=yaml.BaseLoader)  # builds no objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        _refuse(path, f"not valid YAML{where}")  # the parser's text may quote the document
    if doc is None or doc == "":
        return {}
    if not isinstance(doc, dict):
        _refuse(path, "the top level must be a mapping of NAME: value")
    values: dict[str, Secret] = {}
    for key, value in doc.items():
        if isinstance(value, str):
            values[str(key)] = Secret(value.strip())
        elif str(key).startswith("STRATFLOW_"):
            _refuse(path, f"{key} must be a plain string value")
    return values


def read_secrets_file(path: str | os.PathLike[str]) -> dict[str, Secret]:
    """Every name -> value pair of a secrets file, after checking that only its owner can
    read it (POSIX). YAML by suffix (`.yaml`, `.yml`, `.json`), else dotenv-style lines."""
    p = Path(path)
    text = _read_private(p)
    if p.suffix.lower() in _YAML_SUFFIXES:
        return _parse_yaml(p, text)
    return _parse_dotenv(p, text)


# ------------------------------------------------------------------------------ lookup


def load_credentials(
    exchange_name: str,
    environ: Mapping[str, str] | None = None,
    file: str | os.PathLike[str] | None = None,
) -> ExchangeCredentials:
    """The API key pair for `exchange_name`: see the module docstring for the names and the
    order. `environ` defaults to `os.environ`; `file` to `$STRATFLOW_SECRETS_FILE` (none: the
    environment only). A configured file is always read and checked, even when the
    environment has the keys, so a world-readable secrets file is reported, not ignored.

    Raises `SecretsError` naming the missing variable(s)."""
    env = os.environ if environ is None else environ
    file_path = file if file is not None else (env.get(ENV_SECRETS_FILE) or None)
    from_file = read_secrets_file(file_path) if file_path is not None else {}
    where_file = f"the secrets file {file_path}"

    def lookup(name: str) -> tuple[Secret, str] | None:
        value = env.get(name, "").strip()
        if value:
            return Secret(value), "the environment"
        secret = from_file.get(name)
        if secret:
            return secret, where_file
        return None

    searched = "the environment" + (f" and {where_file}" if file_path is not None else "")
    names = credential_names(exchange_name)
    for key_name, secret_name, password_name in names:
        key, secret = lookup(key_name), lookup(secret_name)
        if key is None and secret is None:
            continue
        if key is None or secret is None:
            missing, present = (key_name, secret_name) if key is None else (secret_name, key_name)
            found_in = (secret or key or (None, ""))[1]
            raise SecretsError(
                f"{missing} is not set (looked in {searched}), but {present} is, in "
                f"{found_in}: set both for exchange {exchange_name!r}"
            )
        password = lookup(password_name)
        return ExchangeCredentials(
            api_key=key[0], secret=secret[0], password=password[0] if password else None
        )
    wanted = " (or ".join(f"{k} and {s}" for k, s, _ in names) + ")" * (len(names) - 1)
    hint = (
        f"or in {where_file}"
        if file_path is not None
        else f"or in a private file named by {ENV_SECRETS_FILE}"
    )
    raise SecretsError(
        f"no API credentials for exchange {exchange_name!r}: set {wanted} in the environment {hint}"
    )
