"""The one place that imports PyKMIP (0.11.0, pinned) and binds it to our own TLS socket.

PyKMIP's client opens its own socket from certificate *files*, without hostname checking and
with no connect timeout. We keep its message encoding and result handling, and give it a socket
we opened and verified ourselves (``tls.py``). That touches three attributes of the pinned
version (``proxy.socket``, ``proxy.protocol``, ``_is_open``); ``tests/kmip`` exercise them
against a real server, so a PyKMIP upgrade that moves them fails loudly there.
"""

from __future__ import annotations

import logging
import os
import ssl
import warnings
from typing import Any

# PyKMIP's modules use SQLAlchemy APIs deprecated in 2.0; the warning is about PyKMIP's code.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kmip.core import enums
    from kmip.core import exceptions as core_exceptions
    from kmip.core.factories.attributes import AttributeFactory
    from kmip.pie import exceptions as pie_exceptions
    from kmip.pie import objects
    from kmip.pie.client import ProxyKmipClient
    from kmip.services.kmip_protocol import KMIPProtocol, RequestLengthMismatch

__all__ = [
    "KMIPProtocol",
    "RequestLengthMismatch",
    "attribute_factory",
    "bind_client",
    "core_exceptions",
    "enums",
    "objects",
    "pie_exceptions",
    "silence_loggers",
]


def silence_loggers() -> None:
    """Keep PyKMIP's DEBUG output (hex dumps of every message, key bytes included) off.

    ``KMIPProtocol`` sets its own logger to INFO only if it is unset, so setting it first
    wins; a deployment that turns on DEBUG for ``kmip`` globally still cannot reach it.
    """
    for name in (
        "kmip",
        "kmip.services.kmip_protocol",
        "kmip.services.kmip_client",
        "kmip.pie.client",
        "kmip.core.config_helper",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def attribute_factory() -> Any:
    return AttributeFactory()


def bind_client(sock: ssl.SSLSocket) -> Any:
    """A PyKMIP ``ProxyKmipClient`` that speaks over ``sock`` (already connected and verified)."""
    # os.devnull as config file: PyKMIP reads no /etc/pykmip/pykmip.conf and logs no warning.
    client = ProxyKmipClient(config_file=os.devnull, kmip_version=enums.KMIPVersion.KMIP_1_2)
    client.proxy.socket = sock
    client.proxy.protocol = KMIPProtocol(sock)
    client._is_open = True
    return client


def unbind_client(client: Any) -> None:
    """Detach our socket so that PyKMIP's ``__del__`` does not touch it later."""
    client.proxy.socket = None
    client._is_open = False
