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
    from kmip.core.messages import contents as message_contents
    from kmip.core.messages import messages as kmip_messages
    from kmip.core.messages import payloads as kmip_payloads
    from kmip.pie import exceptions as pie_exceptions
    from kmip.pie import objects
    from kmip.pie.client import ProxyKmipClient
    from kmip.services.kmip_protocol import KMIPProtocol, RequestLengthMismatch

__all__ = [
    "KMIPProtocol",
    "RequestLengthMismatch",
    "attribute_factory",
    "batch_get",
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


def batch_get(client: Any, uids: list[str]) -> dict[int, tuple[Any, str, str, bytes | None]]:
    """Several Get operations in one request message (KMIP batch items), with the Batch
    Error Continuation Option *Continue* so that one refused object does not stop the rest.

    Returns ``{index in uids: (status, reason, message, value)}`` for each batch item the
    server answered (``status`` a ``ResultStatus``, ``value`` the object's bytes on success),
    matched by the unique batch item ID the server echoes.
    A server may answer fewer items (one that stops at the first error, or does not batch):
    the caller fetches the rest one by one. Uses PyKMIP's message classes and two of its
    client's request helpers (``_build_request_message``, ``_send_and_receive_message``),
    exercised against a real server by ``tests/kmip``.
    """
    proxy = client.proxy
    items = [
        kmip_messages.RequestBatchItem(
            operation=message_contents.Operation(enums.Operation.GET),
            # Required once a message holds more than one item; answers carry it back.
            unique_batch_item_id=message_contents.UniqueBatchItemID(index.to_bytes(4, "big")),
            request_payload=kmip_payloads.GetRequestPayload(unique_identifier=uid),
        )
        for index, uid in enumerate(uids)
    ]
    request = proxy._build_request_message(None, items)
    request.request_header.batch_error_cont_option = (
        message_contents.BatchErrorContinuationOption(
            enums.BatchErrorContinuationOption.CONTINUE))
    response = proxy._send_and_receive_message(request)
    out: dict[int, tuple[Any, str, str, bytes | None]] = {}
    for position, item in enumerate(response.batch_items):
        ident = item.unique_batch_item_id
        index = int.from_bytes(ident.value, "big") if ident is not None else position
        if not 0 <= index < len(uids) or index in out:
            continue  # not an answer to what we asked: fetched alone by the caller
        status = item.result_status.value
        reason = item.result_reason.value.name if item.result_reason is not None else ""
        message = item.result_message.value if item.result_message is not None else ""
        value = None
        if status == enums.ResultStatus.SUCCESS and item.response_payload is not None:
            obj = client.object_factory.convert(item.response_payload.secret)
            raw = getattr(obj, "value", None)
            value = bytes(raw) if isinstance(raw, bytes | bytearray) else None
        out[index] = (status, reason, str(message), value)
    return out
