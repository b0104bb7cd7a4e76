"""RFC 5649 key wrap: the RFC's own examples, and how a damaged or wrong wrap fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.keywrap import (
    WRAPPED_DEK_SIZE,
    KeyUnwrapFailed,
    KeyWrapError,
    unwrap_dek,
    unwrap_key,
    wrap_dek,
    wrap_key,
)

VECTORS = Path(__file__).parent / "vectors" / "rfc5649_kwp.txt"


def load_vectors() -> list[dict[str, str]]:
    vectors: list[dict[str, str]] = []
    for line in VECTORS.read_text().splitlines():
        if line.startswith("[Vector"):
            vectors.append({})
        elif " = " in line and not line.startswith("#"):
            name, value = line.split(" = ")
            vectors[-1][name] = value
    return vectors


RFC5649 = load_vectors()


def test_the_vector_file_holds_both_rfc_examples() -> None:
    assert [len(bytes.fromhex(v["KEY"])) for v in RFC5649] == [20, 7]


@pytest.mark.parametrize("vector", RFC5649, ids=["20-octets", "7-octets"])
def test_rfc5649_known_answers(vector: dict[str, str]) -> None:
    kek = Secret(bytes.fromhex(vector["KEK"]))
    key, wrapped = bytes.fromhex(vector["KEY"]), bytes.fromhex(vector["WRAP"])
    assert wrap_key(kek, Secret(key)) == wrapped
    assert unwrap_key(kek, wrapped) == Secret(key)


@pytest.fixture
def master() -> Secret:
    return Secret(os.urandom(32))


def test_a_dek_wraps_to_72_bytes_and_back(master: Secret) -> None:
    dek = Secret(os.urandom(64))
    wrapped = wrap_dek(master, dek)
    assert len(wrapped) == WRAPPED_DEK_SIZE
    assert dek.reveal() not in wrapped
    assert unwrap_dek(master, wrapped) == dek


def test_every_tampered_byte_is_refused(master: Secret) -> None:
    wrapped = wrap_dek(master, Secret(os.urandom(64)))
    for index in range(len(wrapped)):
        damaged = bytearray(wrapped)
        damaged[index] ^= 0x80
        with pytest.raises(KeyUnwrapFailed):
            unwrap_dek(master, bytes(damaged))


@pytest.mark.parametrize("cut", [0, 8, 64, 71])
def test_a_truncated_wrap_is_refused(master: Secret, cut: int) -> None:
    wrapped = wrap_dek(master, Secret(os.urandom(64)))
    with pytest.raises(KeyUnwrapFailed):
        unwrap_dek(master, wrapped[:cut])


def test_the_wrong_master_key_fails_without_saying_why(master: Secret) -> None:
    dek = os.urandom(64)
    wrapped = wrap_dek(master, Secret(dek))
    other = os.urandom(32)
    with pytest.raises(KeyUnwrapFailed) as caught:
        unwrap_dek(Secret(other), wrapped)
    text = str(caught.value)
    assert text == "the wrapped key could not be unwrapped with the given master key"
    assert caught.value.element_name == "xKeyUnwrapFailed"
    # The library's own exception is not chained in, so a logged traceback shows nothing more.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_wrap_of_some_other_key_size_is_not_a_dek(master: Secret) -> None:
    wrapped = wrap_key(master, Secret(os.urandom(60)))  # RFC 5649 pads 60 to 64: also 72 bytes
    assert len(wrapped) == WRAPPED_DEK_SIZE
    with pytest.raises(KeyUnwrapFailed):
        unwrap_dek(master, wrapped)


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33])
def test_a_dek_master_key_must_be_aes_256(size: int) -> None:
    with pytest.raises(KeyWrapError):
        wrap_dek(Secret(os.urandom(size)), Secret(os.urandom(64)))


def test_a_dek_must_be_64_bytes(master: Secret) -> None:
    with pytest.raises(KeyWrapError):
        wrap_dek(master, Secret(os.urandom(32)))
