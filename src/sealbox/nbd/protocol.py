"""NBD wire constants and packing (fixed newstyle handshake, simple and structured replies).

Names and values follow the NBD protocol document (NetworkBlockDevice/nbd, doc/proto.md).
Everything on the wire is big-endian ("network byte order").
"""

from __future__ import annotations

import struct
from typing import Final

# --- handshake --------------------------------------------------------------------------------
NBDMAGIC: Final = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT: Final = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC: Final = 0x0003E889045565A9  # option reply magic

FLAG_FIXED_NEWSTYLE: Final = 1 << 0
FLAG_NO_ZEROES: Final = 1 << 1
HANDSHAKE_FLAGS: Final = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES
CLIENT_FLAG_FIXED_NEWSTYLE: Final = 1 << 0
CLIENT_FLAG_NO_ZEROES: Final = 1 << 1
KNOWN_CLIENT_FLAGS: Final = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES

OPT_EXPORT_NAME: Final = 1
OPT_ABORT: Final = 2
OPT_LIST: Final = 3
OPT_STARTTLS: Final = 5
OPT_INFO: Final = 6
OPT_GO: Final = 7
OPT_STRUCTURED_REPLY: Final = 8

REP_ACK: Final = 1
REP_SERVER: Final = 2
REP_INFO: Final = 3
_ERR: Final = 1 << 31
REP_ERR_UNSUP: Final = _ERR | 1
REP_ERR_POLICY: Final = _ERR | 2
REP_ERR_INVALID: Final = _ERR | 3
REP_ERR_UNKNOWN: Final = _ERR | 6
REP_ERR_SHUTDOWN: Final = _ERR | 7
REP_ERR_TOO_BIG: Final = _ERR | 9

INFO_EXPORT: Final = 0
INFO_NAME: Final = 1
INFO_BLOCK_SIZE: Final = 3

# --- transmission -----------------------------------------------------------------------------
TFLAG_HAS_FLAGS: Final = 1 << 0
TFLAG_READ_ONLY: Final = 1 << 1
TFLAG_SEND_FLUSH: Final = 1 << 2
TFLAG_SEND_FUA: Final = 1 << 3
TFLAG_SEND_TRIM: Final = 1 << 5
TFLAG_SEND_WRITE_ZEROES: Final = 1 << 6
TFLAG_SEND_DF: Final = 1 << 7
TFLAG_CAN_MULTI_CONN: Final = 1 << 8

REQUEST_MAGIC: Final = 0x25609513
SIMPLE_REPLY_MAGIC: Final = 0x67446698
STRUCTURED_REPLY_MAGIC: Final = 0x668E33EF

CMD_READ: Final = 0
CMD_WRITE: Final = 1
CMD_DISC: Final = 2
CMD_FLUSH: Final = 3
CMD_TRIM: Final = 4
CMD_WRITE_ZEROES: Final = 6

CMD_FLAG_FUA: Final = 1 << 0
CMD_FLAG_NO_HOLE: Final = 1 << 1
CMD_FLAG_DF: Final = 1 << 2

# Which command flags each command accepts; any other flag is answered with EINVAL, as the
# protocol asks ("a flag not explicitly documented as applicable to the given request").
ALLOWED_CMD_FLAGS: Final[dict[int, int]] = {
    CMD_READ: CMD_FLAG_DF,
    CMD_WRITE: CMD_FLAG_FUA,
    CMD_DISC: 0,
    CMD_FLUSH: 0,
    CMD_TRIM: CMD_FLAG_FUA,
    CMD_WRITE_ZEROES: CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
}

REPLY_FLAG_DONE: Final = 1 << 0
REPLY_TYPE_NONE: Final = 0
REPLY_TYPE_OFFSET_DATA: Final = 1
REPLY_TYPE_ERROR: Final = (1 << 15) | 1

EPERM: Final = 1
EIO: Final = 5
ENOMEM: Final = 12
EINVAL: Final = 22
ENOSPC: Final = 28
ESHUTDOWN: Final = 108

# --- limits we advertise ----------------------------------------------------------------------
MIN_BLOCK: Final = 1
PREFERRED_BLOCK: Final = 4096
MAX_PAYLOAD: Final = 32 * 1024 * 1024
MAX_OPTION_DATA: Final = 64 * 1024  # names are at most 4096 bytes; the rest is headroom
MAX_STRING: Final = 4096

# --- structs ----------------------------------------------------------------------------------
SERVER_GREETING: Final = struct.Struct(">QQH")  # NBDMAGIC, IHAVEOPT, handshake flags
CLIENT_FLAGS: Final = struct.Struct(">I")
OPTION_HEADER: Final = struct.Struct(">QII")  # IHAVEOPT, option, length
OPTION_REPLY: Final = struct.Struct(">QIII")  # REPLY_MAGIC, option, reply type, length
EXPORT_NAME_REPLY: Final = struct.Struct(">QH")  # size, transmission flags
REQUEST: Final = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
SIMPLE_REPLY: Final = struct.Struct(">IIQ")  # magic, error, cookie
CHUNK_HEADER: Final = struct.Struct(">IHHQI")  # magic, flags, type, cookie, length
OFFSET_DATA_HEADER: Final = struct.Struct(">IHHQIQ")  # chunk header + offset
ERROR_CHUNK: Final = struct.Struct(">IHHQIIH")  # chunk header + error + message length

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_INFO_EXPORT: Final = struct.Struct(">HQH")
_INFO_BLOCK_SIZE: Final = struct.Struct(">HIII")


def option_reply(option: int, reply_type: int, data: bytes = b"") -> bytes:
    return OPTION_REPLY.pack(REPLY_MAGIC, option, reply_type, len(data)) + data


def rep_server(name: str) -> bytes:
    encoded = name.encode()
    return _U32.pack(len(encoded)) + encoded


def info_export(size: int, tflags: int) -> bytes:
    return _INFO_EXPORT.pack(INFO_EXPORT, size, tflags)


def info_name(name: str) -> bytes:
    return _U16.pack(INFO_NAME) + name.encode()


def info_block_size() -> bytes:
    return _INFO_BLOCK_SIZE.pack(INFO_BLOCK_SIZE, MIN_BLOCK, PREFERRED_BLOCK, MAX_PAYLOAD)


def simple_reply(error: int, cookie: int) -> bytes:
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def data_chunk_header(cookie: int, offset: int, length: int) -> bytes:
    """Header of the one OFFSET_DATA chunk (flagged DONE) that answers a whole read."""
    return OFFSET_DATA_HEADER.pack(
        STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, 8 + length, offset
    )


def none_chunk(cookie: int) -> bytes:
    return CHUNK_HEADER.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0)


def error_chunk(cookie: int, error: int, message: str) -> bytes:
    text = clip_utf8(message, MAX_STRING)
    return (
        ERROR_CHUNK.pack(
            STRUCTURED_REPLY_MAGIC,
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            cookie,
            6 + len(text),
            error,
            len(text),
        )
        + text
    )


def clip_utf8(text: str, limit: int) -> bytes:
    """``text`` encoded and cut to at most ``limit`` bytes without splitting a character."""
    return text.encode()[:limit].decode(errors="ignore").encode()
