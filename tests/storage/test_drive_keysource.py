"""Key sources: one contract for every source, then the internal key files' own rules."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from sealbox.secrets import Secret
from sealbox.storage.keysource import (
    InternalKeyStore,
    KeyFileInsecure,
    KeySource,
    MasterKeyUnavailable,
    MemoryKeySource,
)

# A factory builds a source holding one key and returns (source, its id, the key bytes).
Factory = Callable[[Path], tuple[KeySource, str, bytes]]


def memory_source(_: Path) -> tuple[KeySource, str, bytes]:
    key = os.urandom(32)
    return MemoryKeySource({"mk-1": Secret(key)}), "mk-1", key


def internal_source(tmp: Path) -> tuple[KeySource, str, bytes]:
    store = InternalKeyStore(tmp / "keys")
    mk_id = store.create()
    return store, mk_id, (tmp / "keys" / f"{mk_id}.mk").read_bytes()


@pytest.fixture(params=[memory_source, internal_source], ids=["memory", "internal"])
def factory(request: pytest.FixtureRequest) -> Factory:
    chosen: Factory = request.param
    return chosen


def test_contract_get_returns_the_key_as_a_secret(factory: Factory, tmp_path: Path) -> None:
    source, mk_id, key = factory(tmp_path)
    got = source.get(mk_id)
    assert isinstance(got, Secret)
    assert got == Secret(key)
    assert len(got) == 32


@pytest.mark.parametrize(
    "unknown", ["", "nope", "../../etc/passwd", "00000000-0000-0000-0000-000000000000"]
)
def test_contract_unknown_ids_are_unavailable(
    factory: Factory, tmp_path: Path, unknown: str
) -> None:
    source, _, _ = factory(tmp_path)
    with pytest.raises(MasterKeyUnavailable):
        source.get(unknown)


def test_internal_keys_are_private_files(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)  # the exact mode must not depend on the umask
    try:
        store = InternalKeyStore(tmp_path / "keys")
        first, second = store.create(), store.create()
    finally:
        os.umask(old_umask)
    assert first != second
    assert store.ids() == sorted([first, second])
    for mk_id in (first, second):
        info = (tmp_path / "keys" / f"{mk_id}.mk").stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert store.get(first) != store.get(second)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o400, 0o700])
def test_a_key_file_with_another_mode_is_refused(tmp_path: Path, mode: int) -> None:
    store = InternalKeyStore(tmp_path)
    mk_id = store.create()
    os.chmod(tmp_path / f"{mk_id}.mk", mode)
    with pytest.raises(KeyFileInsecure, match="0600"):
        store.get(mk_id)


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    store = InternalKeyStore(tmp_path)
    mk_id = store.create()
    target = tmp_path / "elsewhere"
    (tmp_path / f"{mk_id}.mk").rename(target)
    (tmp_path / f"{mk_id}.mk").symlink_to(target)
    with pytest.raises(MasterKeyUnavailable):
        store.get(mk_id)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    store = InternalKeyStore(tmp_path)
    mk_id = store.create()
    with (tmp_path / f"{mk_id}.mk").open("ab") as f:
        f.write(b"x")
    with pytest.raises(MasterKeyUnavailable, match="damaged"):
        store.get(mk_id)


def test_delete_overwrites_then_unlinks(tmp_path: Path) -> None:
    store = InternalKeyStore(tmp_path)
    mk_id = store.create()
    path = tmp_path / f"{mk_id}.mk"
    old = path.read_bytes()
    keep = os.open(path, os.O_RDONLY)  # a second name for the inode survives the unlink
    try:
        store.delete(mk_id)
        assert not path.exists()
        assert os.pread(keep, 64, 0) != old
    finally:
        os.close(keep)
    with pytest.raises(MasterKeyUnavailable):
        store.get(mk_id)
    store.delete(mk_id)  # deleting twice is harmless (a rekey rolled forward twice)


def test_key_ids_only_name_files_inside_the_store(tmp_path: Path) -> None:
    store = InternalKeyStore(tmp_path / "keys")
    with pytest.raises(MasterKeyUnavailable):
        store.delete("../victim")
    assert store.ids() == []


def test_memory_source_forgets_removed_keys() -> None:
    source = MemoryKeySource()
    source.add("k", Secret(os.urandom(32)))
    source.remove("k")
    with pytest.raises(MasterKeyUnavailable):
        source.get("k")
