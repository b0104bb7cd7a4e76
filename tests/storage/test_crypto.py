"""The sector cipher: IEEE 1619 known answers on every backend, and its contract."""

from __future__ import annotations

import ctypes.util
import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealbox.errors import SealboxError
from sealbox.secrets import Secret
from sealbox.storage.crypto import SectorCipher, SectorCipherError, available_backends

VECTORS = Path(__file__).parent / "vectors" / "ieee1619_xts_aes256.txt"
BACKENDS = available_backends()
SECTOR = 4096


def load_vectors(path: Path) -> list[dict[str, str]]:
    """Parse ``[Vector n]`` sections of ``NAME = hex`` lines; repeated names concatenate."""
    vectors: list[dict[str, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("[Vector"):
            vectors.append({"name": line.strip("[]")})
        elif " = " in line and not line.startswith("#"):
            name, value = line.split(" = ")
            vectors[-1][name] = vectors[-1].get(name, "") + value
    return vectors


IEEE = load_vectors(VECTORS)


def reference(key: bytes, sector: int, data: bytes) -> bytes:
    """One XTS data unit straight through cryptography: the independent reference."""
    encryptor = Cipher(algorithms.AES(key), modes.XTS(sector.to_bytes(16, "little"))).encryptor()
    return encryptor.update(data)


def test_the_vector_file_holds_ieee_vectors_10_to_14() -> None:
    assert [v["name"] for v in IEEE] == [f"Vector {n}" for n in range(10, 15)]
    assert all(len(bytes.fromhex(v["PTX"])) == 512 == len(bytes.fromhex(v["CTX"])) for v in IEEE)


@pytest.mark.skipif(
    "libcrypto.so.3" not in (ctypes.util.find_library("crypto") or ""),
    reason="no system OpenSSL 3 libcrypto: only the cryptography backend exists here",
)
def test_the_fast_backend_is_used_where_openssl_3_exists() -> None:
    # The benchmark goal depends on it: a broken binding would silently fall back otherwise.
    assert BACKENDS[0] == "evp"
    assert SectorCipher(Secret(os.urandom(64))).backend == "evp"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vector", IEEE, ids=lambda v: v["name"])
def test_ieee1619_known_answers(backend: str, vector: dict[str, str]) -> None:
    key = Secret(bytes.fromhex(vector["KEY1"] + vector["KEY2"]))
    cipher = SectorCipher(key, backend=backend, unit_size=512)
    plain, expected = bytes.fromhex(vector["PTX"]), bytes.fromhex(vector["CTX"])
    dun = int(vector["DUN"], 16)
    assert cipher.encrypt(dun, plain) == expected
    assert cipher.decrypt(dun, expected) == plain


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_equals_one_data_unit_at_a_time(backend: str) -> None:
    key = os.urandom(64)
    data = os.urandom(300 * SECTOR)  # more than one internal batch of 256 sectors
    first = (1 << 64) - 300  # the highest sector numbers a tweak can carry
    got = SectorCipher(Secret(key), backend=backend).encrypt(first, data)
    for index in (0, 1, 255, 256, 299):
        chunk = slice(index * SECTOR, (index + 1) * SECTOR)
        assert got[chunk] == reference(key, first + index, data[chunk])


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_in_place_and_from_every_buffer_type(backend: str) -> None:
    cipher = SectorCipher(Secret(os.urandom(64)), backend=backend)
    data = os.urandom(3 * SECTOR)
    sealed = cipher.encrypt(10, data)
    assert sealed != data
    buf = bytearray(sealed)
    cipher.decrypt_into(10, buf, buf)
    assert buf == data
    assert cipher.decrypt(10, memoryview(sealed)) == data
    assert cipher.decrypt(10, bytearray(sealed)) == data


@pytest.mark.parametrize("backend", BACKENDS)
def test_tampering_garbles_only_the_touched_block(backend: str) -> None:
    cipher = SectorCipher(Secret(os.urandom(64)), backend=backend)
    data = os.urandom(2 * SECTOR)
    sealed = bytearray(cipher.encrypt(0, data))
    sealed[SECTOR + 100] ^= 0x01
    opened = cipher.decrypt(0, sealed)
    assert opened[:SECTOR] == data[:SECTOR]
    assert opened[SECTOR + 96 : SECTOR + 112] != data[SECTOR + 96 : SECTOR + 112]
    assert opened[SECTOR + 112 :] == data[SECTOR + 112 :]


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_sector_number_or_key_gives_garbage(backend: str) -> None:
    key = os.urandom(64)
    data = os.urandom(SECTOR)
    sealed = SectorCipher(Secret(key), backend=backend).encrypt(5, data)
    assert SectorCipher(Secret(key), backend=backend).decrypt(6, sealed) != data
    assert SectorCipher(Secret(os.urandom(64)), backend=backend).decrypt(5, sealed) != data


def test_backends_agree_on_random_data() -> None:
    key, data = os.urandom(64), os.urandom(17 * SECTOR)
    results = {SectorCipher(Secret(key), backend=b).encrypt(1 << 40, data) for b in BACKENDS}
    assert len(results) == 1


@pytest.mark.parametrize(
    ("key", "why"),
    [(os.urandom(32), "64 bytes"), (bytes(range(32)) * 2, "halves")],
)
def test_bad_keys_are_refused(key: bytes, why: str) -> None:
    with pytest.raises(SectorCipherError, match=why):
        SectorCipher(Secret(key))


@pytest.mark.parametrize(
    ("sector", "size"), [(0, 100), (0, SECTOR + 1), (-1, SECTOR), ((1 << 64) - 1, 2 * SECTOR)]
)
def test_misuse_is_refused(sector: int, size: int) -> None:
    cipher = SectorCipher(Secret(os.urandom(64)))
    with pytest.raises(SectorCipherError):
        cipher.encrypt(sector, bytes(size))


def test_output_must_match_and_be_writable() -> None:
    cipher = SectorCipher(Secret(os.urandom(64)), backend=BACKENDS[0])
    with pytest.raises(SectorCipherError):
        cipher.encrypt_into(0, bytes(SECTOR), bytearray(SECTOR - 16))
    with pytest.raises(SealboxError):
        cipher.encrypt_into(0, bytes(SECTOR), bytes(SECTOR))


def test_a_closed_cipher_refuses_work() -> None:
    cipher = SectorCipher(Secret(os.urandom(64)))
    cipher.close()
    with pytest.raises(SectorCipherError, match="closed"):
        cipher.encrypt(0, bytes(SECTOR))


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(SectorCipherError, match="not available"):
        SectorCipher(Secret(os.urandom(64)), backend="rot13")


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_share_one_cipher_without_mixing_state(backend: str) -> None:
    key = os.urandom(64)
    cipher = SectorCipher(Secret(key), backend=backend)
    failures: list[int] = []

    def work(seed: int) -> None:
        for round_ in range(20):
            sector = seed * 1000 + round_
            data = os.urandom(4 * SECTOR)
            if cipher.encrypt(sector, data)[:SECTOR] != reference(key, sector, data[:SECTOR]):
                failures.append(sector)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_key_never_shows_in_repr_or_errors() -> None:
    key = os.urandom(64)
    cipher = SectorCipher(Secret(key))
    with pytest.raises(SectorCipherError) as caught:
        cipher.encrypt(0, bytes(7))
    for text in (repr(cipher), str(caught.value)):
        assert key.hex() not in text


MIB = 1 << 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_inside_1_mib_units_equal_whole_unit_xts(backend: str) -> None:
    # Drive format 2: one XTS data unit per 1 MiB, tweak = the unit number. Any run of 4 KiB
    # sectors, starting anywhere in a unit and crossing unit boundaries, must give exactly the
    # bytes of whole units encrypted in one call each by cryptography (IEEE 1619 XTS-AES).
    key = os.urandom(64)
    data = os.urandom(3 * MIB)
    first_unit = (1 << 56) - 3  # up to the last sector number (2**64 - 1)
    expected = b"".join(
        reference(key, first_unit + u, data[u * MIB : (u + 1) * MIB]) for u in range(3)
    )
    cipher = SectorCipher(Secret(key), backend=backend, unit_size=MIB, sector_size=SECTOR)
    base = first_unit * 256
    assert cipher.encrypt(base, data) == expected
    for first, count in [(0, 1), (1, 1), (3, 64), (200, 100), (255, 2), (100, 400), (767, 1)]:
        run = slice(first * SECTOR, (first + count) * SECTOR)
        sealed = cipher.encrypt(base + first, data[run])
        assert sealed == expected[run], (first, count)
        assert cipher.decrypt(base + first, sealed) == data[run]


def test_a_unit_must_be_whole_sectors() -> None:
    with pytest.raises(SectorCipherError, match="whole sectors"):
        SectorCipher(Secret(os.urandom(64)), unit_size=MIB, sector_size=3 * SECTOR)
    cipher = SectorCipher(Secret(os.urandom(64)), unit_size=MIB, sector_size=SECTOR)
    with pytest.raises(SectorCipherError, match="whole sectors"):
        cipher.encrypt(0, bytes(SECTOR + 16))


def test_the_c_loop_and_the_ctypes_loop_give_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # Format 1 (one 4 KiB unit per sector) runs its per-unit loop in the C extension where it
    # is built, else through ctypes; both must be plain XTS per sector.
    from sealbox.storage import crypto

    assert crypto._CRYPT_UNITS is not None, "the C extension sealbox.storage._native is not built"
    key, data = os.urandom(64), os.urandom(80 * SECTOR)  # above and below the GIL threshold
    want = b"".join(reference(key, (1 << 40) + i, data[i * SECTOR:(i + 1) * SECTOR])
                    for i in range(80))
    for c_loop in (True, False):
        if not c_loop:
            monkeypatch.setattr(crypto, "_CRYPT_UNITS", None)
        cipher = SectorCipher(Secret(key), backend="evp")
        assert cipher.encrypt(1 << 40, data) == want
        assert cipher.encrypt(1 << 40, data[:SECTOR]) == want[:SECTOR]
        buf = bytearray(want)
        cipher.decrypt_into(1 << 40, buf, buf)  # in place
        assert buf == data
        with pytest.raises(SectorCipherError, match="read-only"):
            cipher.encrypt_into(0, data[:SECTOR], memoryview(bytes(SECTOR)))
