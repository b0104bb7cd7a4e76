"""Sector tokens: the C extension and the Python code compute the format's tokens, alike.

A token is written into every checksum entry on disk, so a change in how it is computed would
make every existing volume read as corrupt. Both implementations are checked against the
definition written out plainly here, and against one fixed value.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import struct
import threading

import pytest

from sealbox.storage import chunk
from sealbox.storage.chunk import NO_TOKEN, SECTORS_PER_CHUNK, TOKEN_SIZE, Sealer

SECTOR = 4096


def reference_token(key: bytes, volume_id: int, sector_in_volume: int, data: bytes) -> bytes:
    """The definition (chunk.Sealer's docstring), one sector, in the plainest code."""
    block = hashlib.blake2b(key, digest_size=64, person=b"sbx-sector-key").digest()
    digest = hashlib.sha256(
        block + struct.pack("<QQ", volume_id, sector_in_volume) + data).digest()
    token = digest[:TOKEN_SIZE]
    return token if token != NO_TOKEN else b"\1" + token[1:]


def test_the_c_extension_is_built() -> None:
    # CI installs a compiler and OpenSSL's headers (scripts/setup-dev); without them the
    # install still works, in Python, at a fraction of the speed: this says so loudly.
    assert Sealer(b"k").native, (
        "sealbox.storage._native is not built: install gcc, the Python headers and "
        "OpenSSL's headers (libssl-dev), then `pip install -e .` again")


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_tokens_follow_the_definition(native: bool) -> None:
    rng = random.Random(4)
    for _ in range(20):
        key = rng.randbytes(rng.choice([0, 16, 32, 64, 100]))
        sealer = Sealer(key, native=native)
        assert sealer.native is native
        volume_id = rng.choice([0, 1, rng.getrandbits(32), 2**64 - 1])
        chunk_no = rng.getrandbits(20)
        first = rng.randrange(SECTORS_PER_CHUNK)
        count = rng.randrange(0, SECTORS_PER_CHUNK - first + 1)
        data = rng.randbytes(count * SECTOR)
        want = [reference_token(key, volume_id, chunk_no * SECTORS_PER_CHUNK + first + i,
                                data[i * SECTOR:(i + 1) * SECTOR]) for i in range(count)]
        assert sealer.tokens(volume_id, chunk_no, first, data) == want
        assert [sealer.token(volume_id, chunk_no, first + i, data[i * SECTOR:(i + 1) * SECTOR])
                for i in range(count)] == want


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_one_fixed_value(native: bool) -> None:
    # Computed once from reference_token; changing it means a new on-disk format.
    sealer = Sealer(b"sealbox golden key", native=native)
    data = bytes(range(256)) * 16
    assert sealer.tokens(7, 3, 5, data)[0].hex() == "e63eb564c5ab123658348b6b738f5923"
    assert reference_token(b"sealbox golden key", 7, 3 * 256 + 5, data).hex() == (
        "e63eb564c5ab123658348b6b738f5923")


def test_c_takes_every_kind_of_buffer_and_binds_volume_and_sector() -> None:
    sealer = Sealer(os.urandom(32), native=True)
    data = os.urandom(4 * SECTOR)
    want = sealer.tokens(9, 1, 0, data)
    assert sealer.tokens(9, 1, 0, bytearray(data)) == want
    assert sealer.tokens(9, 1, 0, memoryview(data)) == want
    assert sealer.tokens(9, 1, 2, memoryview(data)[2 * SECTOR:]) == want[2:]
    assert len(set(want)) == 4
    assert sealer.tokens(10, 1, 0, data) != want  # another volume
    assert sealer.tokens(9, 2, 0, data) != want  # another chunk
    assert Sealer(os.urandom(32), native=True).tokens(9, 1, 0, data) != want  # another key
    assert sealer.tokens(9, 1, 0, b"") == []


def test_c_refuses_bad_input_and_keeps_its_key() -> None:
    sealer = Sealer(b"secret", native=True)
    with pytest.raises(ValueError, match="whole 4096-byte sectors"):
        sealer.tokens(1, 0, 0, bytes(SECTOR + 1))
    with pytest.raises(OverflowError):
        sealer.tokens(-1, 0, 0, bytes(SECTOR))
    with pytest.raises(OverflowError):
        sealer.tokens(2**64, 0, 0, bytes(SECTOR))
    hasher = sealer._native
    assert hasher is not None
    with pytest.raises(ValueError, match="64 bytes"):
        type(hasher)(bytes(63))
    block = hashlib.blake2b(b"secret", digest_size=64, person=b"sbx-sector-key").digest()
    assert "redacted" in repr(hasher)
    assert block.hex() not in repr(hasher) and not hasattr(hasher, "__dict__")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(hasher)
    data = bytes(range(256)) * 16
    before = hasher.tokens(1, 0, data)
    with pytest.raises(TypeError, match="cannot be changed"):
        hasher.__init__(bytes(64))  # type: ignore[misc]
    assert hasher.tokens(1, 0, data) == before


def test_c_gives_the_same_tokens_from_many_threads_at_once() -> None:
    # The GIL is released while hashing: the shared keyed state must only ever be read.
    key = os.urandom(32)
    data = os.urandom(64 * SECTOR)
    want = Sealer(key, native=False).tokens(3, 4, 0, data)
    shared = Sealer(key, native=True)
    results: list[list[bytes]] = []

    def run() -> None:
        for _ in range(20):
            results.append(shared.tokens(3, 4, 0, data))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(r == want for r in results)


def test_without_the_extension_sealer_falls_back_to_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunk, "_NativeHasher", None)
    sealer = Sealer(b"k")
    assert not sealer.native
    data = os.urandom(2 * SECTOR)
    assert sealer.tokens(1, 2, 3, data) == [
        reference_token(b"k", 1, 2 * SECTORS_PER_CHUNK + 3 + i, data[i * SECTOR:(i + 1) * SECTOR])
        for i in range(2)]
    with pytest.raises(RuntimeError, match="not built"):
        Sealer(b"k", native=True)
