"""HTTP Basic authentication of cluster admins.

Element answers a missing or wrong password with HTTP 401 and an HTML page; the official SDK
recognises the text ``401 Unauthorized.`` in it and raises ``ApiConnectionError("Bad
Credentials")``, so that text is part of the contract.
"""

from __future__ import annotations

import base64
import binascii

from sealbox.secrets import Secret

UNAUTHORIZED_BODY = (
    "<html><head><title>401 Unauthorized</title></head>"
    "<body><h1>401 Unauthorized.</h1><p>A cluster admin user name and password are "
    "required.</p></body></html>"
)
NOT_FOUND_BODY = "<html><body><h1>404 Not Found</h1></body></html>"


def parse_basic(header: str | None) -> tuple[str, Secret] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, or None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    # NUL: no password may hold one (the API refuses them), and scrypt would hash "pw" and
    # "pw\0" alike (HMAC pads its key with zeros), so one must not log in either.
    if not sep or not user or "\x00" in raw:
        return None
    return user, Secret.from_text(password)
