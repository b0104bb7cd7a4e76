"""XTS tweak arithmetic for runs that start inside a data unit.

IEEE 1619 XTS encrypts a data unit ``u`` with the tweak ``T = E_K2(u)`` for its first 16-byte
block and ``T * alpha^j`` for block ``j``. To encrypt a run of sectors that starts ``j`` blocks
into a unit with one cipher call, the call is given the IV that makes its first tweak
``E_K2(u) * alpha^j``: ``D_K2(E_K2(u) * alpha^j)``. The multiplication is in GF(2^128) with
XTS's bit order; powers of alpha are tabulated once.
"""

from __future__ import annotations

import functools
import threading
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_MASK128: Final = (1 << 128) - 1
_IV_CACHE: Final = 4096  # starting ivs remembered per key (a checksum sector is read, then
# written: the second use is free)


def _gf_mul(a: int, b: int) -> int:
    """a * b in GF(2**128) with XTS's conventions: bit i (of the 16 little-endian bytes) is the
    coefficient of x**i, modulo x**128 + x**7 + x**2 + x + 1."""
    product = 0
    while b:
        low = b & -b
        product ^= a << (low.bit_length() - 1)
        b ^= low
    while high := product >> 128:  # x**128 = x**7 + x**2 + x + 1
        product = (product & _MASK128) ^ high ^ (high << 1) ^ (high << 2) ^ (high << 7)
    return product


@functools.cache
def _times_alpha_power(exponent: int) -> tuple[tuple[int, ...], ...]:
    """Tables for multiplying by alpha**exponent four bits at a time: row i, entry v holds
    (v * x**(4i)) * alpha**exponent. A product is then 32 look-ups and XORs (about 4 us)
    instead of a 128-step carry-less multiplication (about 25 us). 22 KB per exponent; a
    drive uses at most 255 exponents (one per sector offset inside a unit)."""
    factor = _alpha_power(exponent)
    rows = []
    for _ in range(32):
        basis = []
        for _ in range(4):  # factor * x**(4i + b), by doubling
            basis.append(factor)
            factor = ((factor << 1) & _MASK128) ^ (0x87 if factor >> 127 else 0)
        row = [0] * 16
        for v in range(1, 16):
            low = v & -v
            row[v] = row[v ^ low] ^ basis[low.bit_length() - 1]
        rows.append(tuple(row))
    return tuple(rows)


def _mul_alpha_power(value: int, exponent: int) -> int:
    product = 0
    for row in _times_alpha_power(exponent):
        product ^= row[value & 15]
        value >>= 4
    return product


@functools.cache
def _alpha_power(exponent: int) -> int:
    """alpha**exponent (alpha = x), by square-and-multiply; cached (a drive uses 255)."""
    result, square = 1, 2
    while exponent:
        if exponent & 1:
            result = _gf_mul(result, square)
        square = _gf_mul(square, square)
        exponent >>= 1
    return result


class UnitTweaks:
    """The iv that makes OpenSSL's XTS start at block ``j0`` of data unit ``u``:
    ``D_K2(E_K2(u) * alpha**j0)`` (see the module docstring). ECB contexts are per thread."""

    def __init__(self, tweak_key: bytes) -> None:
        self._cipher = Cipher(algorithms.AES(tweak_key), modes.ECB())  # noqa: S305 - one block
        self._local = threading.local()
        # The ivs derive from the tweak key and stay in memory, like the key schedules do;
        # dict operations are atomic under the GIL, so threads share it without a lock.
        self._recent: dict[tuple[int, int], bytes] = {}

    def start(self, unit: int, first_block: int) -> bytes:
        if first_block == 0:
            return unit.to_bytes(16, "little")
        iv = self._recent.get((unit, first_block))
        if iv is None:
            iv = self._compute(unit, first_block)
            if len(self._recent) >= _IV_CACHE:
                self._recent.clear()
            self._recent[unit, first_block] = iv
        return iv

    def _compute(self, unit: int, first_block: int) -> bytes:
        iv = unit.to_bytes(16, "little")
        state = getattr(self._local, "ecb", None)
        if state is None:
            state = (self._cipher.encryptor(), self._cipher.decryptor())
            self._local.ecb = state
        encryptor, decryptor = state
        start = int.from_bytes(encryptor.update(iv), "little")
        moved = _mul_alpha_power(start, first_block)
        return bytes(decryptor.update(moved.to_bytes(16, "little")))
