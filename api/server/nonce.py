"""Confirmation nonces for destructive actions (halt, a switch to live).

The first call of such an action does nothing but issue a nonce, bound to that action and
valid for `ttl_ms`; the second call carries it and is carried out. A nonce is redeemed once,
for the action it was issued for only, so a replayed or mistyped second call, or a nonce of
another action, does nothing. Held in memory (a restart of the API forgets them: ask again);
at most `max_open` at once, the oldest dropped first. The clock is injected.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Confirmation", "NonceBook"]


@dataclass(frozen=True, slots=True)
class Confirmation:
    nonce: str
    action: str
    expires_ms: int


@dataclass
class NonceBook:
    clock: Callable[[], int]
    ttl_ms: int = 60_000
    max_open: int = 256
    _open: OrderedDict[str, Confirmation] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, action: str) -> Confirmation:
        """A fresh nonce for `action`."""
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            while len(self._open) >= self.max_open:
                self._open.popitem(last=False)
            confirmation = Confirmation(secrets.token_urlsafe(24), action, now + self.ttl_ms)
            self._open[confirmation.nonce] = confirmation
            return confirmation

    def redeem(self, nonce: str, action: str) -> bool:
        """Whether `nonce` was issued for `action` and is still valid; it is spent either way
        (a nonce shown for one action is not tried against another)."""
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            found = self._open.pop(nonce, None)
            return found is not None and found.action == action and now < found.expires_ms

    def _forget_expired(self, now: int) -> None:
        for key in [k for k, c in self._open.items() if c.expires_ms <= now]:
            del self._open[key]
