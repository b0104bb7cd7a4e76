"""Secrets as a type, not a log level.

A :class:`Secret` holds key material or a password. It is neither ``str`` nor ``bytes``, so it
cannot be formatted into a log line, an exception or an API result by accident: ``repr`` and
``str`` are redacted, equality is constant-time, and it refuses to be pickled or hashed.

Python cannot reliably wipe memory (bytes are immutable and may be copied by the runtime), so
the defence is to keep a secret's lifetime short and its exposure narrow: call :meth:`reveal`
only at the point where a cryptographic primitive needs the bytes.
"""

from __future__ import annotations

import hmac
from typing import NoReturn, final


@final
class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("Secret holds bytes")
        self._value = value

    @classmethod
    def from_text(cls, text: str) -> Secret:
        return cls(text.encode("utf-8"))

    def reveal(self) -> bytes:
        """The secret bytes; use them at once and keep no other reference."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")
