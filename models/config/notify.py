"""The alert notifier's configuration, and how its target URLs are shown without their secrets.

Notification URLs carry credentials: a Telegram bot token, a Slack webhook's three tokens, a
mail password, a webhook path that is itself the key. The configuration is printed (`stratflow
config check`), logged and put into error messages, so a URL must never be shown as written.
`NotifyUrl` holds the URL and shows only `scheme://host` wherever it is displayed (repr, str,
f-strings, JSON dumps); the real text comes out only through `reveal()`, which the notifier
calls when it hands the URL to apprise.

"Host" is shown only when it really is a network host (an IP address, `localhost` or a dotted
DNS name): several apprise schemes put a token where the host would be (`tgram://BOT_TOKEN/chat`,
`slack://TOKEN_A/TOKEN_B/TOKEN_C`), and those show as `scheme://***`.

This module does no I/O and does not import apprise: whether apprise can use a URL is checked by
`connectors.notify.notifier` when it starts. It does not import `models.config.settings` either, so
that
`Settings` can later hold a `NotifyConfig` section without an import cycle.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = [
    "HIDDEN",
    "NotifyConfig",
    "NotifyUrl",
    "SeverityName",
    "redact_url",
    "url_secret_fragments",
]

HIDDEN: Final = "***"
"""What stands for a part of a URL that is not shown."""

MIN_FRAGMENT_LEN: Final = 3
"""Shorter URL parts are not treated as secrets when scrubbing log lines: replacing every `v1` or
`80` in a third-party log line would garble it and hide nothing worth hiding."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://(.*)$", re.DOTALL)
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _split(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, userinfo, host, host[:port], rest after the authority) of `scheme://...`, or
    None.

    Hand-rolled rather than `urllib.parse.urlsplit`, which raises on apprise URLs such as
    `tgram://123456:ABC-DEF/chat` (a token where the port would be)."""
    m = _SCHEME.match(url.strip())
    if not m:
        return None
    scheme, remainder = m.group(1).lower(), m.group(2)
    cut = min((i for i in (remainder.find(c) for c in "/?#") if i >= 0), default=len(remainder))
    authority, rest = remainder[:cut], remainder[cut:]
    userinfo, _, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        host = hostport[: hostport.find("]") + 1] if "]" in hostport else hostport
    else:
        host = hostport.split(":", 1)[0]
    return scheme, userinfo, host, hostport, rest


def _is_network_host(host: str) -> bool:
    """An IP address, `localhost` or a dotted DNS name with an alphabetic top-level label."""
    if host.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return (
        len(labels) >= 2
        and all(_DNS_LABEL.match(label) for label in labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
    )


def redact_url(url: str) -> str:
    """`scheme://host` of a notification URL, with nothing that may be a credential.

    The user, password, port, path, query and fragment are dropped; a host that is not a
    network host (apprise schemes that put a token there) becomes `***`; text that is not a
    `scheme://...` URL at all becomes `***`."""
    parts = _split(url)
    if parts is None:
        return HIDDEN
    scheme, _, host, _, _ = parts
    return f"{scheme}://{host.lower() if _is_network_host(host) else HIDDEN}"


def url_secret_fragments(url: str) -> frozenset[str]:
    """Every part of `url` that `redact_url` hides, as written and percent-decoded, for
    scrubbing third-party log lines (apprise and urllib3 log request paths and exception texts
    that contain them). Parts shorter than `MIN_FRAGMENT_LEN` are left out."""
    text = url.strip()
    found: set[str] = {text}
    parts = _split(text)
    if parts is None:
        found.update(p for p in re.split(r"[/:@?&=#]+", text) if p)
    else:
        _, userinfo, host, hostport, rest = parts
        if not _is_network_host(host):  # a token in the host (and port) position
            found.update((hostport, *hostport.split(":")))
        if userinfo:
            found.add(userinfo)
            found.update(userinfo.split(":", 1))
        path, _, after = rest.partition("?")
        query, _, fragment = after.partition("#")
        if "#" in path:
            path, _, fragment = path.partition("#")
        found.update(segment for segment in path.split("/"))
        if path.strip("/"):
            found.add(path)
        if query:
            found.add(query)
            for key, value in parse_qsl(query, keep_blank_values=True):
                found.update((key, value))
        found.add(fragment)
    found |= {unquote(f) for f in found}
    return frozenset(f for f in found if len(f) >= MIN_FRAGMENT_LEN)


class NotifyUrl:
    """An apprise notification URL that is displayed as `scheme://host` only.

    repr, str, format and pydantic's JSON dump all show the redacted form; `reveal()` returns
    the URL as configured. Unlike `connectors.exchange.secrets.Secret` it pickles normally, because
    the
    configuration it is part of travels to worker processes and into snapshots; pickling is a
    transport, not a display."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError("a notification URL is a string")
        self._url = url.strip()

    def reveal(self) -> str:
        """The URL as configured, credentials included: only for handing it to apprise."""
        return self._url

    @property
    def redacted(self) -> str:
        return redact_url(self._url)

    def secret_fragments(self) -> frozenset[str]:
        return url_secret_fragments(self._url)

    def __repr__(self) -> str:
        return f"NotifyUrl({self.redacted!r})"

    def __str__(self) -> str:
        return self.redacted

    def __format__(self, spec: str) -> str:
        return format(self.redacted, spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotifyUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(("NotifyUrl", self._url))

    def __getstate__(self) -> str:
        return self._url

    def __setstate__(self, state: str) -> None:
        self._url = state

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_after_validator_function(
            _validated_url, core_schema.str_schema(strip_whitespace=True, min_length=1)
        )
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=core_schema.no_info_plain_validator_function(_coerce_url),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.redacted, when_used="json"
            ),
        )


def _coerce_url(value: object) -> NotifyUrl:
    """One validator (not a union) for Python input, so a bad value gives one error line."""
    if isinstance(value, NotifyUrl):
        return value
    if not isinstance(value, str):
        raise ValueError("a notification URL must be a string")
    return _validated_url(value.strip())


def _validated_url(text: str) -> NotifyUrl:
    """The message names the problem and the redacted form, never the URL itself."""
    parts = _split(text)
    if parts is None:
        raise ValueError("not a notification URL: expected scheme://..., e.g. jsons://host/path")
    if not parts[3] and not parts[4].strip("/"):
        raise ValueError(f"{redact_url(text)}: the URL names no target after the scheme")
    return NotifyUrl(text)


SeverityName = Literal["info", "warning", "critical"]


class NotifyConfig(BaseModel):
    """Where alerts are sent and how many: the `notify` section of the configuration.

    `hide_input_in_errors` keeps a rejected URL out of pydantic's error text when this model is
    validated on its own; a model that nests it should set it too (the configuration loader's
    one-line errors show only the key and the message either way)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    urls: list[NotifyUrl] = Field(
        default_factory=list,
        description="apprise URLs (jsons://host/path, mailtos://user:pass@host, "
        "tgram://token/chat, slack://...); they may hold tokens and are never shown in full. "
        "Empty: no notifications",
    )
    min_severity: SeverityName = Field(
        default="warning", description="Alerts below this severity are not sent"
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Connect and read timeout of one delivery; also how long closing waits "
        "for the queue to drain",
    )
    max_per_minute: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="At most this many alerts sent in any 60 s; the rest are counted and "
        "reported in the next one sent",
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Alerts waiting for the sender thread; beyond this new ones are dropped",
    )
