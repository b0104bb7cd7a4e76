"""The cluster's own identity towards key servers: its key pair and certificate requests.

The private key is generated here and never leaves the cluster: it lives only in a 0600 file
under ``DATA_DIR/keys``, named by a random ID that the configuration records, and is read back
only to open TLS connections to key servers. Replacing the pair writes the new file first and
switches the configuration in one transaction, so a crash leaves either the old or the new
pair in force, never a record without its key (stray files are removed at the next start).
"""

from __future__ import annotations

import base64
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sealbox.cluster.clock import now_iso
from sealbox.errors import NotPermitted
from sealbox.kmip.certs import KeyType, Subject, build_csr, generate_key_pair
from sealbox.secrets import Secret
from sealbox.store.base import ConfigStore, Txn

COLL = "trust"
_KEY_PREFIX = "cluster-"


class KeyFileError(NotPermitted):
    """The private key file is missing or unsafe; the message says which."""


@dataclass(frozen=True)
class Identity:
    key_id: str
    public_key_pem: bytes
    key_path: Path

    def private_key(self) -> Secret:
        return read_private_key(self.key_path)


def read_private_key(path: Path) -> Secret:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"The cluster's private key file {path} is missing; create a new key pair with "
            "CreatePublicPrivateKeyPair and have its CSR signed again."
        ) from None
    if stat.S_IMODE(st.st_mode) != 0o600:
        raise KeyFileError(f"The cluster's private key file {path} is not mode 0600.")
    return Secret(path.read_bytes())


def _write_private(path: Path, data: Secret) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data.reveal())
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class TrustService:
    def __init__(self, store: ConfigStore, keys_dir: Path, key_type: KeyType) -> None:
        self._store = store
        self._dir = keys_dir
        self._key_type = key_type
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def identity(self, txn: Txn) -> Identity | None:
        doc = txn.get(COLL, 0)
        if doc is None:
            return None
        return Identity(doc["keyID"], doc["publicKeyPem"].encode(), self._path(doc["keyID"]))

    def require_identity(self, txn: Txn) -> Identity:
        ident = self.identity(txn)
        if ident is None:
            raise NotPermitted(
                "The cluster has no key pair yet: call CreatePublicPrivateKeyPair first."
            )
        return ident

    def _path(self, key_id: str) -> Path:
        return self._dir / f"{_KEY_PREFIX}{key_id}.key"

    def create_key_pair(self, subject: Subject, servers_in_use: list[int]) -> None:
        """Generate a new pair (refused while key servers use the current certificate)."""
        if servers_in_use:
            raise NotPermitted(
                f"Key servers {servers_in_use} use a certificate issued for the current key "
                "pair; delete them (DeleteKeyServerKmip) before creating a new key pair."
            )
        subject.to_x509()  # validate before generating anything
        pair = generate_key_pair(self._key_type)
        key_id = uuid.uuid4().hex
        _write_private(self._path(key_id), pair.private_key_pem)
        with self._store.write() as txn:
            old = self.identity(txn)
            txn.put(COLL, 0, {
                "keyID": key_id, "publicKeyPem": pair.public_key_pem().decode(),
                "keyType": self._key_type.value, "createTime": now_iso(),
                "subject": {
                    "commonName": subject.common_name, "organization": subject.organization,
                    "organizationalUnit": subject.organizational_unit,
                    "country": subject.country, "locality": subject.locality,
                    "state": subject.state, "emailAddress": subject.email_address,
                },
            })
        if old is not None:
            _destroy(old.key_path)

    def csr(self) -> str:
        """The CSR as base64 DER (the body of a PEM ``CERTIFICATE REQUEST``)."""
        with self._store.read() as txn:
            ident = self.require_identity(txn)
            doc = txn.get(COLL, 0)
        assert doc is not None
        s = doc["subject"]
        # locality, state and emailAddress: absent from pairs made before they were kept
        subject = Subject(s["commonName"], s["organization"], s["organizationalUnit"],
                          s["country"], s.get("locality"), s.get("state"), s.get("emailAddress"))
        pem = build_csr(subject, ident.private_key())
        der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
        return base64.b64encode(der).decode()

    def remove_stray_keys(self) -> None:
        """Delete key files that no configuration refers to (left by a crash)."""
        with self._store.read() as txn:
            ident = self.identity(txn)
        for path in self._dir.glob(f"{_KEY_PREFIX}*.key"):
            if ident is None or path != ident.key_path:
                _destroy(path)


def _destroy(path: Path) -> None:
    """Overwrite, then unlink (a best effort: filesystems may keep old blocks)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        pass
