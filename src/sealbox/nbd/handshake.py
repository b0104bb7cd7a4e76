"""The fixed newstyle handshake: greeting, client flags and option haggling.

Only fixed newstyle is offered: oldstyle sends the export size before the client can name an
export, which cannot serve several volumes, and plain newstyle cannot carry error replies, so a
client that does not set ``NBD_FLAG_C_FIXED_NEWSTYLE`` is disconnected.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from sealbox.nbd import protocol as p
from sealbox.nbd.export import Export, ExportCatalog, ExportUnavailable, is_read_only
from sealbox.nbd.wire import ConnectionClosed, Wire

log = logging.getLogger(__name__)

# A client that haggles longer than this is either broken or hostile.
MAX_OPTIONS = 1000
_ZEROES = bytes(124)


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of a successful handshake."""

    export: Export
    name: str
    size: int
    structured: bool
    tflags: int


class _OptionError(Exception):
    """An option is answered with an error reply; the haggling goes on."""

    def __init__(self, rep_type: int, message: str) -> None:
        super().__init__(message)
        self.rep_type = rep_type
        self.message = message


class Handshake:
    """Runs the handshake on ``wire``; :meth:`run` returns the negotiated export or raises
    :class:`ConnectionClosed` (peer gone, abort, protocol violation, timeout)."""

    def __init__(
        self, wire: Wire, catalog: ExportCatalog, *, multi_conn: bool, timeout: float
    ) -> None:
        self._wire = wire
        self._catalog = catalog
        self._multi_conn = multi_conn
        self._timeout = timeout
        self._no_zeroes = False
        self._structured = False
        self._handlers: dict[int, Callable[[int, bytes], Negotiated | None]] = {
            p.OPT_LIST: self._opt_list,
            p.OPT_ABORT: self._opt_abort,
            p.OPT_INFO: self._opt_info_or_go,
            p.OPT_GO: self._opt_info_or_go,
            p.OPT_STRUCTURED_REPLY: self._opt_structured_reply,
        }

    def run(self) -> Negotiated:
        self._wire.set_deadline(time.monotonic() + self._timeout)
        self._wire.send([p.SERVER_GREETING.pack(p.NBDMAGIC, p.IHAVEOPT, p.HANDSHAKE_FLAGS)])
        (client_flags,) = p.CLIENT_FLAGS.unpack(self._wire.recv_exact(4))
        if not client_flags & p.CLIENT_FLAG_FIXED_NEWSTYLE or client_flags & ~p.KNOWN_CLIENT_FLAGS:
            raise ConnectionClosed(f"client flags {client_flags:#x} refused")
        self._no_zeroes = bool(client_flags & p.CLIENT_FLAG_NO_ZEROES)
        for _ in range(MAX_OPTIONS):
            negotiated = self._one_option()
            if negotiated is not None:
                self._wire.set_deadline(None)
                return negotiated
        raise ConnectionClosed("too many options")

    def _one_option(self) -> Negotiated | None:
        magic, option, length = p.OPTION_HEADER.unpack(self._wire.recv_exact(p.OPTION_HEADER.size))
        if magic != p.IHAVEOPT:
            raise ConnectionClosed("bad option magic")
        if length > p.MAX_OPTION_DATA:
            if option == p.OPT_EXPORT_NAME:  # it has no error reply: all we can do is hang up
                raise ConnectionClosed("export name too long")
            self._wire.discard(length)
            self._reply(option, p.REP_ERR_TOO_BIG, b"option data too long")
            return None
        data = self._wire.recv_exact(length)
        if option == p.OPT_EXPORT_NAME:
            return self._opt_export_name(data)
        handler = self._handlers.get(option)
        try:
            if handler is None:
                raise _OptionError(p.REP_ERR_UNSUP, f"option {option} is not supported")
            return handler(option, data)
        except _OptionError as err:
            self._reply(option, err.rep_type, p.clip_utf8(err.message, p.MAX_STRING))
            return None

    def _reply(self, option: int, rep_type: int, data: bytes = b"") -> None:
        self._wire.send([p.option_reply(option, rep_type, data)])

    def _tflags(self, export: Export) -> int:
        flags = p.TFLAG_HAS_FLAGS | p.TFLAG_SEND_FLUSH | p.TFLAG_SEND_FUA
        if is_read_only(export):
            # As qemu-nbd -r: commands that change data are not offered; FLUSH and FUA stay
            # (harmless: they only make durable what the export already acknowledged).
            flags |= p.TFLAG_READ_ONLY
        else:
            flags |= p.TFLAG_SEND_TRIM | p.TFLAG_SEND_WRITE_ZEROES
        if self._multi_conn:
            flags |= p.TFLAG_CAN_MULTI_CONN
        if self._structured:
            flags |= p.TFLAG_SEND_DF
        return flags

    # --- options ------------------------------------------------------------------------------
    def _opt_abort(self, option: int, data: bytes) -> Negotiated | None:
        with contextlib.suppress(ConnectionClosed):  # the client may hang up before the ack
            self._reply(option, p.REP_ACK)
        raise ConnectionClosed("client aborted")

    def _opt_list(self, option: int, data: bytes) -> Negotiated | None:
        if data:
            raise _OptionError(p.REP_ERR_INVALID, "NBD_OPT_LIST takes no data")
        names = self._catalog.list_exports()
        for name in names:
            self._reply(option, p.REP_SERVER, p.rep_server(name))
        self._reply(option, p.REP_ACK)
        return None

    def _opt_structured_reply(self, option: int, data: bytes) -> Negotiated | None:
        if data:
            raise _OptionError(p.REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data")
        self._structured = True
        self._reply(option, p.REP_ACK)
        return None

    def _opt_info_or_go(self, option: int, data: bytes) -> Negotiated | None:
        name, requests = _parse_info_request(data)
        export, name = self._open(name)
        size = export.size
        tflags = self._tflags(export)
        if p.INFO_NAME in requests:
            self._reply(option, p.REP_INFO, p.info_name(name))
        # Block sizes are sent even unrequested: min 1 imposes nothing on a client that ignores it.
        self._reply(option, p.REP_INFO, p.info_export(size, tflags))
        self._reply(option, p.REP_INFO, p.info_block_size())
        self._reply(option, p.REP_ACK)
        if option == p.OPT_INFO:
            return None
        return Negotiated(export, name, size, self._structured, tflags)

    def _opt_export_name(self, data: bytes) -> Negotiated:
        try:
            export, name = self._open(data.decode())
        except (_OptionError, UnicodeDecodeError) as exc:
            raise ConnectionClosed(f"NBD_OPT_EXPORT_NAME refused: {exc}") from exc
        size = export.size
        tflags = self._tflags(export)
        reply = p.EXPORT_NAME_REPLY.pack(size, tflags)
        self._wire.send([reply if self._no_zeroes else reply + _ZEROES])
        return Negotiated(export, name, size, self._structured, tflags)

    def _open(self, name: str) -> tuple[Export, str]:
        """The export called ``name`` ("" = the only one, if there is exactly one)."""
        if name == "":
            names = self._catalog.list_exports()
            if len(names) != 1:
                raise _OptionError(
                    p.REP_ERR_UNKNOWN,
                    f"no default export: name one of the {len(names)} exports",
                )
            name = names[0]
        try:
            return self._catalog.open_export(name), name
        except KeyError:
            raise _OptionError(p.REP_ERR_UNKNOWN, f"no export named {name!r}") from None
        except ExportUnavailable as exc:
            raise _OptionError(p.REP_ERR_UNKNOWN, f"{name}: {exc.reason}") from None
        except Exception:
            log.exception("opening export %r failed", name)
            raise _OptionError(p.REP_ERR_UNKNOWN, f"{name}: cannot be opened") from None


def _parse_info_request(data: bytes) -> tuple[str, set[int]]:
    """Name and requested info types of NBD_OPT_INFO / NBD_OPT_GO data."""
    try:
        (name_len,) = struct.unpack_from(">I", data, 0)
        if name_len > p.MAX_STRING:
            raise _OptionError(p.REP_ERR_INVALID, "export name too long")
        name = data[4 : 4 + name_len].decode()
        (count,) = struct.unpack_from(">H", data, 4 + name_len)
        if len(data) != 6 + name_len + 2 * count:
            raise _OptionError(p.REP_ERR_INVALID, "malformed info request")
        requests = struct.unpack_from(f">{count}H", data, 6 + name_len)
    except (struct.error, UnicodeDecodeError) as exc:
        raise _OptionError(p.REP_ERR_INVALID, "malformed info request") from exc
    return name, set(requests)
