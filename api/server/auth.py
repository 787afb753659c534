"""Who may use the control API: one bearer token, compared in constant time, never shown.

The token comes from `STRATFLOW_API_TOKEN` or from the file `STRATFLOW_API_TOKEN_FILE` names
(a secret mounted by the deployment), never from a command-line option (the process list
shows those) nor from the config file (it is shared). `ApiToken` keeps the value out of every
repr, log line and error; `BearerGate` (ASGI middleware) checks every request before it is
routed: no or a malformed `Authorization` header is 401 (with `WWW-Authenticate: Bearer`), a
wrong token 403, each with the same short body whatever was asked, so a refused request
learns nothing.

Without a token the server does not start (`check_exposure`), with one exception: `--no-auth`
on a loopback address, for one person on their own machine; never on an address another
machine can reach. A trading control that anyone on the network can pause, halt or
reconfigure is the failure this refuses, so the safe side is the default and the unsafe one
needs a flag and a loopback address both.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV: Final = "STRATFLOW_API_TOKEN"
TOKEN_FILE_ENV: Final = "STRATFLOW_API_TOKEN_FILE"
MIN_TOKEN_CHARS: Final = 16
MAX_TOKEN_CHARS: Final = 512

NOT_AUTHENTICATED: Final = "not authenticated"
FORBIDDEN: Final = "forbidden"

__all__ = [
    "ApiToken",
    "AuthSetupError",
    "BearerGate",
    "check_exposure",
    "is_loopback",
    "load_token",
]


class AuthSetupError(ValueError):
    """The API cannot start as asked (no token, a bad token file, --no-auth on a reachable
    address): one line for the user."""


class ApiToken:
    """The API's bearer token. Its value is only ever compared (`matches`), never shown."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.encode("utf-8")

    def matches(self, given: str) -> bool:
        """Whether `given` is the token, in time independent of where they differ."""
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._value)

    def __repr__(self) -> str:
        return "ApiToken(***)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("an API token is not pickled")


def _checked(value: str, source: str) -> ApiToken:
    token = value.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise AuthSetupError(
            f"{source} holds a token of {len(token)} characters: use at least "
            f"{MIN_TOKEN_CHARS} (e.g. from `openssl rand -base64 32`)"
        )
    if len(token) > MAX_TOKEN_CHARS or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise AuthSetupError(
            f"{source}: a token is one word of printable characters, at most {MAX_TOKEN_CHARS}"
        )
    return ApiToken(token)


def load_token(environ: Mapping[str, str] | None = None) -> ApiToken | None:
    """The token from the environment or the file it names; None when neither is set."""
    env = os.environ if environ is None else environ
    value, path = env.get(TOKEN_ENV, ""), env.get(TOKEN_FILE_ENV, "")
    if value and path:
        raise AuthSetupError(f"set {TOKEN_ENV} or {TOKEN_FILE_ENV}, not both")
    if value:
        return _checked(value, TOKEN_ENV)
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or "not readable as UTF-8 text"
        raise AuthSetupError(f"{TOKEN_FILE_ENV}={path}: {why}") from None
    return _checked(text, f"{TOKEN_FILE_ENV}={path}")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: ApiToken | None, no_auth: bool) -> None:
    """Refuse to serve without a token, unless `no_auth` on a loopback address."""
    if no_auth:
        if token is not None:
            raise AuthSetupError(
                f"--no-auth with a token set ({TOKEN_ENV} or {TOKEN_FILE_ENV}): leave out one"
            )
        if not is_loopback(host):
            raise AuthSetupError(
                f"--no-auth serves a loopback address only (127.0.0.1, ::1), not {host}: "
                f"set {TOKEN_ENV} or {TOKEN_FILE_ENV} instead"
            )
        return
    if token is None:
        raise AuthSetupError(
            f"the control API needs a token: set {TOKEN_ENV} or {TOKEN_FILE_ENV} "
            "(or, on 127.0.0.1 only, pass --no-auth)"
        )


class BearerGate:
    """ASGI middleware: every HTTP request but those to `open_paths` needs the bearer token.
    Checked before routing, so a refused request learns nothing, not even which paths exist
    or whether its body would have been valid. `token=None` (only after `check_exposure`
    allowed `--no-auth`) lets every request in."""

    def __init__(
        self, app: ASGIApp, token: ApiToken | None, open_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self._token = token
        self._open = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._token is None or scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(Headers(scope=scope).get("authorization", ""))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
            scope, receive, send
        )

    def refusal(self, header: str) -> tuple[int, str] | None:
        """(401, ...) without a bearer token, (403, ...) with a wrong one, None when right."""
        if self._token is None:
            return None
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return 401, NOT_AUTHENTICATED
        if not self._token.matches(value):
            return 403, FORBIDDEN
        return None
