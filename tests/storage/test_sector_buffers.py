"""The staging buffers and all-zero sector test shared by Drive and the SED layer."""

from __future__ import annotations

import ctypes
import os
import threading

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.sector_buffers import Staging, aligned_buffer, zero_sectors


def _address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def test_staging_buffers_start_on_a_page_and_are_per_thread() -> None:
    # preadv into a buffer that is not 64-byte aligned measured ~5x slower: the point of it.
    staging = Staging()
    mine = staging.get()
    assert mine is staging.get()  # reused by the same thread
    assert len(mine) == staging.size == 256 * SECTOR_SIZE and not mine.readonly
    assert _address(mine) % 4096 == 0
    other: list[memoryview] = []
    thread = threading.Thread(target=lambda: other.append(staging.get()))
    thread.start()
    thread.join()
    assert other[0] is not mine and _address(other[0]) % 4096 == 0


def test_aligned_buffers_are_zeroed_and_page_aligned() -> None:
    view = aligned_buffer(3 * SECTOR_SIZE)
    assert bytes(view) == bytes(3 * SECTOR_SIZE) and _address(view) % 4096 == 0


def test_zero_sectors_finds_exactly_the_all_zero_sectors() -> None:
    count = 9
    view = aligned_buffer(count * SECTOR_SIZE)
    view[:] = os.urandom(count * SECTOR_SIZE)
    zero = bytes(SECTOR_SIZE)
    for index in (0, 4, 8):  # first, middle and last
        view[index * SECTOR_SIZE : (index + 1) * SECTOR_SIZE] = zero
    # Zero probe words but data later on: not unwritten (the probe only picks candidates).
    view[2 * SECTOR_SIZE : 2 * SECTOR_SIZE + 16] = bytes(16)
    view[5 * SECTOR_SIZE : 6 * SECTOR_SIZE - 1] = zero[:-1]  # all zero but the last byte
    view[6 * SECTOR_SIZE - 1] = 1  # set, not left to chance: a random byte is 0 once in 256 runs
    assert zero_sectors(view, count) == [0, 4, 8]
    assert zero_sectors(view, 4) == [0]  # only the first ``count`` sectors are looked at
    assert zero_sectors(view[SECTOR_SIZE:], 3) == []


def test_zero_sectors_on_any_byte_buffer() -> None:
    raw = bytearray(os.urandom(4 * SECTOR_SIZE))  # not page-aligned, not mmap
    raw[SECTOR_SIZE : 2 * SECTOR_SIZE] = bytes(SECTOR_SIZE)
    assert zero_sectors(memoryview(raw), 4) == [1]
    assert zero_sectors(memoryview(raw).cast("Q"), 4) == [1]  # another item format
    assert zero_sectors(memoryview(bytearray(2 * SECTOR_SIZE)), 2) == [0, 1]
